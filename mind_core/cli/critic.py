"""``critic train`` / ``critic score``: a learned filter score (P(keep)) trained on a KB's verdicts or human labels."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from mind_core.cli.common import UserError, add_kb_arg, command_settings, open_kb, positive

EPILOG = """\
examples:
  python -m mind_core critic train --kb indexes/sample --out models/critic            # verdicts, text-linear
  python -m mind_core critic train --kb indexes/sample --out models/critic --model auto   # compare, keep the best
  python -m mind_core critic train --kb indexes/mykb --out models/human --labels human    # <kb>/labels/human.parquet
  python -m mind_core critic score --kb indexes/mykb --model models/critic
  python -m mind_core scores --kb indexes/mykb                                         # the critic's AUC among the rest

Cross-fitting: rows are split into folds by pair; the rows of the training KB (any row whose pair the critic was
trained on) are scored by a fold model that never saw their pair, every other row by the model trained on all rows.
"""


def register(sub) -> None:
    from mind_core.scores.critic import DEFAULT_PRESET, LABEL_SOURCES, PRESETS

    p = sub.add_parser(
        "critic",
        help="a learned critic: train it on a KB's verdicts (or human labels), score KBs with it (P(keep))",
        description="A classifier of 'keep this intention?' trained on what a KB holds (the intention's words, its "
        "relation, optionally embeddings), validated on pairs it never saw.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = p.add_subparsers(dest="critic_command", metavar="ACTION", required=True)

    t = csub.add_parser(
        "train",
        help="train a critic with pair-grouped cross-fitting and save it (safetensors + JSON)",
        description="Train on the KB's labels with K-fold cross-fitting grouped by pair; print the pair-disjoint "
        "validation (AUC per fold, pooled with a bootstrap interval, per relation) and save the model folder.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kb_arg(t, required=True, help="the KB to learn from")
    t.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write (replaced if it exists)")
    t.add_argument(
        "--labels",
        choices=LABEL_SOURCES,
        default="verdict",
        help="verdict = the filter's recorded yes/no (default); human = <kb>/labels/human.parquet|csv "
        "(intention_id,label) or --labels-file",
    )
    t.add_argument("--labels-file", metavar="FILE", help="human labels to read instead of <kb>/labels/human.*")
    choices = [*PRESETS, "auto"]
    t.add_argument(
        "--model",
        choices=choices,
        default=DEFAULT_PRESET,
        help="; ".join(f"{k} = {v.summary}" for k, v in PRESETS.items())
        + f"; auto = train each, keep the best pair-disjoint AUC (default {DEFAULT_PRESET})",
    )
    t.add_argument("--folds", type=positive(int), default=5, metavar="K", help="cross-fitting folds (default 5)")
    t.add_argument(
        "--C",
        type=positive(float),
        default=None,
        metavar="C",
        help="linear models: fix the inverse regularisation instead of choosing it by inner cross-validation",
    )
    t.add_argument("--seed", type=int, default=0, help="MLP seed (default 0)")
    t.add_argument("--json", action="store_true", help="print the model's manifest as JSON")
    t.set_defaults(handler=cmd_train)

    s = csub.add_parser(
        "score",
        help="write the critic column (P(keep)) into <kb>/scores.parquet",
        description="Score every row of a KB with a critic (out-of-fold for rows whose pair it was trained on) "
        "into the critic column of <kb>/scores.parquet; the manifest records the model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kb_arg(s, required=True, help="the KB to score")
    s.add_argument(
        "--model",
        metavar="MODEL_DIR",
        default=None,
        help="critic model folder (default: $MIND_CRITIC or the shipped data/critic/mind-sample)",
    )
    s.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when the KB already has this model's scores (make run uses it)",
    )
    s.set_defaults(handler=cmd_score)


def _training_kb_info(kb) -> dict:
    return {
        "path": str(kb.path),
        "intentions_sha256": kb.manifest.get("artifacts", {}).get("intentions.parquet", {}).get("sha256"),
        "built_at": kb.manifest.get("built_at"),
        "embed_model": kb.embed_model,
    }


def _validation_lines(critic) -> list[str]:
    v = critic.manifest["validation"]
    lo, hi = v["auc_ci95"]
    lines = [
        f"{critic.preset}: pair-disjoint AUC {v['auc']:.3f} [95% CI {lo:.3f}-{hi:.3f}] over {v['rows']} rows; "
        f"per fold {', '.join(f'{a:.3f}' for a in v['fold_auc'])} (mean {v['fold_auc_mean']:.3f} ± "
        f"{v['fold_auc_sd']:.3f}); trained in {critic.manifest['train_seconds']:.0f} s",
        f"  keeping the labels' share ({v['keep_share']:.1%}): t = {v['same_share_threshold']:.2f}, precision "
        f"{v['same_share_precision']:.3f}, recall {v['same_share_recall']:.3f}; Brier {v['brier']:.3f}",
        "  per relation: "
        + ", ".join(
            f"{r['relation']} {r['auc']:.2f} (n={r['rows']})" if not math.isnan(r["auc"]) else f"{r['relation']} -"
            for r in v["per_relation"]
        ),
    ]
    return lines


def cmd_train(args: argparse.Namespace) -> int:
    from mind_core.scores.critic import (
        PRESETS,
        CriticData,
        CriticError,
        human_labels_path,
        read_human_labels,
        train_critic,
        verdict_labels,
    )

    kb = open_kb(args)
    info = _training_kb_info(kb)
    try:
        if args.labels == "human":
            path = human_labels_path(kb.path, args.labels_file)
            labels, label_info = read_human_labels(path, kb.intentions["intention_id"].astype(str).to_numpy())
            info["human_labels"] = label_info
        else:
            if args.labels_file:
                raise UserError("--labels-file goes with --labels human")
            labels = verdict_labels(kb.intentions["verdict"])
        data = CriticData.from_kb(kb)
        candidates = list(PRESETS) if args.model == "auto" else [args.model]
        trained = []
        for name in candidates:
            print(f"training {name} ({PRESETS[name].summary}) ...", file=sys.stderr)
            critic = train_critic(
                data,
                labels,
                model=name,
                folds=args.folds,
                C=args.C,
                seed=args.seed,
                labels_source=args.labels,
                training_kb=info,
                log=lambda msg: print("  " + msg, file=sys.stderr),
            )
            trained.append(critic)
            for line in _validation_lines(critic):
                print(line, file=sys.stderr)
    except CriticError as err:
        raise UserError(str(err)) from None
    best = max(trained, key=lambda c: c.validation_auc)  # first wins a tie: presets are listed simplest first
    if len(trained) > 1:
        print("\nmodel | pair-disjoint AUC | folds mean ± sd | train s", file=sys.stderr)
        for c in sorted(trained, key=lambda c: -c.validation_auc):
            v = c.manifest["validation"]
            print(
                f"{c.preset} | {v['auc']:.3f} | {v['fold_auc_mean']:.3f} ± {v['fold_auc_sd']:.3f} | "
                f"{c.manifest['train_seconds']:.0f}",
                file=sys.stderr,
            )
        best.manifest["compared"] = [
            {"model": c.preset, "auc": c.validation_auc, "fold_auc": c.manifest["validation"]["fold_auc"]}
            for c in trained
        ]
    out = best.save(Path(args.out))
    print(f"saved {best.preset} critic to {out} ({best.describe()})", file=sys.stderr)
    if args.json:
        print(json.dumps(best.manifest, indent=2))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from mind_core.kb.critic import score_kb
    from mind_core.kb.store import KBError
    from mind_core.scores.critic import CriticError, load_critic
    from mind_core.scores.metrics import roc_auc

    kb = open_kb(args)
    folder = args.model or command_settings(args).critic_dir
    if folder is None:
        raise UserError("no critic configured (MIND_CRITIC=none); give one with --model MODEL_DIR")
    try:
        critic = load_critic(folder)
        done = kb.manifest.get("scores", {}).get("critic") or {}
        if args.if_missing and done.get("weights_sha256") == critic.fingerprint:
            print(f"{kb.path} already has the scores of {folder}", file=sys.stderr)
            return 0
        info = score_kb(kb, critic)
    except (CriticError, KBError) as err:
        raise UserError(str(err)) from None
    auc = roc_auc(kb.scores["critic"], kb.intentions["verdict"])
    print(
        f"scored {info['rows']} rows of {kb.path} with {critic.describe()}: {info['out_of_fold_rows']} out-of-fold "
        f"(their pair was trained on), {info['plain_rows']} by the full model; AUC against this KB's verdicts "
        + (f"{auc:.3f}" if auc == auc else "- (no yes and no verdicts)"),
        file=sys.stderr,
    )
    return 0
