"""Agreement of a threshold rule "score >= t" with the recorded verdicts, directly on the rows (the rules are in
:mod:`mind_core.scores`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from mind_core.schema import NO, UNJUDGED, YES, verdict_codes


def _as_scores(scores: Iterable[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Scores as a float array; None and non-numbers become NaN."""
    values = scores if isinstance(scores, (np.ndarray, pd.Series)) else list(scores)
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)


@dataclass(frozen=True)
class ThresholdMetrics:
    """Counts and agreement of "score >= threshold" with the recorded verdicts (yes = positive)."""

    threshold: float
    rows: int  # all rows, NaN scores included
    nan: int  # rows without a score (left out of everything below)
    scored: int
    kept: int  # scored rows with score >= threshold (unjudged ones included)
    tp: int  # kept and verdict yes
    fp: int  # kept and verdict no
    fn: int  # not kept and verdict yes
    tn: int  # not kept and verdict no

    @property
    def kept_rate(self) -> float:
        return self.kept / self.scored if self.scored else math.nan

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def f1(self) -> float:
        den = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / den if den else math.nan

    def as_dict(self) -> dict[str, float]:
        return {
            **asdict(self),
            "kept_rate": self.kept_rate,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def threshold_metrics(scores, verdicts, threshold: float) -> ThresholdMetrics:
    """:class:`ThresholdMetrics` of keeping rows with ``score >= threshold`` (directly on the rows)."""
    s = _as_scores(scores)
    v = verdict_codes(verdicts)
    if len(s) != len(v):
        raise ValueError(f"{len(s)} scores but {len(v)} verdicts")
    valid = ~np.isnan(s)
    kept = valid & (s >= threshold)
    dropped = valid & ~kept
    return ThresholdMetrics(
        threshold=float(threshold),
        rows=len(s),
        nan=int((~valid).sum()),
        scored=int(valid.sum()),
        kept=int(kept.sum()),
        tp=int((kept & (v == YES)).sum()),
        fp=int((kept & (v == NO)).sum()),
        fn=int((dropped & (v == YES)).sum()),
        tn=int((dropped & (v == NO)).sum()),
    )


def kept_counts(scores, groups, threshold: float) -> pd.DataFrame:
    """Per group (e.g. relation): ``rows, nan, scored, kept, kept_rate`` of "score >= threshold", sorted by group.
    A group whose rows all have NaN scores has ``kept_rate`` NaN."""
    s = _as_scores(scores)
    g = pd.Series(np.asarray(groups, dtype=object)).fillna("(none)").to_numpy()
    df = pd.DataFrame({"group": g, "valid": ~np.isnan(s), "kept": ~np.isnan(s) & (s >= threshold)})
    out = df.groupby("group", sort=True).agg(rows=("valid", "size"), scored=("valid", "sum"), kept=("kept", "sum"))
    out.insert(1, "nan", out["rows"] - out["scored"])
    out["kept_rate"] = out["kept"] / out["scored"].where(out["scored"] > 0)
    return out.reset_index()


def pr_curve(scores, verdicts, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and kept rate of "score >= t" for each ``t`` (default: every distinct score, i.e.
    every point where the kept set changes). Columns: threshold, kept, kept_rate, precision, recall, f1."""
    s = _as_scores(scores)
    v = verdict_codes(verdicts)
    valid = ~np.isnan(s)
    s, v = s[valid], v[valid]
    ts = np.unique(s) if thresholds is None else np.asarray(thresholds, dtype=float)
    order = np.sort(s)
    ys, ns = np.sort(s[v == YES]), np.sort(s[v == NO])
    kept = len(order) - np.searchsorted(order, ts, side="left")
    tp = len(ys) - np.searchsorted(ys, ts, side="left")
    fp = len(ns) - np.searchsorted(ns, ts, side="left")
    fn = len(ys) - tp
    return _curve_frame(ts, kept, len(order), tp, fp, fn)


def _curve_frame(ts, kept, scored, tp, fp, fn) -> pd.DataFrame:
    with np.errstate(invalid="ignore", divide="ignore"):
        tp, fp, fn, kept = (np.asarray(x, dtype=float) for x in (tp, fp, fn, kept))
        return pd.DataFrame(
            {
                "threshold": np.asarray(ts, dtype=float),
                "kept": kept.astype(np.int64),
                "kept_rate": kept / scored if scored else np.full(len(kept), np.nan),
                "precision": np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), np.nan),
                "recall": np.where(tp + fn > 0, tp / np.where(tp + fn > 0, tp + fn, 1), np.nan),
                "f1": np.where(
                    2 * tp + fp + fn > 0, 2 * tp / np.where(2 * tp + fp + fn > 0, 2 * tp + fp + fn, 1), np.nan
                ),
            }
        )


def roc_auc(scores, verdicts) -> float:
    """Area under the ROC curve of the score for verdict yes vs no (Mann-Whitney U with average ranks for ties;
    0.5 = no better than chance). NaN scores and unjudged rows are left out; NaN without both classes."""
    s = _as_scores(scores)
    v = verdict_codes(verdicts)
    keep = ~np.isnan(s) & (v != UNJUDGED)
    s, v = s[keep], v[keep]
    n_pos, n_neg = int((v == YES).sum()), int((v == NO).sum())
    if not n_pos or not n_neg:
        return math.nan
    ranks = pd.Series(s).rank(method="average").to_numpy()
    return float((ranks[v == YES].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def flips(scores, threshold_a: float, threshold_b: float) -> pd.DataFrame:
    """Rows kept by exactly one of the two thresholds: ``row`` (position), ``score``, ``kept_by`` ("A" or "B"),
    ordered by score. NaN scores never flip."""
    s = _as_scores(scores)
    lo, hi = sorted((threshold_a, threshold_b))
    rows = np.flatnonzero(~np.isnan(s) & (s >= lo) & (s < hi))
    rows = rows[np.argsort(s[rows], kind="stable")]
    kept_by = "A" if threshold_a < threshold_b else "B"
    return pd.DataFrame({"row": rows, "score": s[rows], "kept_by": np.full(len(rows), kept_by, dtype=object)})


def auc_bootstrap_ci(
    scores, verdicts, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`roc_auc` (rows resampled with replacement; seeded). Each resample is
    a weighting of the rows, so the scores are sorted once and a resample costs O(rows). NaN without both
    classes."""
    s = _as_scores(scores)
    v = verdict_codes(verdicts)
    keep = ~np.isnan(s) & (v != UNJUDGED)
    s, pos = s[keep], v[keep] == YES
    n = len(s)
    if not n or pos.all() or not pos.any():
        return (math.nan, math.nan)
    _, group = np.unique(s, return_inverse=True)  # tied scores share a group
    ng = int(group.max()) + 1
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    for i in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        wp = np.bincount(group, weights=w * pos, minlength=ng)
        wn = np.bincount(group, weights=w * ~pos, minlength=ng)
        p_tot, n_tot = wp.sum(), wn.sum()
        if not p_tot or not n_tot:
            aucs[i] = np.nan
            continue
        below = np.cumsum(wn) - wn
        aucs[i] = float((wp * (below + 0.5 * wn)).sum() / (p_tot * n_tot))
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(aucs, [alpha, 1 - alpha])
    return float(lo), float(hi)


def reliability_table(scores, verdicts, *, bins: int = 10) -> pd.DataFrame:
    """Calibration of a probability score: per bin of width 1/``bins`` over [0, 1] (the last one closed), the
    judged rows in it, their mean score and their share of verdict "yes" (NaN for an empty bin). A calibrated
    score has ``yes_rate`` close to ``mean_score`` in every bin."""
    s = _as_scores(scores)
    v = verdict_codes(verdicts)
    keep = ~np.isnan(s) & (v != UNJUDGED)
    s, yes = s[keep], (v[keep] == YES).astype(float)
    b = np.clip((s * bins).astype(np.int64), 0, bins - 1)
    n = np.bincount(b, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(b, weights=s, minlength=bins) / n
        rate = np.bincount(b, weights=yes, minlength=bins) / n
    edges = np.round(np.arange(bins + 1) / bins, 6)
    return pd.DataFrame(
        {"bin_left": edges[:-1], "bin_right": edges[1:], "rows": n, "mean_score": mean, "yes_rate": rate}
    )
