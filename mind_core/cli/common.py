"""What the commands share: the user-error type, number types, ``--kb``, and the backend flags.

The backend flags (``--backend``, ``--model``, ``--endpoint``, ``--concurrency``, ``--batch-size`` and
``--api-key-env``) are made from the options the backends declare in :mod:`mind_core.lvlm.registry`; a flag given
to a backend that does not take it is refused with the backend(s) that do. Values not given on the command line
come from the settings (environment variables, :mod:`mind_core.config`).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from mind_core.config import Settings, settings


class UserError(Exception):
    """A problem the user can fix (bad path, bad flag combination, stale index...). Printed without traceback."""


def positive(kind: type):
    """argparse type: a number of ``kind`` that must be > 0."""

    def conv(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return conv


def quiet_http_logs(args: argparse.Namespace) -> None:
    """One log line per HTTP request would drown the progress bar (shown again with -v)."""
    if not getattr(args, "verbose", False):
        logging.getLogger("httpx").setLevel(logging.WARNING)


# --- the KB a command works on ---------------------------------------------------------------------------------


def add_kb_arg(p: argparse.ArgumentParser, *, required: bool = False, help: str | None = None) -> None:
    p.add_argument(
        "--kb",
        default=None,
        required=required,
        metavar="DIR",
        help=help or f"KB folder (default: $MIND_KB or {Settings().kb_dir})",
    )


def command_settings(args: argparse.Namespace, **extra: Any) -> Settings:
    """defaults < environment < this command's flags."""
    return settings().replace(kb_dir=getattr(args, "kb", None), **extra)


def open_kb(args: argparse.Namespace):
    """The KB of ``--kb`` (or the configured one), or a UserError saying how to build it."""
    from mind_core.kb.store import KBError, KnowledgeBase

    try:
        return KnowledgeBase(command_settings(args).kb_dir)
    except KBError as err:
        raise UserError(str(err)) from None


# --- backend flags ---------------------------------------------------------------------------------------------


def _cli_options() -> dict[str, list[tuple[str, Any]]]:
    """CLI option name -> [(backend, BackendOption)] over every registered backend."""
    from mind_core.lvlm.registry import backends

    out: dict[str, list[tuple[str, Any]]] = {}
    for info in backends().values():
        for opt in info.options:
            if opt.cli:
                out.setdefault(opt.name, []).append((info.name, opt))
    return out


def add_backend_args(p, *, required: bool) -> None:
    """``--backend`` plus one flag per backend option (same meaning in every command)."""
    from mind_core.lvlm.registry import backends

    infos = backends()
    p.add_argument(
        "--backend",
        required=required,
        choices=list(infos),
        help="; ".join(f"{name} = {info.summary}" for name, info in infos.items()),
    )
    for name, owners in _cli_options().items():
        opt = owners[0][1]
        if len(owners) == 1:
            text = f"{opt.help} ({owners[0][0]})"
        else:
            text = "; ".join(f"{backend}: {o.help}" for backend, o in owners)
        metavar = name.upper().split("_")[0][:1] if opt.type in (int, float) else name.upper().split("_")[0]
        p.add_argument(
            opt.flag,
            dest=name,
            type=positive(opt.type) if opt.type in (int, float) else opt.type,
            default=None,
            metavar=metavar,
            help=text,
        )
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=None,
        help="name of the environment variable holding the API key (default: OPENAI_API_KEY if set); "
        "the key itself is never taken on the command line",
    )


def backend_config_from_args(args: argparse.Namespace, base: Settings | None = None):
    """The :class:`~mind_core.lvlm.registry.BackendConfig` the flags ask for: settings, then the flags."""
    from mind_core.lvlm.registry import BackendConfig, backend_info, owners_of

    base = base or settings()
    info = backend_info(args.backend)
    overrides = {name: getattr(args, name, None) for name in _cli_options()}
    if args.api_key_env:
        if info.option("api_key") is None:
            raise UserError(f"--api-key-env applies to --backend {' / '.join(owners_of('api_key'))} only")
        key = Settings.secret(args.api_key_env)
        if not key:
            raise UserError(f"--api-key-env {args.api_key_env}: that environment variable is not set or empty")
        overrides.update(api_key=key, api_key_source=args.api_key_env)
    config = BackendConfig.from_settings(base, info.name, **overrides)
    problems = config.problems()
    if problems:
        raise UserError(problems[0])
    return config


def backend_from_args(args: argparse.Namespace, base: Settings | None = None):
    """Build the backend the flags ask for (raises BackendError / UserError with a next step)."""
    from mind_core.lvlm.registry import make_backend

    return make_backend(backend_config_from_args(args, base))
