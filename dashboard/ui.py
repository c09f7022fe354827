"""Streamlit glue shared by the pages: the settings, which KB is loaded (cached), the sidebar, the backend picker.

Only loading/caching and rendering helpers live here; all computation is in ``mind_core``. Settings follow one
order everywhere: defaults < environment variables (:mod:`mind_core.config`) < ``streamlit run app.py -- --kb DIR``
< the sidebar and the pages' widgets.

Deployment (README "Deployment and security"): the settings get the address Streamlit is bound to
(``server.address``), so :attr:`Settings.is_shared` is true when other machines can reach the dashboard (or
``MIND_SHARED=1``). Shared pages offer only what the operator configured — server URLs, models, KB folders — as
select boxes, never free text, and backends are built with ``detailed_errors=False`` so no message quotes what a
model server answered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from dashboard.presenters.text import md, md_code
from mind_core import config
from mind_core.config import Settings
from mind_core.kb.store import KBError, KnowledgeBase
from mind_core.lvlm.registry import BackendConfig, backends

log = logging.getLogger(__name__)

KB_STATE_KEY = "kb_path"
#: this session's own saved-runs KB on a shared dashboard (set by the Try page from the annotator's name)
MY_KB_KEY = "my_kb_dir"
#: KB folders kept loaded at once by this server process (each holds its tables in memory); older ones are dropped
KB_CACHE_ENTRIES = 4
#: the one answer to a KB folder the dashboard does not open, whether it exists or not
KB_NOT_OFFERED = (
    "Not a KB folder this dashboard opens. Pick one in the list above: KB folders live under indexes/, the "
    "user-data folder (MIND_USER_DATA) or a folder named in MIND_KB_ROOTS."
)

#: The dashboard's pages, in menu order: (script, title, icon, url path, one-line purpose).
PAGES: list[tuple[str, str, str, str, str]] = [
    ("dashboard/views/home.py", "Home", "🏠", "home", "what is loaded, counts per relation"),
    ("dashboard/views/products.py", "Products", "🛍️", "products", "a product, its co-buy partners and their intentions"),
    ("dashboard/views/search.py", "Search", "🔎", "search", "semantic, keyword or hybrid search with facets; export"),
    (
        "dashboard/views/try_product.py",
        "Try a product",
        "🧪",
        "try_product",
        "upload two products and watch MIND distill intentions live",
    ),
    (
        "dashboard/views/categories.py",
        "Categories",
        "📊",
        "categories",
        "charts of relation types and categories; embedding map",
    ),
    (
        "dashboard/views/intentionqa.py",
        "IntentionQA",
        "🎯",
        "intentionqa",
        "does the KB help answer purchase-intention questions?",
    ),
    (
        "dashboard/views/thresholds.py",
        "Filter thresholds",
        "🎚️",
        "thresholds",
        "what a stricter or looser filter would keep",
    ),
]


def _cli_kb_arg() -> str | None:
    """``streamlit run app.py -- --kb DIR``."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--kb" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--kb="):
            return arg.split("=", 1)[1]
    return None


def server_address() -> str:
    """The address the Streamlit server is bound to ("" = every interface, Streamlit's default)."""
    return str(st.get_option("server.address") or "")


def settings() -> Settings:
    """defaults < environment < ``-- --kb DIR`` on the streamlit command line (the widgets come on top), with the
    server's address (local or shared mode)."""
    return config.settings().replace(kb_dir=_cli_kb_arg(), server_address=server_address())


def initial_kb_path() -> Path:
    return settings().kb_dir


@st.cache_resource(show_spinner="Loading knowledge base…", max_entries=KB_CACHE_ENTRIES)
def load_kb(path: str, manifest_mtime: float) -> KnowledgeBase:
    """Cached per folder and manifest version (a rebuilt KB is reloaded); at most :data:`KB_CACHE_ENTRIES`."""
    return KnowledgeBase(path)


def kb_candidates() -> list[str]:
    """Built KB folders the sidebar offers: the KB subfolders of the KB roots (indexes/, the user-data folder,
    MIND_KB_ROOTS), plus the current one."""
    found = []
    for root in settings().kb_root_dirs:
        if root.is_dir():
            # hidden folders are not KBs to offer: a build's staging folder (.building-*) among them
            found += [str(p.parent) for p in sorted(root.glob("*/manifest.json")) if not p.parent.name.startswith(".")]
    mine = st.session_state.get(MY_KB_KEY)  # shared mode: the annotator's own KB, not the others'
    if mine and kb_acceptable(mine):
        found.append(mine)
    return list(dict.fromkeys(found))


def kb_acceptable(path: str | Path, base: Settings | None = None) -> bool:
    """A KB folder the sidebar may open: allowed by :meth:`Settings.kb_allowed` (the configured KB or inside a KB
    root) and built (it has a manifest). Anything else gets :data:`KB_NOT_OFFERED`, the same text whether the path
    exists or not."""
    base = base or settings()
    try:
        return base.kb_allowed(path) and (Path(path).expanduser() / "manifest.json").is_file()
    except OSError:
        return False


def current_kb_path() -> Path:
    if KB_STATE_KEY not in st.session_state:
        st.session_state[KB_STATE_KEY] = str(initial_kb_path())
    return Path(st.session_state[KB_STATE_KEY])


def one_line(err: BaseException) -> str:
    """The first line of an error's message (what a page shows; the rest goes to the log)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def current_kb() -> KnowledgeBase | None:
    """The loaded KB, or None after rendering one clear line that says what is wrong and how to fix it (a missing,
    stale or damaged KB; anything else unexpected is logged with its traceback and named by type only)."""
    path = current_kb_path()
    if not settings().kb_allowed(path):
        st.error(KB_NOT_OFFERED)
        return None
    manifest = path / "manifest.json"
    try:
        return load_kb(str(path), manifest.stat().st_mtime if manifest.exists() else 0.0)
    except Exception as err:  # a KB folder can be damaged in ways no reader foresees: never a traceback
        if isinstance(err, KBError):
            st.error(md("No usable knowledge base: {}", one_line(err)))
        else:
            log.exception("cannot open the KB at %s", path)
            st.error(
                md(
                    "No usable knowledge base: {} cannot be opened ({}); rebuild it with build-kb --force.",
                    path.name,
                    type(err).__name__,
                )
            )
        st.info(
            "The sample KB is built by `make run`, or by hand with "
            "`python -m mind_core build-kb --input data/mind_sample --out indexes/sample`. "
            "Pick another KB folder in the sidebar."
        )
        return None


def kb_cache_key(kb: KnowledgeBase) -> str:
    """A hashable stand-in for a KB in ``st.cache_data`` keys: changes when the folder is rebuilt."""
    return f"{kb.path}@{kb.manifest.get('built_at')}"


def render_sidebar() -> KnowledgeBase | None:
    """KB picker and its counts; returns the loaded KB (or None)."""
    with st.sidebar:
        st.subheader("Knowledge base")
        current = str(current_kb_path())
        options = list(dict.fromkeys([current, *kb_candidates()]))
        choice = st.selectbox(
            "KB folder",
            options,
            index=options.index(current),
            key="kb_select",
            help="Set MIND_KB or run `streamlit run app.py -- --kb DIR` to choose the default.",
        )
        typed = ""
        if not settings().is_shared:  # shared: the operator's KB folders only
            typed = st.text_input("…or another KB folder", value="", key="kb_typed", placeholder="/path/to/kb")
        wanted = choice
        if typed.strip():
            if kb_acceptable(typed.strip()):
                wanted = typed.strip()
            else:
                st.error(KB_NOT_OFFERED)
        if wanted != current:
            st.session_state[KB_STATE_KEY] = wanted
        kb = current_kb()
        if kb is not None:
            c = kb.counts()
            st.caption(
                md(
                    "**{}** · {:,} intentions · {:,} pairs · {:,} products · index {}",
                    Path(kb.path).name,
                    c["intentions"],
                    c["pairs"],
                    c["products"],
                    md_code(kb.manifest.get("index_factory")),
                )
            )
        st.caption(f"Default LVLM backend: `{settings().backend}` (MIND_BACKEND)")
    return kb


#: caps on number fields of a shared dashboard (a visitor must not start thousands of threads)
SHARED_NUMBER_MAX = {"concurrency": 16, "batch_size": 16, "timeout_s": 600}
#: API key source named in the hint of a 401 for a typed key
TYPED_KEY_SOURCE = "the API key field"
FIRST_MODEL = "the server's first model"


def _shared_kinds(base: Settings, kinds: Sequence[str]) -> list[str]:
    """The backends a shared dashboard can offer: the offline fallback, transformers when the operator configured
    a model, openai when they configured a server."""
    usable = {"offline": True, "transformers": bool(base.offered_models), "openai": bool(base.offered_endpoints)}
    return [k for k in kinds if usable.get(k, False)]


def _shared_choices(kind: str, option: str, base: Settings) -> list[str] | None:
    """The select box a shared dashboard shows for a text option, or None: the option is not offered (it keeps
    the operator's setting)."""
    if option == "endpoint":
        return list(base.offered_endpoints)
    if kind == "transformers" and option == "model":
        return list(base.offered_models)
    if kind == "openai" and option == "model":
        return list(dict.fromkeys(["", base.openai_model]))
    return None


def backend_picker(prefix: str, base: Settings, *, kinds: Sequence[str] | None = None) -> BackendConfig:
    """Widgets for choosing an LVLM backend and its options, made from what each backend declares in the registry
    (:mod:`mind_core.lvlm.registry`) and seeded from the settings (environment variables). A field left empty
    keeps the setting: an empty API key field uses ``$OPENAI_API_KEY`` of the server process, if set (in shared
    mode only for a server the operator configured: :meth:`Settings.api_key_for`).

    Local mode: free text for URLs, models and files. Shared mode: only the backends the operator configured, their
    URLs and models as select boxes, no other text option, capped numbers, ``detailed_errors=False``.

    Widget keys: ``<prefix>_backend`` and ``<prefix>_<option>`` (``<prefix>_<backend>_<option>`` for an option
    several backends declare, such as ``model``)."""
    infos = backends()
    kinds = [k for k in (kinds or infos) if k in infos]
    shared_mode = base.is_shared
    if shared_mode:
        kinds = _shared_kinds(base, kinds) or ["offline"]
    default = base.backend if base.backend in kinds else kinds[0]
    kind = st.radio(
        "Backend",
        kinds,
        index=kinds.index(default),
        key=f"{prefix}_backend",
        persist_state="session",
        format_func=lambda k: infos[k].title,
    )
    info = infos[kind]
    shared = {o.name for other in infos.values() if other.name != kind for o in other.options}
    values: dict = {}
    for opt in info.options:
        if not opt.form or not (opt.cli or opt.setting or opt.secret):
            continue  # device / dtype / engine / retries: CLI and library only
        key = f"{prefix}_{kind}_{opt.name}" if opt.name in shared else f"{prefix}_{opt.name}"
        seeded = getattr(base, opt.setting, None) if opt.setting else None
        label = opt.label or opt.name.replace("_", " ").capitalize()
        if opt.secret:
            values[opt.name] = st.text_input(
                label,
                type="password",
                key=key,
                persist_state="session",
                help="Kept only in this browser session's memory: never saved or logged. "
                + (
                    "Empty: the key the operator set for this server, if any."
                    if shared_mode
                    else "Empty: $OPENAI_API_KEY of the server process, if set."
                ),
            )
        elif opt.type in (int, float):
            top = SHARED_NUMBER_MAX.get(opt.name) if shared_mode else None
            if top is not None and seeded is not None:
                seeded = min(seeded, top)
            values[opt.name] = st.number_input(
                label,
                min_value=opt.type(1),
                max_value=None if top is None else opt.type(top),
                value=None if seeded is None else opt.type(seeded),
                step=opt.type(1),
                key=key,
                persist_state="session",
                placeholder="default",
                help=opt.help,
            )
        elif shared_mode:
            choices = _shared_choices(kind, opt.name, base)
            if choices is None:
                continue  # a path or free text: not offered on a shared dashboard
            values[opt.name] = st.selectbox(
                label,
                choices,
                key=key,
                persist_state="session",
                format_func=lambda v: v or FIRST_MODEL,
                help=opt.help + " (the choices the operator configured)",
            )
        else:
            values[opt.name] = st.text_input(
                label,
                value=str(seeded or ""),
                key=key,
                persist_state="session",
                placeholder=opt.placeholder or "",
                help=opt.help,
            )
    if info.option("api_key") is not None:
        typed = values.pop("api_key", "") or ""
        endpoint = values.get("endpoint") or base.openai_endpoint
        if typed:
            values.update(api_key=typed, api_key_source=TYPED_KEY_SOURCE)
        else:  # the key of the process environment, where the mode allows it (never to a visitor-chosen URL)
            values.update(api_key=base.api_key_for(endpoint) or None, api_key_source="OPENAI_API_KEY")
    if shared_mode and info.option("detailed_errors") is not None:
        values["detailed_errors"] = False
    config_ = BackendConfig.from_settings(base.replace(openai_api_key=""), kind, **values)
    if shared_mode and config_.get("endpoint") is not None and not base.endpoint_offered(config_.get("endpoint")):
        config_ = config_.with_options(endpoint=None)  # defensive: nothing but a configured server
    return config_
