"""Tables of the Filter thresholds page, built from a :class:`~mind_core.scores.histograms.ScoreHistogram`'s
per-group counts (figures: :mod:`dashboard.presenters.threshold_charts`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.presenters.text import clean_title
from mind_core.query.products import titles_of
from mind_core.schema import NO, YES, intention_body, verdict_codes, verdict_label
from mind_core.scores.metrics import ThresholdMetrics


def paper_rule_counts(verdicts: pd.Series) -> tuple[int, int]:
    """(rows the paper's binary rule keeps, judged rows)."""
    codes = verdict_codes(verdicts)
    return int((codes == YES).sum()), int(((codes == YES) | (codes == NO)).sum())


def rule_summary(
    key: str, ta: float, ma: ThresholdMetrics, tb: float, mb: ThresholdMetrics, verdicts: pd.Series
) -> pd.DataFrame:
    """Thresholds A and B next to the paper's yes/no rule: kept, kept rate, precision, recall, F1."""
    yes, judged = paper_rule_counts(verdicts)

    def rule(name: str, m: ThresholdMetrics) -> dict:
        return {
            "rule": name,
            "kept": m.kept,
            "kept rate": m.kept_rate,
            "precision": m.precision,
            "recall": m.recall,
            "F1": m.f1,
        }

    return pd.DataFrame(
        [
            rule(f"A: {key} ≥ {ta:.2f}", ma),
            rule(f"B: {key} ≥ {tb:.2f}", mb),
            {
                "rule": "paper: filter answered yes",
                "kept": yes,
                "kept rate": yes / judged if judged else np.nan,
                "precision": np.nan,
                "recall": np.nan,
                "F1": np.nan,
            },
        ]
    )


def relation_table(by_rel_a: pd.DataFrame, by_rel_b: pd.DataFrame) -> pd.DataFrame:
    """Per relation: rows, rows without a score, kept by the yes/no rule, kept / kept rate / precision at A and B."""
    return pd.DataFrame(
        {
            "relation": by_rel_a["group"],
            "intentions": by_rel_a["rows"],
            "no score": by_rel_a["nan"],
            "kept by yes/no": by_rel_a["yes"],
            "kept at A": by_rel_a["kept"],
            "kept at B": by_rel_b["kept"],
            "kept rate A": by_rel_a["kept_rate"],
            "kept rate B": by_rel_b["kept_rate"],
            "precision A": by_rel_a["tp"] / by_rel_a["kept"].where(by_rel_a["kept"] > 0),
            "precision B": by_rel_b["tp"] / by_rel_b["kept"].where(by_rel_b["kept"] > 0),
        }
    ).sort_values("intentions", ascending=False, kind="stable")


def flips_table(kb, rows: np.ndarray, scores: np.ndarray, kept_by: str) -> pd.DataFrame:
    """The intentions kept by only one threshold: score, which threshold keeps them, verdict, reason, titles."""
    part = kb.intentions.iloc[rows]
    return pd.DataFrame(
        {
            "score": np.round(scores[rows], 4),
            "kept only at": kept_by,
            "relation": part["relation"].astype(object).to_numpy(),
            "verdict": [verdict_label(v) for v in part["verdict"].astype(object)],
            "intention": [intention_body(t) for t in part["intention"].astype(object)],
            "reason": part["reason"].astype(object).to_numpy(),
            "title A": [clean_title(t) for t in titles_of(kb, part["asin_a"])],
            "title B": [clean_title(t) for t in titles_of(kb, part["asin_b"])],
        }
    )


def scores_signature(kb_dir) -> tuple:
    """Changes when ``<kb>/scores.parquet`` is rewritten (``critic score``): a cache key for the page."""
    from pathlib import Path

    from mind_core.kb.store import SCORES_FILE

    p = Path(kb_dir) / SCORES_FILE
    return (p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else ()


def critic_note(info: dict | None) -> str:
    """Which critic scored this KB and how (out-of-fold rows), from the manifest."""
    if not info:
        return "The KB's manifest does not say which critic wrote these scores."
    oof, plain = info.get("out_of_fold_rows", 0), info.get("plain_rows", 0)
    return (
        f"Critic `{info.get('model')}` from `{info.get('model_dir')}` (its own pair-disjoint validation AUC "
        f"{info.get('validation_auc', float('nan')):.3f}): {oof:,} rows scored out-of-fold because their pair was in "
        f"its training set, {plain:,} by the model trained on all its rows."
    )
