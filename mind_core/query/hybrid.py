"""Hybrid search: semantic and keyword evidence in one score.

The union of the top semantic hits and the top keyword-scored hits (words need not all match) is ranked by
``score = α · cosine + (1 − α) · bm25 / max_bm25`` (α = 0.5 by default), where both parts are computed exactly for
every candidate: the cosine from the stored embeddings, BM25 from the query's words, normalised by the largest
BM25 among the candidates so both parts lie in [0, 1].
"""

from __future__ import annotations

import time

import numpy as np

from mind_core.query.facets import Facets, facet_mask
from mind_core.query.keyword import keyword_index, parse_query
from mind_core.query.results import SearchResult, hits_frame, top_k
from mind_core.query.semantic import encode_query, nearest_rows, one_thread

HYBRID_ALPHA = 0.5


def hybrid_search(
    kb, query: str, k: int = 200, facets: Facets | None = None, alpha: float = HYBRID_ALPHA
) -> SearchResult:
    """``alpha · cosine + (1 − alpha) · bm25 / max_bm25`` over the union of top semantic and top BM25 rows."""
    t0 = time.perf_counter()
    if not query or not query.strip():
        raise ValueError("empty query")
    q = parse_query(query)
    mask = facet_mask(kb, facets)
    qvec = encode_query(kb, query)
    n_cand = max(2 * k, 100)
    with one_thread():
        sem_rows, _ = nearest_rows(kb, qvec, n_cand, mask)
    kw = keyword_index(kb)
    tscore, _present = kw.text_scores(q.words)
    if q.words:
        row_score = tscore[kw.row_text]
        ok = row_score > 0
        if mask is not None:
            ok &= mask
        kw_rows = np.flatnonzero(ok)
        kw_rows, _ = top_k(row_score[kw_rows], kw_rows, n_cand)
    else:
        kw_rows = np.empty(0, dtype=np.int64)
    cand = np.union1d(sem_rows, kw_rows).astype(np.int64)
    if len(cand) == 0:
        return SearchResult(hits_frame(kb, cand, np.empty(0)), 0, "hybrid", time.perf_counter() - t0)
    cos = kb.vectors(cand) @ qvec
    bm25 = tscore[kw.row_text[cand]].astype(np.float32)
    bm25_norm = bm25 / bm25.max() if bm25.max() > 0 else bm25
    combined = alpha * cos + (1 - alpha) * bm25_norm
    order = np.lexsort((cand, -combined))[:k]
    hits = hits_frame(kb, cand[order], combined[order], cosine=cos[order], bm25=bm25[order])
    return SearchResult(hits, len(hits), "hybrid", time.perf_counter() - t0)
