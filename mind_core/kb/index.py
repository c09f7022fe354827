"""FAISS index over intention embeddings. Vector id = row number in the KB's intentions table.

Index kinds (``--index``), each described by a FAISS ``index_factory`` string that is recorded in the manifest:

* ``flat``: exact inner product on L2-normalised vectors (cosine), ``"Flat"``;
* ``ivf``: inverted lists, ``"IVF<nlist>,Flat"`` with nlist ≈ 2·√N (power of two), searched with ``nprobe`` = 32;
* ``hnsw``: graph index ``"HNSW32"`` searched with ``efSearch``;
* ``auto``: ``flat`` below :data:`AUTO_FLAT_MAX` vectors, ``ivf`` above (rule and numbers:
  docs/measurements.md, "FAISS index").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mind_core.io import atomic_path

log = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
AUTO_FLAT_MAX = 50_000
DEFAULT_NPROBE = 32
DEFAULT_EF_SEARCH = 128
HNSW_M = 32


@dataclass
class IndexSpec:
    kind: str  # flat | ivf | hnsw (resolved, never "auto")
    factory: str  # faiss index_factory string
    search_params: dict  # e.g. {"nprobe": 32} or {"efSearch": 128}


def ivf_nlist(n: int) -> int:
    """≈ 2·√N rounded to a power of two, at least 16, and at most N/39 so every list trains on ≥ 39 points.

    benchmarks/index_bench.py at 1.26M: IVF2048 + nprobe 32 reached recall@10 1.000 at 2.5 ms CPU/query for 62 s
    of build CPU; IVF4096 (4·√N) needed 3x the build CPU for recall 0.993 at the same nprobe."""
    target = 2 * math.sqrt(max(n, 1))
    nlist = 2 ** round(math.log2(target))
    return int(max(16, min(nlist, 2 ** int(math.log2(max(n // 39, 16))))))


def choose_spec(kind: str, n: int) -> IndexSpec:
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        kind = "flat" if n < AUTO_FLAT_MAX else "ivf"
    if kind == "flat":
        return IndexSpec("flat", "Flat", {})
    if kind == "ivf":
        if n < 16 * 39:
            raise ValueError(f"an IVF index needs at least {16 * 39} vectors to train, got {n}; use --index flat")
        nlist = ivf_nlist(n)
        return IndexSpec("ivf", f"IVF{nlist},Flat", {"nprobe": min(DEFAULT_NPROBE, nlist)})
    return IndexSpec("hnsw", f"HNSW{HNSW_M}", {"efSearch": DEFAULT_EF_SEARCH})


def build_index(vectors, spec: IndexSpec, *, seed: int = 0, chunk: int = 65_536):
    """Build (train + add) a FAISS inner-product index over ``vectors`` (normalised; any 2-D array, e.g. a float16
    memory map of ``embeddings.npy``: it is read in chunks of ``chunk`` rows, so only the index itself has to fit
    in memory); ids = row numbers."""
    import faiss

    n, dim = vectors.shape
    index = faiss.index_factory(dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
    if spec.kind == "hnsw":
        index.hnsw.efConstruction = 40
    if not index.is_trained:
        nlist = faiss.extract_index_ivf(index).nlist
        rng = np.random.default_rng(seed)
        n_train = min(n, 64 * nlist)
        rows = np.sort(rng.choice(n, size=n_train, replace=False)) if n_train < n else slice(None)
        log.info("training %s on %d vectors", spec.factory, n_train)
        index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
    for start in range(0, n, chunk):
        index.add(np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32))
    apply_search_params(index, spec.search_params)
    return index


def apply_search_params(index, params: dict) -> None:
    import faiss

    ps = faiss.ParameterSpace()
    for key, value in params.items():
        ps.set_index_parameter(index, key, value)


def save_index(index, path: Path) -> None:
    import faiss

    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_index(path: Path, *, mmap: bool = True):
    """Read an index memory-mapped (``IO_FLAG_MMAP_IFC``: a read-only view for Flat, IVF and HNSW vectors in
    faiss 1.15 — 0 MB and ~0 ms for a 1.26M Flat index instead of 1.8 GB and seconds). A mapped index is for
    searching only: ``add()`` on it aborts the process, so pass ``mmap=False`` to modify an index."""
    import faiss

    if mmap:
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
            _prefetch(path)
            return index
        except RuntimeError as err:
            log.debug("mmap read of %s not supported (%s); reading into memory", path, err)
    return faiss.read_index(str(path))


def _prefetch(path: Path) -> None:
    """Ask the kernel to read the mapped file ahead in the background, so the first queries do not each wait on
    page faults of cold inverted lists (measured at 1.26M/IVF4096: 292 ms median before, see docs/measurements.md)."""
    import os

    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)
    except OSError as err:  # advisory only
        log.debug("prefetch of %s failed: %s", path, err)


def prefetch_lists(index, queries: np.ndarray) -> int:
    """For an IVF index: read ahead the inverted lists ``queries`` will probe (their codes and ids), all together
    (:func:`mind_core.io.will_need`), before the search touches them one after the other. The index is
    memory-mapped, so a cold list otherwise costs blocking page faults, each reading the device's read-ahead around
    it (measured: the first probe of a 1.26M IVF2048 KB with a cold page cache, docs/measurements.md). Other index
    kinds: nothing to do. Returns the number of ranges asked for."""
    import faiss

    from mind_core.io import will_need

    if not isinstance(index, faiss.IndexIVF) or index.nprobe < 1:
        return 0
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    _, probed = index.quantizer.search(q, min(index.nprobe, index.nlist))
    invlists = index.invlists
    starts, ends = [], []
    for lst in np.unique(probed[probed >= 0]).tolist():
        n = invlists.list_size(lst)
        if not n:
            continue
        codes = invlists.get_codes(lst)
        try:  # addresses only: nothing is read here
            addr = faiss.rev_swig_ptr(codes, n * invlists.code_size).ctypes.data
        finally:
            invlists.release_codes(lst, codes)
        starts.append(addr)
        ends.append(addr + n * invlists.code_size)
        ids = invlists.get_ids(lst)
        try:
            addr = faiss.rev_swig_ptr(ids, n).ctypes.data
        finally:
            invlists.release_ids(lst, ids)
        starts.append(addr)
        ends.append(addr + n * 8)
    return will_need(starts, ends)


def search(
    index, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None, params: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) per query; ``allowed_ids`` restricts results to those row numbers (facet filters).
    Missing results have id -1."""
    import faiss

    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = max(1, min(int(k), index.ntotal))
    if allowed_ids is None:
        return index.search(q, k)
    if len(allowed_ids) == 0:
        return np.full((len(q), k), -np.inf, dtype=np.float32), np.full((len(q), k), -1, dtype=np.int64)
    sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
    return index.search(q, k, params=selector_params(sel, params))


def selector_params(sel, params: dict | None):
    """FAISS SearchParameters restricting a search to ``sel`` while keeping the index's own ``nprobe`` /
    ``efSearch`` (a bare SearchParameters would reset them to the defaults)."""
    import faiss

    params = params or {}
    if "nprobe" in params:
        return faiss.SearchParametersIVF(sel=sel, nprobe=int(params["nprobe"]))
    if "efSearch" in params:
        return faiss.SearchParametersHNSW(sel=sel, efSearch=int(params["efSearch"]))
    return faiss.SearchParameters(sel=sel)
