"""``--engine local|ray``, ``--ray-address`` and ``--workers``: the flags of the commands that can run on Ray
(``distill``, ``build-kb``), with one meaning in both."""

from __future__ import annotations

import argparse

from mind_core.cli.common import UserError, command_settings, positive

DEFAULT_WORKERS = 2


def add_engine_args(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("engine (Ray: pip install -r requirements-ray.txt)")
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help=f"local = {what} in this process (default); ray = on Ray Data actors, a local Ray instance or the "
        "cluster of --ray-address",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --engine ray: the Ray cluster, `auto` (this machine's cluster), HOST:PORT or ray://HOST:10001 "
        "(default: $MIND_RAY_ADDRESS; unset: start a local Ray instance)",
    )
    g.add_argument(
        "--workers",
        type=positive(int),
        default=None,
        metavar="N",
        help=f"with --engine ray: Ray actors working at once, each with its own backend / encoder (default "
        f"{DEFAULT_WORKERS})",
    )


def engine_from_args(args: argparse.Namespace):
    """None for the local engine, or the :class:`~mind_core.distill.ray_engine.RayOptions` the flags and settings
    ask for; Ray flags without ``--engine ray`` are a user error."""
    if args.engine != "ray":
        given = [flag for flag, v in (("--ray-address", args.ray_address), ("--workers", args.workers)) if v]
        if given:
            raise UserError(f"{' and '.join(given)} go{'es' if len(given) == 1 else ''} with --engine ray")
        return None
    from mind_core.distill.ray_engine import RayOptions

    s = command_settings(args)
    return RayOptions(
        address=(args.ray_address or s.ray_address or "").strip() or None,
        workers=args.workers or DEFAULT_WORKERS,
        num_cpus=s.ray_num_cpus,
        max_retries=s.ray_max_retries,
    )
