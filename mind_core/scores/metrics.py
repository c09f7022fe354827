"""Continuous filter scores for every KB row, and the metrics of a threshold rule "score >= t".

MIND keeps an intention when the role-aware filter answers "yes". To see what a stricter or looser filter would
keep, every row gets continuous scores (higher = more likely worth keeping):

``p_yes``
    The LVLM filter's P(yes) = P(yes) / (P(yes) + P(no)) over the first answer token (see
    :mod:`mind_core.lvlm`), stored in the intentions table by ``distill``. None for rows whose backend gave no
    logits/logprobs, e.g. every row of the vendored MIND sample.
``p_yes_rescored``
    The same quantity recomputed later for a slice of the KB by ``python -m mind_core rescore`` with any backend;
    kept next to the KB under ``<kb>/rescore/<source>/part-*.parquet`` (see :mod:`mind_core.distill.rescore`).
    When a row was rescored by several backends / runs, the most recent answer (``created_at``) wins; its backend is in
    ``rescore_source`` and its parsed answer in ``verdict_rescored``.
``grounding``
    Cosine similarity (all-MiniLM-L6-v2, or the KB's embedding model) between the intention's stored embedding and
    the embedding of the pair text :func:`pair_text`: ``"<title A>. <first 60 words of description A>\\n<title B>.
    <first 60 words of description B>"`` (whitespace collapsed; the encoder reads at most 256 word pieces, which
    cuts the end of B's description for 0.6 % of the sample's pairs). How much the intention talks about these two
    products. NaN when a product of the row is not in the products table, and for KBs built with ``--vectors``
    (the pair texts would have to be encoded on this machine, which is what ``--vectors`` avoids).
``typicality``
    Cosine similarity between the intention's embedding and the centroid (mean of the L2-normalised embeddings) of
    all *other* intentions with the same relation (leave-one-out, so a row never counts towards its own centroid).
    How typical the intention is of its relation. NaN for a relation with a single row.

``grounding`` and ``typicality`` are computed once by ``build-kb`` (:func:`write_build_scores`) into
``<kb>/scores.parquet`` (``intention_id, grounding, typicality`` as float32, one row per intentions row, same
order), listed in the manifest's artifacts like every other file so staleness checks cover it.
:func:`load_scores` (``KnowledgeBase.scores``) joins everything into one frame aligned with ``kb.intentions``.

Threshold metrics (pure functions; ``verdict`` "yes" is the positive class):

* a row is *kept at t* when ``score >= t`` (ties with t are kept);
* rows whose score is NaN are left out of every score-based number (kept counts, kept rate, precision, recall,
  histograms) and counted separately as ``nan``;
* rows with verdict None (unjudged) count in ``kept`` / ``kept_rate`` but not in precision / recall / F1;
* precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2TP / (2TP + FP + FN) over scored, judged rows; each
  is NaN when its denominator is 0 (nothing kept, no "yes" rows, neither); kept rate = kept / scored rows.

At 1.26M rows the page works on :class:`ScoreHistogram` (counts per group x bin x verdict, bins 0.01 wide):
thresholds snap to bin edges, which makes every count exact, and a slider move costs O(groups x bins).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mind_core.kb.store import SCORES_FILE, StaleIndexError

log = logging.getLogger(__name__)

SCORES_VERSION = 1
RESCORE_DIR = "rescore"
PAIR_DESCRIPTION_WORDS = 60
BIN_WIDTH = 0.01

SCORES_SCHEMA = pa.schema([("intention_id", pa.string()), ("grounding", pa.float32()), ("typicality", pa.float32())])


@dataclass(frozen=True)
class ScoreDef:
    key: str
    label: str
    #: fixed slider range, or None for the data's range
    fixed_range: tuple[float, float] | None
    definition: str


SCORE_DEFS: dict[str, ScoreDef] = {
    d.key: d
    for d in (
        ScoreDef(
            "p_yes",
            "P(yes) of the LVLM filter",
            (0.0, 1.0),
            "P(yes) / (P(yes) + P(no)) over the first answer token of the role-aware filter, recorded by distill "
            "when the backend gave logits/logprobs.",
        ),
        ScoreDef(
            "p_yes_rescored",
            "P(yes), rescored",
            (0.0, 1.0),
            "P(yes) of the role-aware filter recomputed by `python -m mind_core rescore` (the latest rescoring "
            "of each row wins; its backend is in rescore_source).",
        ),
        ScoreDef(
            "grounding",
            "grounding (intention vs. pair text)",
            None,
            'Cosine similarity (MiniLM) between the intention and the pair text "<title A>. <first 60 words of '
            'description A> / <title B>. <first 60 words of description B>".',
        ),
        ScoreDef(
            "typicality",
            "typicality (intention vs. its relation)",
            None,
            "Cosine similarity (MiniLM) between the intention and the centroid of all other intentions of the "
            "same relation (leave-one-out mean of normalised embeddings).",
        ),
    )
}
SCORE_KEYS: tuple[str, ...] = tuple(SCORE_DEFS)


# --- build-time scores -----------------------------------------------------------------------------------------


def _words(text: object, limit: int | None = None) -> str:
    words = str(text or "").split()
    return " ".join(words if limit is None else words[:limit])


def pair_text(
    title_a: object,
    description_a: object,
    title_b: object,
    description_b: object,
    *,
    words: int = PAIR_DESCRIPTION_WORDS,
) -> str:
    """The text an intention is grounded against: both titles and the first ``words`` words of both
    descriptions, ``"<title A>. <description A>\\n<title B>. <description B>"`` with whitespace collapsed."""
    return f"{_words(title_a)}. {_words(description_a, words)}\n{_words(title_b)}. {_words(description_b, words)}"


def rowwise_cosine(a: np.ndarray, b: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Cosine similarity of matching rows of ``a`` and ``b`` (float32; NaN where a row has zero norm)."""
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), chunk):
        x = np.asarray(a[s : s + chunk], dtype=np.float32)
        y = np.asarray(b[s : s + chunk], dtype=np.float32)
        num = np.einsum("ij,ij->i", x, y)
        den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + chunk] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return np.clip(out, -1.0, 1.0)


def typicality_scores(vecs: np.ndarray, relations: Sequence[str] | np.ndarray) -> np.ndarray:
    """Leave-one-out cosine similarity of each row to the mean of the normalised vectors of the *other* rows with
    the same relation: ``v_i · (S_r - v_i) / |S_r - v_i|`` with ``v_i`` normalised and ``S_r`` the relation's sum.
    NaN for a relation with one row (or when the others cancel out exactly)."""
    codes, _ = pd.factorize(pd.Series(relations, dtype=object), sort=True)
    n = len(codes)
    out = np.full(n, np.nan, dtype=np.float32)
    for code in np.unique(codes[codes >= 0]):
        rows = np.flatnonzero(codes == code)
        v = np.asarray(vecs[rows], dtype=np.float64)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        v = v / np.where(norms > 0, norms, 1)
        total = v.sum(axis=0)
        dot = v @ total  # v_i · S
        self_sq = np.einsum("ij,ij->i", v, v)  # |v_i|^2 (1, or 0 for a zero vector)
        rest_norm_sq = total @ total - 2 * dot + self_sq  # |S - v_i|^2
        ok = rest_norm_sq > 1e-12
        sim = np.full(len(rows), np.nan)
        sim[ok] = (dot[ok] - self_sq[ok]) / np.sqrt(rest_norm_sq[ok])
        out[rows] = np.clip(sim, -1.0, 1.0)
    return out


def write_build_scores(
    out: Path,
    intentions: Sequence[Mapping[str, Any]],
    products: Mapping[str, Mapping[str, Any]],
    vecs: np.ndarray,
    embedder,
    *,
    grounding: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """Compute ``grounding`` and ``typicality`` for every intention row (``vecs``: its normalised embeddings, same
    order), write ``out/scores.parquet`` atomically, and return what the manifest records under ``"scores"``.

    Pair texts are encoded with ``embedder.encode_cached`` (each distinct text once per machine). ``grounding=False``
    leaves it NaN (used with ``build-kb --vectors``)."""
    t0 = time.perf_counter()
    n = len(intentions)
    info: dict[str, Any] = {
        "version": SCORES_VERSION,
        "file": SCORES_FILE,
        "pair_text": f"<title A>. <first {PAIR_DESCRIPTION_WORDS} words of description A>\\n"
        f"<title B>. <first {PAIR_DESCRIPTION_WORDS} words of description B>",
        "typicality": "leave-one-out cosine to the relation's mean normalised embedding",
    }
    ground = np.full(n, np.nan, dtype=np.float32)
    if grounding and n:
        texts: list[str] = []
        have = np.zeros(n, dtype=bool)
        for i, r in enumerate(intentions):
            a, b = products.get(r["asin_a"]), products.get(r["asin_b"])
            if a is None or b is None:
                continue
            have[i] = True
            texts.append(pair_text(a.get("title"), a.get("description"), b.get("title"), b.get("description")))
        if texts:
            pair_vecs = embedder.encode_cached(texts, batch_size=batch_size, progress=progress)
            ground[have] = rowwise_cosine(vecs[have], pair_vecs)
        info["grounding"] = {
            "computed": True,
            "rows_without_products": int(n - have.sum()),
            "distinct_pair_texts": len(set(texts)),
        }
    else:
        info["grounding"] = {
            "computed": False,
            "why": "built with --vectors: pair texts were not encoded" if not grounding else "empty",
        }
    typ = typicality_scores(vecs, [r["relation"] for r in intentions])
    table = pa.table(
        {
            "intention_id": pa.array([r["intention_id"] for r in intentions], pa.string()),
            "grounding": pa.array(ground, pa.float32()),
            "typicality": pa.array(typ, pa.float32()),
        },
        schema=SCORES_SCHEMA,
    )
    tmp = out / (SCORES_FILE + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out / SCORES_FILE)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return info


# --- loading ---------------------------------------------------------------------------------------------------

RESCORE_COLUMNS = ("intention_id", "p_yes", "verdict", "reason", "source", "created_at", "flags")


def rescore_parts(kb_dir: str | Path) -> list[Path]:
    root = Path(kb_dir) / RESCORE_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/part-*.parquet") if p.is_file())


def rescore_signature(kb_dir: str | Path) -> tuple:
    """Changes whenever a rescore part is added or replaced (a cache key for the dashboard)."""
    return tuple((p.parent.name, p.name, p.stat().st_size) for p in rescore_parts(kb_dir))


def read_rescored(kb_dir: str | Path) -> pd.DataFrame:
    """All rescored rows of a KB folder, the latest per intention (``created_at``, then part order)."""
    frames = []
    for part in rescore_parts(kb_dir):
        try:
            frames.append(pq.read_table(part, columns=list(RESCORE_COLUMNS)).to_pandas())
        except Exception as err:  # pyarrow raises several types for damaged files
            log.warning("ignoring unreadable rescore part %s (%s)", part, err)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float if c == "p_yes" else object) for c in RESCORE_COLUMNS})
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values("created_at", kind="stable")
    return df.drop_duplicates("intention_id", keep="last").reset_index(drop=True)


def load_scores(kb) -> pd.DataFrame:
    """Every score aligned with ``kb.intentions`` (same index): ``p_yes, p_yes_rescored, grounding, typicality``
    (float, NaN = no value) plus ``verdict_rescored`` and ``rescore_source``. ``attrs["missing_file"]`` is True when
    the KB was built before scores existed (grounding/typicality all NaN: rebuild with ``build-kb --force``)."""
    df = kb.intentions
    ids = df["intention_id"]
    out = pd.DataFrame(index=df.index)
    out["p_yes"] = df["p_yes"].astype(float).to_numpy()
    out["p_yes_rescored"] = np.nan
    out["grounding"] = np.nan
    out["typicality"] = np.nan
    out["verdict_rescored"] = pd.Series([None] * len(df), index=df.index, dtype=object)
    out["rescore_source"] = pd.Series([None] * len(df), index=df.index, dtype=object)
    path = Path(kb.path) / SCORES_FILE
    listed = SCORES_FILE in kb.manifest.get("artifacts", {})
    out.attrs["missing_file"] = not (listed and path.exists())
    if not out.attrs["missing_file"]:
        table = pq.read_table(path)
        if table.num_rows != len(df):
            raise StaleIndexError(
                f"{path} has {table.num_rows} rows, the KB has {len(df)}; rebuild it with build-kb --force"
            )
        stored_ids = table.column("intention_id").to_numpy(zero_copy_only=False)
        if not np.array_equal(stored_ids, ids.to_numpy(dtype=object)):
            raise StaleIndexError(f"{path} rows are not aligned with intentions.parquet; rebuild with build-kb --force")
        out["grounding"] = table.column("grounding").to_numpy(zero_copy_only=False).astype(float)
        out["typicality"] = table.column("typicality").to_numpy(zero_copy_only=False).astype(float)
    rescored = read_rescored(kb.path)
    if len(rescored):
        pos = pd.Index(ids.astype(object)).get_indexer(rescored["intention_id"])
        ok = pos >= 0
        rows = pos[ok]
        out.iloc[rows, out.columns.get_loc("p_yes_rescored")] = rescored["p_yes"].astype(float).to_numpy()[ok]
        out.iloc[rows, out.columns.get_loc("verdict_rescored")] = rescored["verdict"].to_numpy()[ok]
        out.iloc[rows, out.columns.get_loc("rescore_source")] = rescored["source"].to_numpy()[ok]
    return out


def available_scores(scores: pd.DataFrame) -> list[str]:
    """Score keys with at least one value, in :data:`SCORE_KEYS` order."""
    return [k for k in SCORE_KEYS if k in scores and scores[k].notna().any()]


# --- metrics on rows -------------------------------------------------------------------------------------------

YES, NO, UNJUDGED = 0, 1, 2


def verdict_codes(verdicts: Iterable[object] | pd.Series) -> np.ndarray:
    """0 = "yes", 1 = "no", 2 = anything else (None / unparsed), per row."""
    s = verdicts if isinstance(verdicts, pd.Series) else pd.Series(list(verdicts), dtype=object)
    if isinstance(s.dtype, pd.CategoricalDtype):
        lut = np.array(
            [YES if c == "yes" else NO if c == "no" else UNJUDGED for c in s.cat.categories] + [UNJUDGED], dtype=np.int8
        )
        return lut[s.cat.codes.to_numpy()]  # code -1 (missing) picks the last entry
    v = s.to_numpy(dtype=object)
    return np.where(v == "yes", YES, np.where(v == "no", NO, UNJUDGED)).astype(np.int8)


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


# --- histograms (slider moves in O(groups x bins)) -------------------------------------------------------------


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


def now_utc() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def scores_summary(kb) -> dict[str, Any]:
    """Numbers for the README / the ``scores`` command: per score its ROC AUC against the verdicts and the
    best-F1 threshold (with its metrics); per relation the binary rule's kept rate (strictest first) and each
    score's AUC within the relation. Pure reading of the KB."""
    sc = kb.scores
    df = kb.intentions
    verdicts = df["verdict"]
    keys = available_scores(sc)
    out: dict[str, Any] = {"scores": {}, "relations": []}
    for key in keys:
        hist = ScoreHistogram.build(sc[key], verdicts, fixed_range=SCORE_DEFS[key].fixed_range)
        m = hist.metrics(best_f1_threshold(hist))
        out["scores"][key] = {"auc": roc_auc(sc[key], verdicts), **m.as_dict()}
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
