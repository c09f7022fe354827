"""Score histograms: counts per group x bin x verdict, built once, so every threshold query (a slider move) costs
O(groups x bins) at any KB size; thresholds snap to bin edges, where the counts are exact."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mind_core.schema import NO, UNJUDGED, YES, verdict_codes
from mind_core.scores import BIN_WIDTH, SCORE_DEFS
from mind_core.scores.metrics import ThresholdMetrics, _as_scores, _curve_frame, roc_auc


def bin_edges(scores, *, width: float = BIN_WIDTH, fixed_range: tuple[float, float] | None = None) -> np.ndarray:
    """Edges ``lo, lo + width, ..., hi`` on multiples of ``width`` (rounded to 6 decimals, so they equal the
    slider's values), with ``lo <= min(score)`` and ``hi > max(score)`` so that ``t = hi`` keeps nothing.
    ``fixed_range`` (e.g. (0, 1) for probabilities) widens the range to at least that."""
    s = _as_scores(scores)
    s = s[~np.isnan(s)]
    lo_v, hi_v = (float(s.min()), float(s.max())) if len(s) else (0.0, 1.0)
    if fixed_range is not None:
        lo_v, hi_v = min(lo_v, fixed_range[0]), max(hi_v, fixed_range[1])
    k0 = math.floor(round(lo_v / width, 6))
    k1 = math.floor(round(hi_v / width, 6)) + 1
    return np.round(np.arange(k0, k1 + 1) * width, 6)


@dataclass
class GroupCounts:
    """Counts of one grouping (e.g. relation): ``counts[g, bin, verdict]`` and ``nan[g, verdict]``."""

    names: list[str]
    counts: np.ndarray
    nan: np.ndarray
    tail: np.ndarray = field(init=False, repr=False)  # tail[g, k, v] = rows of group g in bins >= k with verdict v

    def __post_init__(self) -> None:
        g, b, v = self.counts.shape
        self.tail = np.zeros((g, b + 1, v), dtype=np.int64)
        self.tail[:, :b] = np.cumsum(self.counts[:, ::-1], axis=1)[:, ::-1]


@dataclass
class ScoreHistogram:
    """Per-bin counts of one score, by verdict, overall and per grouping. Built once (O(rows)); every query is
    O(groups x bins). Thresholds snap to bin edges (:meth:`snap`), where the counts are exact."""

    edges: np.ndarray
    groups: dict[str, GroupCounts]

    @classmethod
    def build(
        cls,
        scores,
        verdicts,
        groups: Mapping[str, Sequence[object] | pd.Series] | None = None,
        *,
        width: float = BIN_WIDTH,
        fixed_range: tuple[float, float] | None = None,
    ) -> ScoreHistogram:
        s = _as_scores(scores)
        v = verdict_codes(verdicts).astype(np.int64)
        edges = bin_edges(s, width=width, fixed_range=fixed_range)
        nb = len(edges) - 1
        valid = ~np.isnan(s)
        b = np.clip(np.searchsorted(edges, np.where(valid, s, edges[0]), side="right") - 1, 0, nb - 1)
        out: dict[str, GroupCounts] = {}
        for name, values in {"all": None, **(groups or {})}.items():
            if values is None:
                codes, names = np.zeros(len(s), dtype=np.int64), ["all"]
            else:
                codes, names = _group_codes(values)
            ng = len(names)
            counts = np.bincount((codes[valid] * nb + b[valid]) * 3 + v[valid], minlength=ng * nb * 3)
            nan = np.bincount(codes[~valid] * 3 + v[~valid], minlength=ng * 3)
            out[name] = GroupCounts(names, counts.reshape(ng, nb, 3), nan.reshape(ng, 3))
        return cls(edges, out)

    @property
    def width(self) -> float:
        return float(self.edges[1] - self.edges[0])

    def snap(self, threshold: float) -> float:
        """The bin edge nearest to ``threshold`` (clamped to the range)."""
        return float(self.edges[self._k(threshold)])

    def _k(self, threshold: float) -> int:
        k = round((float(threshold) - self.edges[0]) / self.width)
        return min(max(k, 0), len(self.edges) - 1)

    def metrics(self, threshold: float) -> ThresholdMetrics:
        """Same as :func:`threshold_metrics` at the snapped threshold."""
        g = self.groups["all"]
        k = self._k(threshold)
        kept, total = g.tail[0, k], g.tail[0, 0]
        nan = int(g.nan[0].sum())
        return ThresholdMetrics(
            threshold=float(self.edges[k]),
            rows=int(total.sum()) + nan,
            nan=nan,
            scored=int(total.sum()),
            kept=int(kept.sum()),
            tp=int(kept[YES]),
            fp=int(kept[NO]),
            fn=int(total[YES] - kept[YES]),
            tn=int(total[NO] - kept[NO]),
        )

    def kept_by(self, grouping: str, threshold: float) -> pd.DataFrame:
        """Per group: ``group, rows, nan, scored, kept, kept_rate, yes`` (``yes`` = rows the paper's binary rule
        keeps, scored or not), plus ``tp, fp`` of the threshold rule."""
        g = self.groups[grouping]
        k = self._k(threshold)
        scored = g.tail[:, 0].sum(axis=1)
        kept = g.tail[:, k]
        nan = g.nan.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(scored > 0, kept.sum(axis=1) / np.maximum(scored, 1), np.nan)
        out = pd.DataFrame(
            {
                "group": g.names,
                "rows": scored + nan,
                "nan": nan,
                "scored": scored,
                "kept": kept.sum(axis=1),
                "kept_rate": rate,
                "yes": g.tail[:, 0, YES] + g.nan[:, YES],
                "tp": kept[:, YES],
                "fp": kept[:, NO],
            }
        )
        return out[out["rows"] > 0].reset_index(drop=True)

    def curve(self) -> pd.DataFrame:
        """:func:`pr_curve` at every bin edge."""
        g = self.groups["all"]
        tail = g.tail[0]
        tp, fp = tail[:, YES], tail[:, NO]
        fn = tail[0, YES] - tp
        return _curve_frame(self.edges, tail.sum(axis=1), int(tail[0].sum()), tp, fp, fn)

    def bins(self) -> pd.DataFrame:
        """Overall histogram: ``bin_left, bin_right, yes, no, unjudged`` per bin."""
        c = self.groups["all"].counts[0]
        return pd.DataFrame(
            {
                "bin_left": self.edges[:-1],
                "bin_right": self.edges[1:],
                "yes": c[:, YES],
                "no": c[:, NO],
                "unjudged": c[:, UNJUDGED],
            }
        )


def _group_codes(values) -> tuple[np.ndarray, list[str]]:
    s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = s.cat.codes.to_numpy().astype(np.int64)
        names = [str(c) for c in s.cat.categories]
    else:
        codes, uniq = pd.factorize(s, sort=True)
        codes, names = codes.astype(np.int64), [str(u) for u in uniq]
    if (codes < 0).any():
        names = names + ["(none)"]
        codes = np.where(codes < 0, len(names) - 1, codes)
    return codes, names


# --- everything a threshold page needs for one score --------------------------------------------------------------


@dataclass
class ScoreView:
    """One score of one KB, prepared once (O(rows log rows)); then each threshold pair costs O(groups x bins)
    plus the flipped rows themselves (binary search on the sorted scores)."""

    key: str
    hist: ScoreHistogram
    order: np.ndarray  # positions of the rows with a value, by ascending score
    sorted_scores: np.ndarray  # their scores
    auc: float
    nan: int
    default_a: float  # keeps about as many rows as the binary rule
    default_b: float  # a stricter filter: keeps about half as many rows as the binary rule

    @classmethod
    def build(
        cls,
        key: str,
        scores,
        verdicts,
        groups: Mapping[str, Sequence[object] | pd.Series] | None = None,
        *,
        width: float = BIN_WIDTH,
    ) -> ScoreView:
        s = _as_scores(scores)
        fixed = SCORE_DEFS[key].fixed_range if key in SCORE_DEFS else None
        hist = ScoreHistogram.build(s, verdicts, groups, width=width, fixed_range=fixed)
        valid = np.flatnonzero(~np.isnan(s))
        order = valid[np.argsort(s[valid], kind="stable")]
        codes = verdict_codes(verdicts)
        judged = codes != UNJUDGED
        yes_rate = float((codes == YES).sum() / judged.sum()) if judged.any() else 0.5
        return cls(
            key,
            hist,
            order,
            s[order],
            roc_auc(s, verdicts),
            int(len(s) - len(valid)),
            threshold_for_kept_rate(hist, yes_rate),
            threshold_for_kept_rate(hist, yes_rate / 2),
        )

    def flip_rows(self, threshold_a: float, threshold_b: float) -> tuple[np.ndarray, str]:
        """(row positions kept by exactly one threshold, by ascending score; "A" or "B" = which one keeps them)."""
        lo, hi = sorted((threshold_a, threshold_b))
        i = int(np.searchsorted(self.sorted_scores, lo, side="left"))
        j = int(np.searchsorted(self.sorted_scores, hi, side="left"))
        return self.order[i:j], ("A" if threshold_a < threshold_b else "B")


# --- small helpers for pages / reports ---------------------------------------------------------------------------


def threshold_for_kept_rate(hist: ScoreHistogram, rate: float) -> float:
    """The bin edge whose kept rate is closest to ``rate`` (e.g. the binary rule's kept rate)."""
    curve = hist.curve()
    return float(curve["threshold"].iloc[int(np.nanargmin(np.abs(curve["kept_rate"].to_numpy() - rate)))])


def best_f1_threshold(hist: ScoreHistogram) -> float:
    curve = hist.curve()
    f1 = curve["f1"].to_numpy()
    if np.isnan(f1).all():
        return float(hist.edges[0])
    return float(curve["threshold"].iloc[int(np.nanargmax(f1))])
