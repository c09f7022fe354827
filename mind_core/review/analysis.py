"""What the human ratings say: agreement between annotators, the filter and the scores measured against people.

Everything is computed from the answers (:meth:`ReviewStore.answers`) and the KB, never stored:

* **agreement** per question: Krippendorff's alpha (the ``krippendorff`` package; nominal for plausibility,
  ordinal for typicality) over the intentions rated by at least two annotators, for any number of annotators, and
  Cohen's kappa (scikit-learn; quadratic weights for typicality) when there are exactly two; each with the number
  of items and a percentile bootstrap interval over items (seeded).
* **the human label** of an intention: the majority of its plausibility answers (a tie gives none); its typicality
  is the mean of the given values.
* **human vs filter**: precision of the filter's "kept" (the share of kept intentions people find plausible),
  recall (the share of plausible ones the filter kept), the share of filtered ones people find implausible, Cohen's
  kappa of verdict vs label, overall (with bootstrap intervals) and per relation; and the mean human typicality of
  the kept and of the filtered intentions.
* **human vs scores**: ROC AUC of the critic's P(keep), the filter's P(yes) and the embedding scores against the
  human label (:func:`mind_core.scores.metrics.roc_auc`, with its bootstrap interval).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from mind_core.scores.metrics import auc_bootstrap_ci, roc_auc

N_BOOT = 1000
#: (answers column, Krippendorff level, Cohen's kappa weights)
QUESTIONS: dict[str, tuple[str, str | None]] = {
    "plausibility": ("nominal", None),
    "typicality": ("ordinal", "quadratic"),
}
#: scores compared with the human label, when the KB has them (columns of ``load_scores``)
COMPARED_SCORES: tuple[str, ...] = ("critic", "p_yes", "p_yes_rescored", "grounding", "typicality")


def _nan_to_none(obj):
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _ci(stat: Callable[[np.ndarray], float], n: int, *, n_boot: int, seed: int, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of ``stat(item positions)`` over ``n`` items resampled with replacement."""
    if n < 2:
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return [math.nan, math.nan]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def ratings_matrix(answers: pd.DataFrame, question: str) -> pd.DataFrame:
    """Annotators (rows) x intentions (columns) of ``question``'s values, NaN where not rated."""
    df = answers[["annotator", "intention_id", question]].copy()
    df[question] = pd.to_numeric(df[question], errors="coerce").astype(float)
    df = df.dropna(subset=[question])
    return df.pivot(index="annotator", columns="intention_id", values=question).sort_index()


def _alpha(matrix: np.ndarray, level: str) -> float:
    if matrix.shape[1] == 0 or len(np.unique(matrix[~np.isnan(matrix)])) < 2:
        return math.nan  # alpha is undefined when everyone gave one and the same value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))
        except (ValueError, ZeroDivisionError):
            return math.nan


def _kappa(a: np.ndarray, b: np.ndarray, weights: str | None) -> float:
    if not len(a) or len(np.unique(np.concatenate([a, b]))) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(a, b, weights=weights))


def agreement(answers: pd.DataFrame, question: str, *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Agreement between annotators on ``question`` (``plausibility`` or ``typicality``)."""
    level, weights = QUESTIONS[question]
    m = ratings_matrix(answers, question)
    k = len(m)  # annotators who answered this question
    m = m.loc[:, m.notna().sum(axis=0) >= 2]  # items at least two annotators rated
    values = m.to_numpy(dtype=float)
    out: dict = {
        "question": question,
        "annotators": k,
        "items": int(m.shape[1]),
        "level": level,
        "krippendorff_alpha": _alpha(values, level) if k >= 2 else math.nan,
        "krippendorff_alpha_ci95": [math.nan, math.nan],
    }
    if k >= 2 and m.shape[1] >= 2:
        out["krippendorff_alpha_ci95"] = _ci(
            lambda idx: _alpha(values[:, idx], level), m.shape[1], n_boot=n_boot, seed=seed
        )
    if k == 2:
        both = m.dropna(axis=1)
        a, b = both.to_numpy(dtype=float)
        out.update(
            cohen_kappa=_kappa(a, b, weights),
            cohen_kappa_weights=weights or "none",
            cohen_kappa_items=int(both.shape[1]),
            cohen_kappa_ci95=_ci(lambda idx: _kappa(a[idx], b[idx], weights), len(a), n_boot=n_boot, seed=seed),
            percent_agreement=float((a == b).mean()) if len(a) else math.nan,
        )
    return out


def item_labels(answers: pd.DataFrame) -> pd.DataFrame:
    """Per rated intention: ``ratings``, ``plausible`` (votes), ``plausibility`` (mean), ``label`` (the majority:
    ``yes`` / ``no``, None on a tie), ``typicality`` (mean of the given values). Indexed by intention id."""
    if answers.empty:
        return pd.DataFrame(columns=["ratings", "plausible", "plausibility", "label", "typicality"])
    df = answers.assign(
        plausibility=answers["plausibility"].astype(float),
        typicality=pd.to_numeric(answers["typicality"], errors="coerce").astype(float),
    )
    g = df.groupby("intention_id", sort=True)
    out = pd.DataFrame({"ratings": g.size(), "plausible": g["plausibility"].sum().astype(int)})
    out["plausibility"] = out["plausible"] / out["ratings"]
    p = out["plausibility"].to_numpy()
    out["label"] = pd.Series(np.where(p > 0.5, "yes", "no"), index=out.index, dtype=object).where(p != 0.5, None)
    out["typicality"] = g["typicality"].mean()
    return out


def human_labels_frame(answers: pd.DataFrame) -> pd.DataFrame:
    """``intention_id, label`` (yes / no) for every rated intention with a majority, the table
    ``critic train --labels human`` reads (:data:`mind_core.schema.HUMAN_LABELS_COLUMNS`)."""
    labels = item_labels(answers)
    labels = labels[labels["label"].notna()]
    return pd.DataFrame({"intention_id": labels.index.astype(str), "label": labels["label"].astype(str).to_numpy()})


def _filter_stats(kept: np.ndarray, plausible: np.ndarray) -> dict:
    n_kept, n_plaus = int(kept.sum()), int(plausible.sum())
    filtered = ~kept
    return {
        "items": len(kept),
        "kept": n_kept,
        "human_plausible": n_plaus,
        "precision_kept": float((kept & plausible).sum() / n_kept) if n_kept else math.nan,
        "recall": float((kept & plausible).sum() / n_plaus) if n_plaus else math.nan,
        "filtered_implausible": float((filtered & ~plausible).sum() / filtered.sum()) if filtered.sum() else math.nan,
    }


def human_vs_filter(intentions: pd.DataFrame, labels: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """The filter's verdicts against the human labels, on intentions with both (see the module docstring)."""
    joined = _join(intentions, labels)
    joined = joined[joined["verdict"].isin(["yes", "no"]) & joined["label"].notna()]
    kept = (joined["verdict"] == "yes").to_numpy()
    plausible = (joined["label"] == "yes").to_numpy()
    out = _filter_stats(kept, plausible)
    n = len(joined)
    out["precision_kept_ci95"] = _ci(
        lambda i: _filter_stats(kept[i], plausible[i])["precision_kept"], n, n_boot=n_boot, seed=seed
    )
    out["recall_ci95"] = _ci(lambda i: _filter_stats(kept[i], plausible[i])["recall"], n, n_boot=n_boot, seed=seed)
    out["cohen_kappa"] = _kappa(kept.astype(float), plausible.astype(float), None)
    typ = labels["typicality"].reindex(joined["intention_id"]).to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty side gives NaN
        out["typicality_kept_mean"] = float(np.nanmean(typ[kept])) if kept.any() else math.nan
        out["typicality_filtered_mean"] = float(np.nanmean(typ[~kept])) if (~kept).any() else math.nan
    per = []
    for rel, part in joined.groupby("relation", sort=True, observed=True):
        stats = _filter_stats((part["verdict"] == "yes").to_numpy(), (part["label"] == "yes").to_numpy())
        per.append({"relation": str(rel), **stats})
    out["per_relation"] = per
    return out


def _join(intentions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    base = pd.DataFrame(
        {
            "intention_id": intentions["intention_id"].astype(str).to_numpy(),
            "relation": intentions["relation"].astype(object).to_numpy(),
            "verdict": intentions["verdict"].astype(object).to_numpy(),
            "row": np.arange(len(intentions)),
        }
    )
    return base.merge(labels[["label"]], left_on="intention_id", right_index=True, how="inner")


def human_vs_scores(
    intentions: pd.DataFrame, scores: pd.DataFrame | None, labels: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0
) -> dict:
    """ROC AUC (with a bootstrap interval) of each score the KB has against the human label."""
    out: dict = {}
    if scores is None:
        return out
    joined = _join(intentions, labels)
    joined = joined[joined["label"].notna()]
    for name in COMPARED_SCORES:
        if name not in scores.columns:
            continue
        s = scores[name].to_numpy(dtype=float)[joined["row"].to_numpy()]
        valid = ~np.isnan(s)
        if not valid.any():
            continue
        y = joined["label"].to_numpy()[valid]
        out[name] = {
            "items": int(valid.sum()),
            "auc": roc_auc(s[valid], y),
            "auc_ci95": list(auc_bootstrap_ci(s[valid], y, n_boot=n_boot, seed=seed)),
        }
    return out


def review_report(
    answers: pd.DataFrame,
    intentions: pd.DataFrame,
    scores: pd.DataFrame | None = None,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict:
    """Every number of the review (JSON-ready: NaN becomes None). ``answers`` of one KB, ``intentions`` that KB's
    rows, ``scores`` aligned with them (``load_scores``) or None."""
    labels = item_labels(answers)
    known = set(intentions["intention_id"].astype(str))
    report = {
        "answers": len(answers),
        "annotators": {str(k): int(v) for k, v in answers["annotator"].value_counts().sort_index().items()},
        "items_rated": len(labels),
        "items_not_in_kb": int((~labels.index.isin(list(known))).sum()),
        "items_with_label": int(labels["label"].notna().sum()),
        "items_tied": int(labels["label"].isna().sum()),
        "plausible_share": float((labels["label"] == "yes").sum() / labels["label"].notna().sum())
        if labels["label"].notna().any()
        else math.nan,
        "typicality_mean": float(pd.to_numeric(answers["typicality"], errors="coerce").astype(float).mean())
        if len(answers)
        else math.nan,
        "agreement": {q: agreement(answers, q, n_boot=n_boot, seed=seed) for q in QUESTIONS},
        "filter": human_vs_filter(intentions, labels, n_boot=n_boot, seed=seed),
        "scores": human_vs_scores(intentions, scores, labels, n_boot=n_boot, seed=seed),
    }
    return _nan_to_none(report)
