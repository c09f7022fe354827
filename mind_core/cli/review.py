"""``review import`` / ``review export`` / ``review stats``: human ratings of a KB's intentions in the review
database (``MIND_REVIEW_DB``, default ``<MIND_USER_DATA>/review.sqlite``)."""

from __future__ import annotations

import argparse
import json

from mind_core.cli.common import UserError, add_kb_arg, command_settings, open_kb, positive

EPILOG = """\
examples:
  python -m mind_core review import --kb indexes/sample --file ratings.csv
  python -m mind_core review export --kb indexes/sample --out ratings.jsonl
  python -m mind_core review export --kb indexes/sample --labels        # <kb>/labels/human.parquet (majority)
  python -m mind_core critic train --kb indexes/sample --out models/human --labels human
  python -m mind_core review stats --kb indexes/sample --json

Files: columns intention_id, annotator, plausibility (0/1), typicality (1-5, empty when not plausible)
[, comment, created_at]; CSV, JSON Lines or Parquet. Answers are stored per KB folder name, intention and
annotator: importing an answer again replaces it.
"""


def _add_db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="review database: an SQLAlchemy URL or an SQLite file (default: $MIND_REVIEW_DB or "
        "<MIND_USER_DATA>/review.sqlite)",
    )


def register(sub) -> None:
    p = sub.add_parser(
        "review",
        help="human ratings (plausibility 0/1, typicality 1-5): import, export, agreement and filter statistics",
        description="Human review of a KB's intentions: the ratings the Review page collects, in and out of files, "
        "and what they say about the annotators' agreement, MIND's filter and the scores.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = p.add_subparsers(dest="review_command", metavar="ACTION", required=True)

    i = rsub.add_parser("import", help="read answers from CSV / JSONL / Parquet into the review database")
    add_kb_arg(i, required=True, help="the KB the answers belong to (intention ids are checked against it)")
    i.add_argument("--file", required=True, metavar="F", help="F.csv, F.jsonl or F.parquet")
    _add_db_arg(i)
    i.set_defaults(handler=cmd_import)

    e = rsub.add_parser("export", help="write a KB's answers to CSV / JSONL / Parquet, or its human labels file")
    add_kb_arg(e, required=True, help="the KB whose answers to write")
    e.add_argument("--out", metavar="F", default=None, help="F.csv, F.jsonl or F.parquet: every answer")
    e.add_argument(
        "--labels",
        action="store_true",
        help="write <kb>/labels/human.parquet (intention_id,label: the majority plausibility, ties left out) for "
        "critic train --labels human",
    )
    _add_db_arg(e)
    e.set_defaults(handler=cmd_export)

    s = rsub.add_parser(
        "stats",
        help="agreement (Cohen's kappa, Krippendorff's alpha), human vs filter, human vs critic / P(yes)",
    )
    add_kb_arg(s, required=True, help="the KB whose answers to analyse")
    s.add_argument("--json", action="store_true", help="print every number as JSON")
    s.add_argument("--boot", type=positive(int), default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    _add_db_arg(s)
    s.set_defaults(handler=cmd_stats)


def _store(args):
    from mind_core.review.store import ReviewDBError, open_store

    url = command_settings(args, review_db=args.db).review_db_url
    try:
        return open_store(url)
    except ReviewDBError as err:
        raise UserError(str(err)) from None


def cmd_import(args: argparse.Namespace) -> int:
    from mind_core.review.exchange import read_answers
    from mind_core.review.store import kb_id_of

    kb = open_kb(args)
    answers = read_answers(args.file, set(kb.intentions["intention_id"].astype(str)))
    store = _store(args)
    kb_id = kb_id_of(kb)
    before = store.count(kb_id)
    store.put(kb_id, answers)
    after = store.count(kb_id)
    print(
        f"imported {len(answers)} answers into {store.describe()} (KB {kb_id}): {after - before} new, "
        f"{len(answers) - (after - before)} replaced; {after} answers on this KB now"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mind_core.review.exchange import write_answers, write_human_labels
    from mind_core.review.store import kb_id_of

    if not args.out and not args.labels:
        raise UserError("review export: give --out F.{csv,jsonl,parquet}, --labels, or both")
    kb = open_kb(args)
    store = _store(args)
    answers = store.answers(kb_id_of(kb))
    if args.out:
        path = write_answers(answers, args.out)
        print(f"wrote {len(answers)} answers to {path}")
    if args.labels:
        if answers.empty:
            raise UserError(f"no answers for KB {kb_id_of(kb)} in {store.describe()}: nothing to label")
        path, n = write_human_labels(answers, kb.path)
        print(f"wrote {n} human labels (majority plausibility) to {path}")
    return 0


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(pair) -> str:
    return "" if not pair or pair[0] is None else f" [95% CI {pair[0]:.3f}-{pair[1]:.3f}]"


def stats_lines(report: dict) -> list[str]:
    lines = [
        f"{report['answers']} answers by {len(report['annotators'])} annotator(s) "
        f"({', '.join(f'{k} {v}' for k, v in report['annotators'].items())}) on {report['items_rated']} intentions; "
        f"plausible (majority) {_fmt(report['plausible_share'])}, mean typicality {_fmt(report['typicality_mean'], 2)}"
    ]
    for q, a in report["agreement"].items():
        alpha = f"{_fmt(a['krippendorff_alpha'])}{_ci(a['krippendorff_alpha_ci95'])}"
        text = f"{q}: Krippendorff's alpha ({a['level']}) {alpha}"
        text += f" over {a['items']} items rated by 2+"
        if "cohen_kappa" in a:
            w = "" if a["cohen_kappa_weights"] == "none" else f", {a['cohen_kappa_weights']} weights"
            text += (
                f"; Cohen's kappa{w} {_fmt(a['cohen_kappa'])}{_ci(a['cohen_kappa_ci95'])} "
                f"(n={a['cohen_kappa_items']}, raw agreement {_fmt(a['percent_agreement'])})"
            )
        lines.append(text)
    f = report["filter"]
    lines.append(
        f"filter vs people ({f['items']} judged intentions with a human label, {f['kept']} kept): precision of kept "
        f"{_fmt(f['precision_kept'])}{_ci(f['precision_kept_ci95'])}, "
        f"recall {_fmt(f['recall'])}{_ci(f['recall_ci95'])}, "
        f"filtered & implausible {_fmt(f['filtered_implausible'])}, kappa {_fmt(f['cohen_kappa'])}; mean typicality "
        f"kept {_fmt(f['typicality_kept_mean'], 2)}, filtered {_fmt(f['typicality_filtered_mean'], 2)}"
    )
    for r in f["per_relation"]:
        lines.append(
            f"  {r['relation']}: n={r['items']}, kept {r['kept']}, precision {_fmt(r['precision_kept'])}, "
            f"recall {_fmt(r['recall'])}"
        )
    for name, s in report["scores"].items():
        lines.append(f"{name} vs people: ROC AUC {_fmt(s['auc'])}{_ci(s['auc_ci95'])} over {s['items']} intentions")
    return lines


def cmd_stats(args: argparse.Namespace) -> int:
    from mind_core.kb.store import load_scores
    from mind_core.review.analysis import review_report
    from mind_core.review.store import kb_id_of

    kb = open_kb(args)
    store = _store(args)
    kb_id = kb_id_of(kb)
    answers = store.answers(kb_id)
    report = review_report(answers, kb.intentions, load_scores(kb), n_boot=args.boot)
    report = {"kb_id": kb_id, "database": store.describe(), **report}
    if args.json:
        print(json.dumps(report, indent=2))
    elif answers.empty:
        print(f"no answers for KB {kb_id} in {store.describe()} yet (rate on the Review page or `review import`)")
    else:
        print("\n".join(stats_lines(report)))
    return 0
