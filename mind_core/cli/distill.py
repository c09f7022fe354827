"""``distill``: run MIND's three stages over Amazon metadata into resumable, sharded Parquet parts."""

from __future__ import annotations

import argparse
import sys

from mind_core.cli.common import (
    UserError,
    add_backend_args,
    backend_config_from_args,
    backend_from_args,
    positive,
    quiet_http_logs,
)
from mind_core.cli.engine_args import add_engine_args, engine_from_args

EPILOG = """\
examples:
  python -m mind_core distill --metadata meta_Clothing.json.gz --out runs/clothing --backend offline --max-pairs 20
  python -m mind_core distill --metadata meta.json.gz --out runs/x --backend openai \\
      --endpoint http://gpu-node:8000/v1 --concurrency 32 --shard 3/8      # shard 3 of 8 (shards count from 0)
  python -m mind_core distill --metadata meta.json.gz --out runs/x --backend openai \
      --endpoint http://vllm-router:8000/v1 --concurrency 32 --engine ray --ray-address auto --workers 16
  python -m mind_core build-kb --input runs/x --out indexes/x

Killed at any moment, the same command resumes: finished (pair, relation) rows are never redone or duplicated.
Exit status: 0 when every row of the shard is done (rows another run wrote meanwhile count as done), 1 when some
remain (failed calls: re-run to retry them) or when every filter answer was unparseable, 2 for bad input.
A hung server costs at most --timeout x (--max-retries + 1) seconds per request (openai backend).
"""


def register(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="generate intentions for co-buy pairs with an LVLM (MIND's 3 stages)",
        description="Read Amazon Review 2018 product metadata (JSON lines, optionally .gz), take the also_buy pairs, "
        "and for each pair and relation run: describe (stage 1, only for products without a "
        "description unless --describe always), intention (stage 2) and the role-aware filter (stage "
        "3). Writes Parquet parts under --out that `build-kb --input DIR` turns into a KB.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--metadata", required=True, metavar="FILE", help="Amazon metadata: .json/.jsonl[.gz] lines")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; re-use it to resume)")
    add_backend_args(p, required=True)
    p.add_argument(
        "--relations",
        default="all",
        metavar="LIST",
        help="'all' (20 relations) or a comma list such as usedFor,isA,cause (default: all)",
    )
    p.add_argument(
        "--max-pairs",
        type=positive(int),
        metavar="N",
        help="only the first N pairs of the file (applied before --shard)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="i/n",
        help="work only on shard i of n (0 <= i < n), a stable partition of the pairs",
    )
    p.add_argument("--no-images", action="store_true", help="do not fetch images (text only)")
    p.add_argument(
        "--require-images",
        action="store_true",
        help="skip pairs where a product has no reachable image instead of using its text only",
    )
    p.add_argument(
        "--image-timeout", type=positive(float), default=2.0, metavar="S", help="seconds per image download (default 2)"
    )
    p.add_argument(
        "--describe",
        choices=("missing", "always", "never"),
        default="missing",
        help="stage 1 for products without a description (default), for all, or never",
    )
    p.add_argument(
        "--chunk-pairs",
        type=positive(int),
        default=None,
        metavar="P",
        help="pairs per written part; a kill loses at most one chunk of work (default: 8, or more so "
        "that 2 x concurrency / batch size requests are in flight per stage)",
    )
    p.add_argument(
        "--temperature", type=float, default=0.2, metavar="T", help="sampling temperature (default 0.2; 0 = greedy)"
    )
    p.add_argument("--max-new-tokens", type=positive(int), default=512, metavar="N", help="default 512")
    p.add_argument("--seed", type=int, default=None, help="sampling seed where the backend supports one")
    p.add_argument(
        "--filter",
        choices=("lvlm", "critic", "both"),
        default=None,
        dest="filter_mode",
        help="who decides the verdict: lvlm = the role-aware filter's yes/no (MIND); critic = the learned critic's "
        "P(keep) >= --critic-threshold, the LVLM filter is not asked; both = the LVLM filter runs and is recorded "
        "(reason, P(yes)), the critic decides. Default: both for --backend offline (its 135M model is no judge), "
        "lvlm otherwise",
    )
    p.add_argument(
        "--critic",
        metavar="MODEL_DIR",
        default=None,
        help="critic model folder for --filter critic|both (default: $MIND_CRITIC or the shipped "
        "data/critic/mind-sample)",
    )
    p.add_argument(
        "--critic-threshold",
        type=float,
        default=0.5,
        metavar="T",
        help="keep when the critic's P(keep) >= T (default 0.5)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip and count invalid metadata lines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_args(p, "the chunks run")
    p.set_defaults(handler=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> int:
    from mind_core.data.amazon import load_amazon_metadata
    from mind_core.distill.batch import DistillError, parse_shard
    from mind_core.distill.pipeline import DistillOptions
    from mind_core.lvlm.base import GenParams
    from mind_core.schema import parse_relations

    quiet_http_logs(args)
    try:
        relations = parse_relations(args.relations)
        shard = parse_shard(args.shard)
    except (ValueError, DistillError) as err:
        raise UserError(str(err)) from None
    if args.no_images and args.require_images:
        raise UserError("--no-images and --require-images contradict each other; pick one")
    if args.temperature < 0:
        raise UserError("--temperature must be >= 0")

    if not 0.0 <= args.critic_threshold <= 1.0:
        raise UserError("--critic-threshold must be between 0 and 1")
    filter_mode, critic = _filter_choice(args)
    engine = engine_from_args(args)

    meta = load_amazon_metadata(args.metadata, skip_bad=args.skip_bad)
    print(meta.report.summary(), file=sys.stderr)
    for msg in meta.report.errors[:5]:
        print(f"  skipped: {msg}", file=sys.stderr)
    if not meta.pairs:
        raise UserError(f"{args.metadata}: no co-buy pairs (no also_buy link whose two products are both in the file)")

    params = GenParams(
        temperature=args.temperature, max_new_tokens=args.max_new_tokens, do_sample=args.temperature > 0, seed=args.seed
    )
    options = DistillOptions(
        relations=relations,
        params=params,
        use_images=not args.no_images,
        require_images=args.require_images,
        describe=args.describe,
        image_timeout=args.image_timeout,
        filter_mode=filter_mode,
        critic=None if critic is None else _scorer(critic, meta.products),
        critic_threshold=args.critic_threshold,
    )
    if critic is not None:
        recorded = "; the LVLM filter's answer is recorded as the reason" if filter_mode == "both" else ""
        print(
            f"filter: {filter_mode} — the verdict is the learned critic's (P(keep) >= {args.critic_threshold:.2f}; "
            f"{critic.describe()}){recorded}",
            file=sys.stderr,
        )
    run_info = {
        "metadata": str(args.metadata),
        "backend": args.backend,
        "relations_spec": args.relations,
        "max_pairs": args.max_pairs,
        "no_images": args.no_images,
        "require_images": args.require_images,
        "temperature": args.temperature,
        "max_new_tokens": args.max_new_tokens,
        "filter": filter_mode,
        "critic": None if critic is None else {"model_dir": str(critic.path), "weights_sha256": critic.fingerprint},
        "critic_threshold": args.critic_threshold if critic is not None else None,
    }
    if engine is not None:
        summary = _distill_on_ray(args, meta, options, shard, engine, run_info)
    else:
        summary = _distill_here(args, meta, options, shard, run_info)
    print(summary.text(), file=sys.stderr)
    print(f"next: python -m mind_core build-kb --input {args.out} --out indexes/<name>", file=sys.stderr)
    if summary.all_unparsed:
        return 1  # rows without a single verdict are no result (the warning above says why)
    return 0 if summary.remaining == 0 or (summary.errors == 0 and summary.skipped_pairs) else 1


def _distill_here(args, meta, options, shard, run_info):
    from mind_core.distill.batch import DistillError, run_distill

    backend = backend_from_args(args)
    try:
        if getattr(backend, "text_only", False):
            print(
                f"backend {backend.name} ({backend.model}) is the text-only fallback: rows are flagged text_only",
                file=sys.stderr,
            )
        try:
            return run_distill(
                meta.products,
                meta.pairs,
                args.out,
                backend,
                options,
                shard=shard,
                max_pairs=args.max_pairs,
                chunk_pairs=args.chunk_pairs,
                progress=not args.no_progress,
                run_info={**run_info, "model": backend.model},
            )
        except DistillError as err:
            raise UserError(str(err)) from None
    finally:
        backend.close()


def _distill_on_ray(args, meta, options, shard, engine, run_info):
    from mind_core.distill.batch import DistillError
    from mind_core.distill.ray_engine import run_distill_ray

    config = backend_config_from_args(args)
    print(f"engine: {engine.describe()}, each with its own {config.kind} backend", file=sys.stderr)
    try:
        return run_distill_ray(
            meta.products,
            meta.pairs,
            args.out,
            config,
            options,
            ray_options=engine,
            shard=shard,
            max_pairs=args.max_pairs,
            chunk_pairs=args.chunk_pairs,
            progress=not args.no_progress,
            run_info={**run_info, "model": config.get("model")},
        )
    except DistillError as err:
        raise UserError(str(err)) from None


def _filter_choice(args: argparse.Namespace):
    """(filter mode, critic or None). The offline backend defaults to "both" when a critic is configured."""
    from mind_core.cli.common import command_settings
    from mind_core.scores.critic import CriticError, load_critic

    mode = args.filter_mode or ("both" if args.backend == "offline" else "lvlm")
    if mode == "lvlm":
        if args.critic:
            raise UserError("--critic goes with --filter critic or both")
        return mode, None
    folder = args.critic or command_settings(args).critic_dir
    if folder is None:
        if args.filter_mode is None:  # the offline default, but no critic: MIND's rule, said once
            print("no critic configured (MIND_CRITIC=none): the LVLM filter decides", file=sys.stderr)
            return "lvlm", None
        raise UserError(f"--filter {mode} needs a critic: give --critic MODEL_DIR (MIND_CRITIC is none)")
    try:
        return mode, load_critic(folder)
    except CriticError as err:
        raise UserError(str(err)) from None


def _scorer(critic, products):
    from mind_core.kb.critic import row_scorer

    return row_scorer(critic, products=products)
