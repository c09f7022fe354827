"""``eval intentionqa``: accuracy of the offline / KB / LVLM methods on IntentionQA questions."""

from __future__ import annotations

import argparse
import sys

from mind_core import config, io
from mind_core.cli.common import (
    UserError,
    add_backend_args,
    backend_from_args,
    open_kb,
    positive,
    quiet_http_logs,
)

EPILOG = """\
methods:
  overlap    word overlap between the question's products (+ intention, task 2) and each choice; no model
  embed      cosine similarity of MiniLM embeddings of the question and each choice
  embed+kb   as embed, plus the similarity-weighted mean of the k KB intentions retrieved for the question
  lvlm       the benchmark's zero-shot prompt to --backend; the answer letter is parsed like the benchmark does
  lvlm+kb    the same prompt preceded by the k retrieved KB intentions

examples:
  python -m mind_core eval intentionqa --data data/intentionqa/full/task1.jsonl.gz --method overlap \\
      --method embed --method embed+kb --kb indexes/sample --exclude-kb-pairs
  python -m mind_core eval intentionqa --data data/intentionqa/task2_sample.jsonl --method lvlm+kb \\
      --backend openai --endpoint http://localhost:8000/v1 --json runs/iqa_task2.json

Accuracy counts questions with at least 4 options (the benchmark's rule) and comes with a 95 % bootstrap interval.
LVLM answers are cached in --answers as they arrive: a killed run resumes, a repeated run asks nothing again.
"""


def register(sub) -> None:
    from mind_core.eval.intentionqa import DEFAULT_BOOTSTRAP, DEFAULT_K, METHODS

    ev = sub.add_parser("eval", help="evaluate the KB on a benchmark (intentionqa)")
    bench = ev.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    p = bench.add_parser(
        "intentionqa",
        help="IntentionQA multiple-choice accuracy (task 1 and task 2)",
        description="Score one or more methods on an IntentionQA file in the normalised JSONL layout "
        "(data/intentionqa/README.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, metavar="FILE", help="IntentionQA questions (normalised JSONL)")
    p.add_argument(
        "--kb",
        default=None,
        metavar="DIR",
        help="KB folder for embed+kb / lvlm+kb / --exclude-kb-pairs (default: $MIND_KB or indexes/sample)",
    )
    p.add_argument(
        "--method",
        action="append",
        choices=METHODS,
        metavar="M",
        help=f"one of {', '.join(METHODS)}; repeat to compare several (default: overlap)",
    )
    p.add_argument(
        "--k", type=positive(int), default=DEFAULT_K, help=f"KB intentions retrieved per question (default {DEFAULT_K})"
    )
    p.add_argument(
        "--limit",
        type=positive(int),
        metavar="N",
        help="only the first N questions of the file (after --exclude-kb-pairs)",
    )
    p.add_argument(
        "--exclude-kb-pairs",
        action="store_true",
        help="drop questions whose product pair (order ignored) is in the KB (leakage check)",
    )
    p.add_argument("--json", metavar="OUT", help="write summaries + per-question predictions as JSON")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--bootstrap",
        type=positive(int),
        default=DEFAULT_BOOTSTRAP,
        metavar="B",
        help=f"bootstrap resamples (default {DEFAULT_BOOTSTRAP})",
    )
    g = p.add_argument_group("LVLM backend (lvlm, lvlm+kb); same flags as `distill`")
    add_backend_args(g, required=False)
    g.add_argument(
        "--answers",
        metavar="FILE",
        default=None,
        help="LVLM answer cache, JSONL (default: <cache>/intentionqa/answers.jsonl)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_intentionqa)


def _tqdm_progress(desc: str, enabled: bool):
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="q", file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


def cmd_intentionqa(args: argparse.Namespace) -> int:
    from mind_core.eval import intentionqa as iqa

    methods = list(dict.fromkeys(args.method or ["overlap"]))
    wants_lvlm = any(m in iqa.LVLM_METHODS for m in methods)
    if wants_lvlm and not args.backend:
        raise UserError("lvlm / lvlm+kb need --backend offline|transformers|openai (see --help)")
    if not wants_lvlm and (args.backend or args.endpoint or args.model):
        raise UserError("--backend/--model/--endpoint apply only to --method lvlm or lvlm+kb")
    quiet_http_logs(args)

    try:
        questions = iqa.load_questions(args.data)
    except iqa.DataError as err:
        raise UserError(str(err)) from None

    kb = None
    if args.exclude_kb_pairs or any(m in iqa.KB_METHODS for m in methods):
        kb = open_kb(args)
    elif args.kb:
        print("note: --kb is only used by embed+kb, lvlm+kb and --exclude-kb-pairs", file=sys.stderr)

    n_file = len(questions)
    n_excluded = 0
    if args.exclude_kb_pairs:
        questions, n_excluded = iqa.exclude_pairs(questions, kb.intentions["pair_id"].unique())
    if args.limit:
        questions = questions[: args.limit]
    if not questions:
        raise UserError("no questions left to evaluate (every question's pair is in the KB?)")
    tasks = sorted({q.task for q in questions})
    print(
        f"{args.data}: {n_file} questions ({', '.join(iqa.TASKS[t] for t in tasks)})"
        + (f"; {n_excluded} dropped because their pair is in the KB" if args.exclude_kb_pairs else "")
        + f"; evaluating {len(questions)}, {sum(q.scored for q in questions)} with >= 4 options",
        file=sys.stderr,
    )

    backend = None
    if wants_lvlm:
        backend = backend_from_args(args)
        if getattr(backend, "text_only", False):
            print(f"backend {backend.name} ({backend.model}) is the text-only fallback", file=sys.stderr)
    try:
        vectors = None
        if any(m in ("embed", "embed+kb", "lvlm+kb") for m in methods):
            bar, upd = _tqdm_progress("embedding questions + choices", not args.no_progress)
            vectors = iqa.TextVectors(questions, progress=upd, encoder=kb.encoder if kb is not None else None)
            if bar:
                bar.close()
        cache = None
        if wants_lvlm:
            cache = iqa.AnswerCache(args.answers or config.cache_dir("intentionqa") / "answers.jsonl")
        batch = 8  # answers are written to the cache after each batch
        if args.backend == "openai":
            batch = max(8, 2 * (args.concurrency or 8))
        elif args.backend == "transformers" and args.batch_size:
            batch = max(8, args.batch_size)
        results = []
        name = args.data.rsplit("/", 1)[-1]
        for method in methods:
            bar, upd = _tqdm_progress(method, not args.no_progress and method in iqa.LVLM_METHODS)
            try:
                res = iqa.evaluate(
                    questions,
                    method,
                    kb=kb,
                    k=args.k,
                    backend=backend,
                    cache=cache,
                    vectors=vectors,
                    n_boot=args.bootstrap,
                    seed=args.seed,
                    batch_size=batch,
                    progress=upd,
                )
            except ValueError as err:
                raise UserError(str(err)) from None
            finally:
                if bar:
                    bar.close()
            results.append(res)
            print(iqa.format_result(name, res))
            typ = res.summary["per_typicality"]
            if len(typ) > 1:
                print(
                    "    by typicality: "
                    + ", ".join(f"{b} {100 * v['accuracy']:.1f}% (n={v['n']})" for b, v in typ.items() if v["n"])
                )
            rel = res.summary["per_relation"]
            if len(rel) > 1:
                print(
                    "    by relation: "
                    + ", ".join(f"{r} {100 * v['accuracy']:.1f}% (n={v['n']})" for r, v in rel.items() if v["n"])
                )
        by_method = {r.method: r for r in results}
        differences = []
        for other, base in iqa.KB_BASE.items():
            if other in by_method and base in by_method:
                d = iqa.paired_difference(
                    by_method[base].predictions, by_method[other].predictions, n_boot=args.bootstrap, seed=args.seed
                )
                differences.append({"base": base, "other": other, **d})
                print(iqa.format_difference(base, other, d))
    finally:
        if backend is not None:
            backend.close()

    if args.json:
        out = {
            "data": str(args.data),
            "data_sha256": io.sha256_file(args.data),
            "tasks": tasks,
            "kb": str(kb.path) if kb is not None else None,
            "exclude_kb_pairs": args.exclude_kb_pairs,
            "n_file": n_file,
            "n_excluded": n_excluded,
            "limit": args.limit,
            "bootstrap": {"resamples": args.bootstrap, "seed": args.seed, "level": 0.95},
            "results": [r.to_json() for r in results],
            "kb_effect": differences,
        }
        path = io.write_json(args.json, out, indent=1, allow_nan=True)
        print(f"wrote {path}", file=sys.stderr)
    return 1 if any(r.summary["n_errors"] for r in results) else 0
