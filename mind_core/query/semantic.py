"""Semantic search: the query's embedding (the KB's own encoder) against the intention embeddings.

One rule for every caller (pages, CLI, IntentionQA retrieval, the try page's "similar intentions"): with no facet
the KB's FAISS index answers; with facets, a subset of at most :data:`EXACT_MAX` rows is scored exactly on the
stored embeddings, and a larger one goes through FAISS restricted to the subset (an ``IDSelectorBitmap``, keeping
the index's own ``nprobe`` / ``efSearch``). Scores are cosine similarities (vectors are L2-normalised).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence

import numpy as np

from mind_core.kb.store import EMBEDDINGS_FILE, INDEX_FILE
from mind_core.query.derived import remember
from mind_core.query.facets import Facets, facet_mask
from mind_core.query.results import SearchResult, hits_frame, top_k

#: facet subsets up to this size are scored exactly; larger ones go through FAISS
EXACT_MAX = 50_000


@contextlib.contextmanager
def one_thread():
    """Run a single-query step (encode one query, one FAISS probe, a small PCA) on one thread of torch, BLAS and
    FAISS/OpenMP, restoring the previous settings afterwards. For one short query one thread is the fastest
    anyway, and on a busy machine the multi-threaded runtimes were measured 10-40× slower here (MiniLM query
    encoding 1.5 s vs 40 ms with one thread: spinning threads fighting over oversubscribed cores)."""
    import faiss

    restore = []
    try:
        torch = sys.modules.get("torch")  # only if something loaded it (the embedder does)
        if torch is not None:
            before_torch = torch.get_num_threads()
            torch.set_num_threads(1)
            restore.append(lambda: torch.set_num_threads(before_torch))
        before_omp = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        restore.append(lambda: faiss.omp_set_num_threads(before_omp))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional (comes with scikit-learn)
            limits = contextlib.nullcontext()
        else:
            limits = threadpool_limits(1)
        with limits:
            yield
    finally:
        for undo in reversed(restore):
            undo()


def encode_query(kb, text: str) -> np.ndarray:
    """The query's embedding; the last 256 per KB are remembered, so changing facets, mode or page does not
    re-encode (encoding is most of a semantic search: ~40-50 ms on a busy 2-core CPU; FAISS + rows ~35 ms)."""

    def compute() -> np.ndarray:
        with one_thread():
            vec = kb.encoder.encode_one(text)
        vec.flags.writeable = False
        return vec

    return remember(kb, "queries", text, compute, limit=256)


def nearest_rows(kb, qvec: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cosine scores) of the ``k`` rows nearest to ``qvec`` among those ``mask`` keeps (None: all), best
    first, by the rule in the module docstring."""
    import faiss

    from mind_core.kb.index import prefetch_lists, selector_params

    index = kb.index
    if mask is not None:
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if len(rows) <= EXACT_MAX:
            scores = kb.vectors(rows) @ qvec
            return top_k(scores, rows, k)
        prefetch_lists(index, qvec)
        bits = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        sp = selector_params(sel, kb.manifest.get("search_params"))
        scores, ids = index.search(np.array(qvec[None, :], dtype=np.float32), min(k, len(rows)), params=sp)
        del bits  # the selector points into it; keep it alive until the search returns
    else:
        prefetch_lists(index, qvec)
        scores, ids = index.search(np.array(qvec[None, :], dtype=np.float32), min(k, index.ntotal))
    keep = ids[0] >= 0
    return ids[0][keep].astype(np.int64), scores[0][keep]


def nearest_many(kb, vectors: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`nearest_rows` without facets for many query vectors at once (one FAISS call)."""
    q = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    if not len(q):
        return []
    from mind_core.kb.index import prefetch_lists

    prefetch_lists(kb.index, q)
    scores, ids = kb.index.search(q, max(1, min(int(k), kb.index.ntotal)))
    return [(i[i >= 0].astype(np.int64), s[i >= 0]) for s, i in zip(scores, ids)]


def similar_intentions(kb, texts: Sequence[str], k: int = 3) -> list[SearchResult]:
    """The ``k`` KB intentions nearest to each text (one batched encode + one FAISS call)."""
    t0 = time.perf_counter()
    if not len(texts):
        return []
    with one_thread():
        vecs = kb.encoder.encode(list(texts))
    out = []
    for rows, scores in nearest_many(kb, vecs, k):
        out.append(SearchResult(hits_frame(kb, rows, scores), len(rows), "semantic", time.perf_counter() - t0))
    return out


def semantic_search(kb, query: str, k: int = 200, facets: Facets | None = None) -> SearchResult:
    t0 = time.perf_counter()
    if not query or not query.strip():
        raise ValueError("empty query: describe an intention in your own words")
    qvec = encode_query(kb, query)
    with one_thread():
        rows, scores = nearest_rows(kb, qvec, k, facet_mask(kb, facets))
    return SearchResult(hits_frame(kb, rows, scores), len(rows), "semantic", time.perf_counter() - t0)


def index_available(kb) -> str | None:
    """None when semantic search can run, else a message saying what is missing and how to fix it."""
    for name in (INDEX_FILE, EMBEDDINGS_FILE):
        if not (kb.path / name).exists():
            return (
                f"{name} is missing in {kb.path}, so semantic and hybrid search are unavailable "
                f"(keyword search still works). Rebuild with: python -m mind_core build-kb --input <data> "
                f"--out {kb.path} --force"
            )
    return None
