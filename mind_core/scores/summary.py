"""One report of how every score of a KB agrees with its recorded verdicts (the ``scores`` command,
docs/measurements.md)."""

from __future__ import annotations

import json
import math
from typing import Any

from mind_core.schema import UNJUDGED, YES, verdict_codes
from mind_core.scores import SCORE_DEFS, available_scores
from mind_core.scores.histograms import ScoreHistogram, best_f1_threshold
from mind_core.scores.metrics import auc_bootstrap_ci, roc_auc

#: bootstrap resamples of each score's AUC (fewer on big KBs: a resample costs O(rows))
N_BOOT, N_BOOT_BIG, BIG_ROWS = 1000, 200, 200_000


def scores_summary(kb) -> dict[str, Any]:
    """Numbers for docs/measurements.md / the ``scores`` command: per score its ROC AUC against the verdicts with a
    95 % bootstrap interval (rows resampled, seed 0) and the best-F1 threshold (with its metrics); per relation the
    binary rule's kept rate (strictest first) and each score's AUC within the relation; for the critic, which model
    scored the KB and how many rows got out-of-fold scores. Pure reading of the KB."""
    sc = kb.scores
    df = kb.intentions
    verdicts = df["verdict"]
    keys = available_scores(sc)
    out: dict[str, Any] = {"scores": {}, "relations": []}
    for key in keys:
        hist = ScoreHistogram.build(sc[key], verdicts, fixed_range=SCORE_DEFS[key].fixed_range)
        m = hist.metrics(best_f1_threshold(hist))
        n_boot = N_BOOT if len(df) <= BIG_ROWS else N_BOOT_BIG
        ci = auc_bootstrap_ci(sc[key], verdicts, n_boot=n_boot)
        out["scores"][key] = {"auc": roc_auc(sc[key], verdicts), "auc_ci95": list(ci), **m.as_dict()}
    if "critic" in keys:
        out["critic"] = kb.manifest.get("scores", {}).get("critic")
    codes = verdict_codes(verdicts)
    relations = df["relation"].astype(object).to_numpy()
    for rel in sorted(set(relations)):
        sel = relations == rel
        kept, judged = int((codes[sel] == YES).sum()), int((codes[sel] != UNJUDGED).sum())
        out["relations"].append(
            {
                "relation": rel,
                "kept": kept,
                "judged": judged,
                "kept_rate": kept / judged if judged else math.nan,
                "auc": {k: roc_auc(sc[k].to_numpy()[sel], verdicts[sel]) for k in keys},
            }
        )
    out["relations"].sort(key=lambda r: (r["kept_rate"], r["relation"]))
    return json.loads(json.dumps(out, default=float))
