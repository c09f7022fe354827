"""The one registry of LVLM backends: name -> class, each backend declaring the options it takes.

A backend class registers itself (LAVIS-style)::

    @register_backend("openai", summary="any OpenAI-compatible server (vLLM, SGLang, Ollama ...)",
                      options=(BackendOption("endpoint", "server base URL", required=True, setting="openai_endpoint"),
                               ...))
    class OpenAIBackend: ...

and every caller asks by name: ``make_backend("openai", endpoint=...)``. What a user chooses - CLI flags, a page's
backend picker, environment variables - becomes a :class:`BackendConfig` (``kind`` + option values), built with
:meth:`BackendConfig.from_settings` so the order is always defaults < environment (:mod:`mind_core.config`) <
flags / widgets. The registry then checks it the same way for everyone: a missing required option, a bad value,
or an option another backend takes (``--concurrency`` given to ``transformers``) is a :class:`BackendError` saying
what to do. Options a backend does not declare are passed to its class unchanged (advanced knobs such as
``max_retries``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mind_core.lvlm.base import Backend, BackendError

#: modules holding the built-in backends; importing one registers its class
BUILTIN_MODULES: tuple[str, ...] = (
    "mind_core.lvlm.offline.backend",
    "mind_core.lvlm.transformers_backend",
    "mind_core.lvlm.openai_backend",
)


@dataclass(frozen=True)
class BackendOption:
    """One option of a backend. ``name`` is the key in :class:`BackendConfig` and the CLI flag (``--name-with-
    dashes``); ``arg`` the constructor keyword when it differs; ``setting`` the :class:`~mind_core.config.Settings`
    field that gives its default (so its environment variable)."""

    name: str
    help: str
    type: Callable[[Any], Any] = str
    arg: str | None = None
    required: bool = False
    setting: str | None = None
    #: never shown, logged or used in a cache key (API keys)
    secret: bool = False
    #: offered as a CLI flag by the commands that talk to a backend
    cli: bool = True
    #: a message when the value cannot work, else None
    check: Callable[[Any], str | None] | None = None
    #: short label and example value for a form field (the dashboard's backend pickers)
    label: str | None = None
    placeholder: str | None = None
    #: offered in the dashboard's backend form (else CLI and library only)
    form: bool = True
    #: the CLI flag's name when it differs from ``name`` (``timeout_s`` -> ``--timeout``)
    cli_name: str | None = None

    @property
    def flag(self) -> str:
        return "--" + (self.cli_name or self.name).replace("_", "-")

    @property
    def keyword(self) -> str:
        return self.arg or self.name


@dataclass(frozen=True)
class BackendInfo:
    """A registered backend."""

    name: str
    cls: type
    summary: str
    #: how a picker names it ("offline fallback (no GPU, text only)")
    title: str
    options: tuple[BackendOption, ...]
    #: the backend cannot see pixels (the offline fallback)
    text_only: bool
    #: the model is loaded into this process (worth sharing between runs); False: a client per run
    in_process: bool
    #: ``describe(options) -> str``: what will run, in words
    describe: Callable[[Mapping[str, Any]], str]

    def option(self, name: str) -> BackendOption | None:
        return next((o for o in self.options if o.name == name), None)


_REGISTRY: dict[str, BackendInfo] = {}


def register_backend(
    name: str,
    *,
    summary: str,
    title: str,
    options: tuple[BackendOption, ...] = (),
    in_process: bool = True,
    describe: Callable[[Mapping[str, Any]], str] | None = None,
) -> Callable[[type], type]:
    """Class decorator: register ``cls`` under ``name`` with its options."""

    def deco(cls: type) -> type:
        cls.name = name
        _REGISTRY[name] = BackendInfo(
            name=name,
            cls=cls,
            summary=summary,
            title=title,
            options=tuple(options),
            text_only=bool(getattr(cls, "text_only", False)),
            in_process=in_process,
            describe=describe or (lambda opts: f"{name} · {opts.get('model') or '(default model)'}"),
        )
        return cls

    return deco


def _load_builtin() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def backends() -> dict[str, BackendInfo]:
    """Every registered backend by name, in registration order (offline, transformers, openai, then plug-ins)."""
    _load_builtin()

    def order(info: BackendInfo) -> int:
        module = info.cls.__module__
        return BUILTIN_MODULES.index(module) if module in BUILTIN_MODULES else len(BUILTIN_MODULES)

    return {info.name: info for info in sorted(_REGISTRY.values(), key=order)}


def backend_names() -> tuple[str, ...]:
    return tuple(backends())


def backend_info(kind: str) -> BackendInfo:
    key = (kind or "").strip().lower()
    found = backends().get(key)
    if found is None:
        raise BackendError(f"unknown backend {kind!r}; choose one of: {', '.join(backend_names())}")
    return found


def owners_of(option: str) -> list[str]:
    """Backends that declare ``option``."""
    return [b.name for b in backends().values() if b.option(option) is not None]


def check_http_url(value: Any) -> str | None:
    text = str(value or "").strip()
    if text and not re.match(r"^https?://[^/\s]+", text):
        return f"{text!r} is not an http(s) URL; expected e.g. http://localhost:8000/v1"
    return None


# --- configuration -------------------------------------------------------------------------------------------------


class BackendConfig:
    """A backend choice: ``kind`` and option values (``None`` / ``""`` = not given). Secret options (the API key)
    are kept out of ``repr``, :meth:`describe` and :meth:`cache_key`."""

    def __init__(self, kind: str = "offline", **options: Any):
        self.kind = (kind or "offline").strip().lower()
        self.options: dict[str, Any] = {k: v for k, v in options.items() if v is not None and v != ""}

    @classmethod
    def from_settings(cls, settings: Any, kind: str | None = None, **overrides: Any) -> BackendConfig:
        """The backend ``kind`` (default: ``settings.backend``) with each declared option taken from its setting,
        then ``overrides`` on top (a None / "" override keeps the setting: an empty field in a form, an absent
        CLI flag)."""
        info = backend_info(kind or settings.backend)
        options: dict[str, Any] = {}
        for opt in info.options:
            if opt.setting is not None:
                value = getattr(settings, opt.setting, None)
                if value is not None and value != "":
                    options[opt.name] = value
        options.update({k: v for k, v in overrides.items() if v is not None and v != ""})
        return cls(info.name, **options)

    @property
    def info(self) -> BackendInfo:
        return backend_info(self.kind)

    @property
    def text_only(self) -> bool:
        return self.info.text_only

    def get(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def with_options(self, **changes: Any) -> BackendConfig:
        return BackendConfig(self.kind, **{**self.options, **changes})

    def problems(self) -> list[str]:
        """Everything that stops this config from working, found without loading anything (empty: fine)."""
        try:
            info = self.info
        except BackendError as err:
            return [str(err)]
        out = []
        for opt in info.options:
            value = self.options.get(opt.name)
            if opt.required and value is None:
                out.append(f"the {info.name} backend needs {opt.flag}: {opt.help}")
            elif value is not None and opt.check is not None and (msg := opt.check(value)):
                out.append(msg)
        for name in self.options:
            if info.option(name) is None and (owners := owners_of(name)):
                out.append(f"{_flag(name)} applies to --backend {' / '.join(owners)}, not {info.name}")
        return out

    def constructor_kwargs(self) -> dict[str, Any]:
        info = self.info
        kwargs: dict[str, Any] = {}
        for name, value in self.options.items():
            opt = info.option(name)
            if opt is None:
                kwargs[name] = value  # an undeclared knob: passed through as it is
                continue
            try:
                kwargs[opt.keyword] = opt.type(value)
            except (TypeError, ValueError):
                raise BackendError(
                    f"{opt.flag} {value!r}: expected {getattr(opt.type, '__name__', 'a value')}"
                ) from None
        return kwargs

    def describe(self) -> str:
        """What will run, in words (never the API key)."""
        try:
            info = self.info
        except BackendError as err:
            return str(err)
        return info.describe(self._public())

    def cache_key(self) -> tuple:
        """A hashable key without secrets (to share one in-process model between runs)."""
        return (self.kind, tuple(sorted((k, repr(v)) for k, v in self._public().items())))

    def _public(self) -> dict[str, Any]:
        try:
            secret = {o.name for o in self.info.options if o.secret}
        except BackendError:
            secret = set()
        return {k: v for k, v in self.options.items() if k not in secret and "key" not in k}

    def __repr__(self) -> str:
        shown = {k: ("***" if k not in self._public() else v) for k, v in self.options.items()}
        return f"BackendConfig({self.kind!r}, {shown!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BackendConfig) and (self.kind, self.options) == (other.kind, other.options)

    __hash__ = None  # mutable options: not hashable (use cache_key())


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def make_backend(kind: str | BackendConfig, /, **options: Any) -> Backend:
    """Build a backend by name (``make_backend("openai", endpoint=URL, concurrency=8)``) or from a
    :class:`BackendConfig`. Raises :class:`BackendError` for an unknown name, a missing or misplaced option, or a
    backend that cannot start; the message says what to do."""
    config = kind.with_options(**options) if isinstance(kind, BackendConfig) else BackendConfig(kind, **options)
    problems = config.problems()
    if problems:
        raise BackendError(problems[0])
    return config.info.cls(**config.constructor_kwargs())
