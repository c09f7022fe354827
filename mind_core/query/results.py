"""What every search returns: :class:`SearchResult` with the hit rows, and the two helpers all modes rank with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class SearchResult:
    hits: pd.DataFrame  # KB rows + row, score (+ cosine, bm25 for hybrid), best first
    total: int  # number of matching rows (keyword: all matches; semantic/hybrid: hits returned)
    mode: str
    seconds: float
    note: str = ""


def hits_frame(kb, rows: np.ndarray, scores: np.ndarray, **extra) -> pd.DataFrame:
    hits = kb.take(rows).copy()
    for name, values in reversed(list(extra.items())):
        hits.insert(0, name, np.asarray(values, dtype=float))
    hits.insert(0, "score", np.asarray(scores, dtype=float))
    hits.insert(0, "row", np.asarray(rows, dtype=np.int64))
    return hits.reset_index(drop=True)


def top_k(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (rows, scores) by score descending, ties by row ascending."""
    if len(rows) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[part], scores[part]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]
