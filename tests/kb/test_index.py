"""FAISS index kinds, save/load (memory-mapped) round trip, auto rule, filtered search."""

from __future__ import annotations

import numpy as np
import pytest

from mind_core.kb.index import AUTO_FLAT_MAX, build_index, choose_spec, ivf_nlist, load_index, save_index, search


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_auto_rule():
    assert choose_spec("auto", AUTO_FLAT_MAX - 1).factory == "Flat"
    spec = choose_spec("auto", 1_264_441)
    assert spec.kind == "ivf" and spec.factory == f"IVF{ivf_nlist(1_264_441)},Flat" and spec.search_params["nprobe"] > 0
    assert choose_spec("hnsw", 10).factory.startswith("HNSW")
    with pytest.raises(ValueError, match="at least"):
        choose_spec("ivf", 100)
    with pytest.raises(ValueError, match="unknown index kind"):
        choose_spec("lsh", 100)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_mmap_round_trip(tmp_path, kind):
    x = clustered(4000)
    index = build_index(x, choose_spec(kind, len(x)))
    path = tmp_path / "i.faiss"
    save_index(index, path)
    loaded = load_index(path, mmap=True)
    assert loaded.ntotal == 4000
    spec = choose_spec(kind, len(x))
    from mind_core.kb.index import apply_search_params

    apply_search_params(loaded, spec.search_params)
    s1, i1 = search(index, x[:20], 5)
    s2, i2 = search(loaded, x[:20], 5)
    assert np.array_equal(i1, i2)
    assert (i2[:, 0] == np.arange(20)).mean() >= 0.9  # a vector finds itself


def test_filtered_search_respects_allowed_ids():
    x = clustered(3000, seed=1)
    index = build_index(x, choose_spec("flat", len(x)))
    allowed = np.arange(0, 3000, 7)
    scores, ids = search(index, x[5], 10, allowed_ids=allowed)
    assert set(ids[0]) <= set(allowed)
    exact = np.argsort(-(x[allowed] @ x[5]))[:10]
    assert list(ids[0]) == list(allowed[exact])
    _, none = search(index, x[5], 10, allowed_ids=np.array([], dtype=np.int64))
    assert (none == -1).all()


def test_prefetch_lists_reads_the_probed_inverted_lists_of_a_cold_index(tmp_path):
    """The first probe of a memory-mapped IVF index: the lists it will scan (codes + ids) are asked for together;
    the rest of the file stays cold. Flat and HNSW have nothing to prefetch."""
    import os
    import time

    import faiss

    from mind_core import io
    from mind_core.kb.index import prefetch_lists

    x = clustered(60_000, dim=64, seed=2)
    index = build_index(x, choose_spec("ivf", len(x)))  # IVF with ~2·sqrt(n) lists
    index.nprobe = 4
    path = tmp_path / "ivf.faiss"
    save_index(index, path)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    io.drop_from_page_cache(path)
    mapped = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)  # without load_index's whole-file read-ahead
    mapped.nprobe = 4
    before = io.resident_bytes(path)
    if not 0 <= before <= path.stat().st_size // 4:
        pytest.skip(f"the page cache cannot be dropped / inspected here ({before} bytes resident)")
    _, probed = mapped.quantizer.search(x[:1], 4)
    sizes = [mapped.invlists.list_size(int(lst)) for lst in probed[0]]
    assert prefetch_lists(mapped, x[0]) >= 1
    want = sum(sizes) * (64 * 4 + 8)  # codes (float32) + ids of the four lists
    deadline = time.monotonic() + 5
    while (got := io.resident_bytes(path) - before) < want * 0.9 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert want * 0.9 <= got <= want + 16 * 4096 * 8, (got, want)  # those lists, not the whole file
    assert got < path.stat().st_size // 3
    s1, i1 = index.search(x[:1], 10)
    s2, i2 = mapped.search(x[:1], 10)
    assert np.array_equal(i1, i2)
    flat = build_index(x[:1000], choose_spec("flat", 1000))
    assert prefetch_lists(flat, x[0]) == 0
