"""Filter-score commands: ``rescore`` (recompute P(yes) for a KB slice with any backend) and ``scores`` (how each
score agrees with the recorded verdicts)."""

from __future__ import annotations

import argparse
import json
import sys

from mind_core.cli.common import (
    UserError,
    add_backend_args,
    add_kb_arg,
    backend_from_args,
    open_kb,
    positive,
    quiet_http_logs,
)

EPILOG = """\
examples:
  python -m mind_core rescore --kb indexes/sample --backend offline --where relation=usedFor --limit 20
  python -m mind_core rescore --kb indexes/sample --backend openai --endpoint http://gpu-node:8000/v1 \\
      --concurrency 32 --where relation=usedFor,isA --where verdict=no
  python -m mind_core scores --kb indexes/sample

Killed at any moment, the same command resumes: rows already rescored by this backend/model are never redone.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "rescore",
        help="recompute the filter's P(yes) for a slice of a KB with any LVLM backend (resumable)",
        description="Ask the role-aware filter question again for the selected KB rows (same prompt, stacked pair "
        "image, both titles and descriptions) and record the answer and P(yes) under "
        "<kb>/rescore/<backend_model>/. The KB tables are not changed; the dashboard shows the latest "
        "rescored value of each row as the score p_yes_rescored.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kb_arg(p, required=True, help="a built KB folder")
    add_backend_args(p, required=True)
    p.add_argument(
        "--where",
        action="append",
        metavar="COL=V[,V]",
        help="only rows with this relation / verdict / category / source (repeatable; all must hold), "
        "e.g. relation=usedFor",
    )
    p.add_argument("--limit", type=positive(int), metavar="N", help="only the first N selected rows (KB order)")
    p.add_argument(
        "--chunk-rows",
        type=positive(int),
        metavar="R",
        help="rows per written part; a kill loses at most one chunk (default: max(16, 2 x parallelism))",
    )
    p.add_argument("--no-images", action="store_true", help="do not fetch product images (text only)")
    p.add_argument(
        "--image-timeout", type=positive(float), default=2.0, metavar="S", help="seconds per image download (default 2)"
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive(int),
        default=128,
        metavar="N",
        help="length of the answer + reason (default 128; P(yes) only needs the first token)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_rescore)

    p = sub.add_parser(
        "scores",
        help="how each filter score agrees with the recorded verdicts (AUC, best F1)",
        description="For every score the KB has (p_yes, p_yes_rescored, critic, grounding, typicality): "
        "ROC AUC against the recorded verdicts (yes = positive) with a 95%% bootstrap interval, and the "
        "threshold with the best F1 with its precision, recall and kept rate; then the binary rule's kept "
        "rate per relation.",
    )
    add_kb_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_scores)


def cmd_rescore(args: argparse.Namespace) -> int:
    from mind_core.distill.rescore import RescoreError, run_rescore
    from mind_core.lvlm.base import GenParams
    from mind_core.query.facets import filter_rows, parse_where

    quiet_http_logs(args)
    try:
        facets = parse_where(args.where)
    except ValueError as err:
        raise UserError(str(err)) from None
    kb = open_kb(args)
    # the cut is made before finished rows are skipped, so re-running the same command targets the same rows
    rows = filter_rows(kb, facets).head(args.limit) if args.limit else filter_rows(kb, facets)
    if rows.empty:
        raise UserError(
            f"no KB rows match {' and '.join(args.where or [])}; check the relation / category names "
            "with `python -m mind_core stats`"
        )
    backend = backend_from_args(args)
    try:
        params = GenParams(temperature=0.0, do_sample=False, max_new_tokens=args.max_new_tokens)
        summary = run_rescore(
            kb,
            rows,
            backend,
            params=params,
            use_images=not args.no_images,
            image_timeout=args.image_timeout,
            chunk_rows=args.chunk_rows,
            progress=not args.no_progress,
        )
    except RescoreError as err:
        raise UserError(str(err)) from None
    finally:
        backend.close()
    print(summary.text(), file=sys.stderr)
    return 0 if summary.remaining == 0 else 1


def cmd_scores(args: argparse.Namespace) -> int:
    from mind_core.scores.summary import scores_summary

    kb = open_kb(args)
    summary = scores_summary(kb)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if kb.scores.attrs.get("missing_file"):
        print(
            f"note: {kb.path} was built before filter scores existed; rebuild it with build-kb --force to get "
            "grounding and typicality",
            file=sys.stderr,
        )
    print(f"KB {kb.path}: {len(kb.intentions)} intentions; 'score >= t' against the recorded verdicts (yes = positive)")
    for key, s in summary["scores"].items():
        lo, hi = s["auc_ci95"]
        print(
            f"  {key:15s} AUC {s['auc']:.3f} [95% CI {lo:.3f}-{hi:.3f}]  "
            f"best F1 {s['f1']:.3f} at t = {s['threshold']:.2f} "
            f"(precision {s['precision']:.3f}, recall {s['recall']:.3f}, keeps {s['kept_rate']:.1%}; "
            f"{s['nan']} rows without a value)"
        )
    critic = summary.get("critic")
    if critic:
        print(
            f"  critic: {critic.get('model')} model from {critic.get('model_dir')} (its own pair-disjoint validation "
            f"AUC {critic.get('validation_auc', float('nan')):.3f}); {critic.get('out_of_fold_rows', 0)} rows scored "
            "out-of-fold (their pair was in its training set), "
            f"{critic.get('plain_rows', 0)} by the full model"
        )
    rel = summary["relations"]
    print("\nbinary rule (verdict = yes) per relation, strictest first:")
    for r in rel:
        aucs = "  ".join(f"{k} AUC {v:.2f}" for k, v in r["auc"].items() if v == v)
        print(f"  {r['relation']:13s} kept {r['kept']:4d}/{r['judged']:4d} = {r['kept_rate']:.1%}  {aucs}")
    return 0
