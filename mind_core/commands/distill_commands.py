"""``distill``: run MIND's three stages over Amazon metadata into resumable, sharded Parquet parts."""
from __future__ import annotations

import argparse
import os
import sys

EPILOG = """\
examples:
  python -m mind_core distill --metadata meta_Clothing.json.gz --out runs/clothing --backend offline --max-pairs 20
  python -m mind_core distill --metadata meta.json.gz --out runs/x --backend openai \\
      --endpoint http://gpu-node:8000/v1 --concurrency 32 --shard 3/8      # shard 3 of 8 (shards count from 0)
  python -m mind_core build-kb --input runs/x --out indexes/x

Killed at any moment, the same command resumes: finished (pair, relation) rows are never redone or duplicated.
"""


def _positive(kind: type):
    def conv(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return conv


def register(sub) -> None:
    p = sub.add_parser(
        "distill", help="generate intentions for co-buy pairs with an LVLM (MIND's 3 stages)",
        description="Read Amazon Review 2018 product metadata (JSON lines, optionally .gz), take the also_buy pairs, "
                    "and for each pair and relation run: describe (stage 1, only for products without a "
                    "description unless --describe always), intention (stage 2) and the role-aware filter (stage "
                    "3). Writes Parquet parts under --out that `build-kb --input DIR` turns into a KB.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metadata", required=True, metavar="FILE", help="Amazon metadata: .json/.jsonl[.gz] lines")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; re-use it to resume)")
    p.add_argument("--backend", required=True, choices=("offline", "transformers", "openai"),
                   help="offline = text-only fallback (no GPU, no network); transformers = local folder or HF id; "
                        "openai = any OpenAI-compatible server (vLLM, SGLang, Ollama ...)")
    p.add_argument("--model", metavar="M", help="model folder / HF id (transformers), model name (openai; default: "
                                                 "the server's), or a .gguf path (offline)")
    p.add_argument("--endpoint", metavar="URL", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    p.add_argument("--api-key-env", metavar="VAR", default=None,
                   help="name of the environment variable holding the API key (default: OPENAI_API_KEY if set); "
                        "the key itself is never taken on the command line")
    p.add_argument("--relations", default="all", metavar="LIST",
                   help="'all' (20 relations) or a comma list such as usedFor,isA,cause (default: all)")
    p.add_argument("--max-pairs", type=_positive(int), metavar="N",
                   help="only the first N pairs of the file (applied before --shard)")
    p.add_argument("--concurrency", type=_positive(int), metavar="C",
                   help="parallel requests (openai backend; default 8)")
    p.add_argument("--shard", default=None, metavar="i/n",
                   help="work only on shard i of n (0 <= i < n), a stable partition of the pairs")
    p.add_argument("--no-images", action="store_true", help="do not fetch images (text only)")
    p.add_argument("--require-images", action="store_true",
                   help="skip pairs where a product has no reachable image instead of using its text only")
    p.add_argument("--image-timeout", type=_positive(float), default=2.0, metavar="S",
                   help="seconds per image download (default 2)")
    p.add_argument("--describe", choices=("missing", "always", "never"), default="missing",
                   help="stage 1 for products without a description (default), for all, or never")
    p.add_argument("--batch-size", type=_positive(int), metavar="B", help="generation batch size (transformers)")
    p.add_argument("--chunk-pairs", type=_positive(int), default=None, metavar="P",
                   help="pairs per written part; a kill loses at most one chunk of work (default: 8, or more so "
                        "that 2 x concurrency / batch size requests are in flight per stage)")
    p.add_argument("--temperature", type=float, default=0.2, metavar="T",
                   help="sampling temperature (default 0.2; 0 = greedy)")
    p.add_argument("--max-new-tokens", type=_positive(int), default=512, metavar="N", help="default 512")
    p.add_argument("--seed", type=int, default=None, help="sampling seed where the backend supports one")
    p.add_argument("--skip-bad", action="store_true", help="skip and count invalid metadata lines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_distill)


def backend_from_args(args: argparse.Namespace):
    """Build the backend the flags ask for (raises BackendError / UserError with a next step)."""
    from mind_core.cli import UserError
    from mind_core.lvlm import make_backend

    options: dict = {}
    if args.concurrency is not None:
        if args.backend != "openai":
            raise UserError("--concurrency applies to --backend openai; use --batch-size for transformers")
        options["concurrency"] = args.concurrency
    if args.batch_size is not None:
        if args.backend == "openai":
            raise UserError("--batch-size applies to --backend transformers; use --concurrency for openai")
        if args.backend == "transformers":
            options["batch_size"] = args.batch_size
    api_key = None
    if args.backend == "openai":
        var = args.api_key_env or ("OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None)
        if var:
            api_key = os.environ.get(var)
            if args.api_key_env and not api_key:
                raise UserError(f"--api-key-env {var}: that environment variable is not set or empty")
    elif args.api_key_env:
        raise UserError("--api-key-env applies to --backend openai only")
    if args.endpoint and args.backend != "openai":
        raise UserError("--endpoint applies to --backend openai only")
    return make_backend(args.backend, model=args.model, endpoint=args.endpoint, api_key=api_key, **options)


def cmd_distill(args: argparse.Namespace) -> int:
    import logging

    from mind_core.cli import UserError
    from mind_core.distill.batch import DistillError, parse_shard, run_distill
    from mind_core.distill.pipeline import DistillOptions
    from mind_core.loaders.amazon import load_amazon_metadata
    from mind_core.lvlm.base import GenParams
    from mind_core.schema import parse_relations

    if not args.verbose:  # one line per HTTP request would drown the progress bar
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        relations = parse_relations(args.relations)
        shard = parse_shard(args.shard)
    except (ValueError, DistillError) as err:
        raise UserError(str(err)) from None
    if args.no_images and args.require_images:
        raise UserError("--no-images and --require-images contradict each other; pick one")
    if args.temperature < 0:
        raise UserError("--temperature must be >= 0")

    meta = load_amazon_metadata(args.metadata, skip_bad=args.skip_bad)
    print(meta.report.summary(), file=sys.stderr)
    for msg in meta.report.errors[:5]:
        print(f"  skipped: {msg}", file=sys.stderr)
    if not meta.pairs:
        raise UserError(f"{args.metadata}: no co-buy pairs (no also_buy link whose two products are both in "
                        "the file)")

    params = GenParams(temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                       do_sample=args.temperature > 0, seed=args.seed)
    options = DistillOptions(relations=relations, params=params, use_images=not args.no_images,
                             require_images=args.require_images, describe=args.describe,
                             image_timeout=args.image_timeout)
    backend = backend_from_args(args)
    try:
        if getattr(backend, "text_only", False):
            print(f"backend {backend.name} ({backend.model}) is the text-only fallback: rows are flagged text_only",
                  file=sys.stderr)
        run_info = {"metadata": str(args.metadata), "backend": args.backend, "model": backend.model,
                    "relations_spec": args.relations, "max_pairs": args.max_pairs, "no_images": args.no_images,
                    "require_images": args.require_images, "temperature": args.temperature,
                    "max_new_tokens": args.max_new_tokens}
        try:
            summary = run_distill(meta.products, meta.pairs, args.out, backend, options, shard=shard,
                                  max_pairs=args.max_pairs, chunk_pairs=args.chunk_pairs,
                                  progress=not args.no_progress, run_info=run_info)
        except DistillError as err:
            raise UserError(str(err)) from None
    finally:
        backend.close()
    print(summary.text(), file=sys.stderr)
    print(f"next: python -m mind_core build-kb --input {args.out} --out indexes/<name>", file=sys.stderr)
    return 0 if summary.remaining == 0 or summary.errors == 0 and summary.skipped_pairs else 1
