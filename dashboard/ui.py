"""Streamlit glue shared by the pages: the settings, which KB is loaded (cached), the sidebar, the backend picker.

Only loading/caching and rendering helpers live here; all computation is in ``mind_core``. Settings follow one
order everywhere: defaults < environment variables (:mod:`mind_core.config`) < ``streamlit run app.py -- --kb DIR``
< the sidebar and the pages' widgets.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from dashboard.presenters.text import md, md_code
from mind_core import config
from mind_core.config import INDEXES_DIR, Settings
from mind_core.kb.store import KBError, KnowledgeBase
from mind_core.lvlm.registry import BackendConfig, backends

KB_STATE_KEY = "kb_path"

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


def settings() -> Settings:
    """defaults < environment < ``-- --kb DIR`` on the streamlit command line (the widgets come on top)."""
    return config.settings().replace(kb_dir=_cli_kb_arg())


def initial_kb_path() -> Path:
    return settings().kb_dir


@st.cache_resource(show_spinner="Loading knowledge base…")
def load_kb(path: str, manifest_mtime: float) -> KnowledgeBase:
    """Cached per folder and manifest version (a rebuilt KB is reloaded)."""
    return KnowledgeBase(path)


def kb_candidates() -> list[str]:
    """Built KB folders the sidebar offers: under indexes/ and the user-data folder, plus the current one."""
    found = []
    for root in (INDEXES_DIR, settings().user_data_dir):
        if root.exists():
            found += [str(p.parent) for p in sorted(root.glob("*/manifest.json"))]
    return list(dict.fromkeys(found))


def current_kb_path() -> Path:
    if KB_STATE_KEY not in st.session_state:
        st.session_state[KB_STATE_KEY] = str(initial_kb_path())
    return Path(st.session_state[KB_STATE_KEY])


def current_kb() -> KnowledgeBase | None:
    """The loaded KB, or None after rendering a clear message that says how to build one."""
    path = current_kb_path()
    manifest = path / "manifest.json"
    try:
        return load_kb(str(path), manifest.stat().st_mtime if manifest.exists() else 0.0)
    except KBError as err:
        st.error(md("No usable knowledge base: {}", err))
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
        typed = st.text_input("…or another KB folder", value="", key="kb_typed", placeholder="/path/to/kb")
        wanted = typed.strip() or choice
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


def backend_picker(prefix: str, base: Settings, *, kinds: Sequence[str] | None = None) -> BackendConfig:
    """Widgets for choosing an LVLM backend and its options, made from what each backend declares in the registry
    (:mod:`mind_core.lvlm.registry`) and seeded from the settings (environment variables). A field left empty
    keeps the setting: an empty API key field uses ``$OPENAI_API_KEY`` of the server process, if set.

    Widget keys: ``<prefix>_backend`` and ``<prefix>_<option>`` (``<prefix>_<backend>_<option>`` for an option
    several backends declare, such as ``model``)."""
    infos = backends()
    kinds = [k for k in (kinds or infos) if k in infos]
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
        if not (opt.cli or opt.setting or opt.secret):
            continue  # device / dtype / engine: CLI and library only
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
                "Empty: $OPENAI_API_KEY of the server process, if set.",
            )
        elif opt.type in (int, float):
            values[opt.name] = st.number_input(
                label,
                min_value=opt.type(1),
                value=None if seeded is None else opt.type(seeded),
                step=opt.type(1),
                key=key,
                persist_state="session",
                placeholder="default",
                help=opt.help,
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
    return BackendConfig.from_settings(base, kind, **values)
