"""KB build on the vendored sample, opening it, export, idempotent rebuilds, stale KBs, precomputed vectors.
(Queries over a built KB are tested in tests/query/.)"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mind_core.kb.build import build_kb
from mind_core.kb.export import export, export_frame
from mind_core.kb.store import KBError, KnowledgeBase, StaleIndexError
from mind_core.query import semantic_search
from mind_core.query.facets import Facets, filter_rows


def _top(kb, text: str) -> str:
    return semantic_search(kb, text, k=1).hits.iloc[0]["intention_id"]


def test_sample_kb_counts_match_data_readme(sample_kb):
    c = sample_kb.counts()
    assert c == {"intentions": 3397, "products": 5472, "pairs": 2974, "kept": 1487, "filtered": 1910, "relations": 20}
    m = sample_kb.manifest
    assert m["index_factory"] == "Flat" and m["embed_dim"] == 384 and m["embed_model"] == "all-MiniLM-L6-v2"
    assert m["counts"]["intentions"] == 3397 and len(m["inputs"]) == 2
    assert sample_kb.product("B004I41M6K")["title"].startswith("Classic Aviator Hat")
    assert sample_kb.product("NOPE") is None


def test_export_formats_round_trip(sample_kb, tmp_path):
    rows = filter_rows(sample_kb, Facets.of(relation="isA")).head(7)
    csv = pd.read_csv(io.BytesIO(export_frame(rows, "csv")))
    assert list(csv["intention_id"]) == list(rows["intention_id"])
    lines = export_frame(rows, "jsonl").decode().splitlines()
    assert len(lines) == 7 and json.loads(lines[0])["relation"] == "isA"
    pq_rows = pd.read_parquet(export(rows, tmp_path / "x.parquet"))
    assert list(pq_rows["intention"]) == list(rows["intention"])
    with pytest.raises(ValueError, match="unknown export format"):
        export_frame(rows, "xlsx")


def test_rebuild_is_noop_then_detects_changes(small_input_dir, tmp_path):
    inp = tmp_path / "in"
    shutil.copytree(small_input_dir, inp)
    out = tmp_path / "kb"
    first = build_kb([inp], out, progress=False)
    assert first.status == "built" and first.manifest["counts"]["intentions"] == 120
    again = build_kb([inp], out, progress=False)
    assert again.status == "unchanged"
    # changed input -> rebuilt with the reason
    with open(inp / "intentions.jsonl", "a", encoding="utf-8") as fh:
        fh.write(
            json.dumps(
                {
                    "intention_id": "extra-1",
                    "asin_a": "X1",
                    "asin_b": "X2",
                    "relation": "isA",
                    "intention": "they both are a type of umbrella",
                }
            )
            + "\n"
        )
    third = build_kb([inp], out, progress=False)
    assert third.status == "built" and third.reason == "input files changed"
    assert third.manifest["counts"]["intentions"] == 121
    # changed index kind -> rebuilt
    fourth = build_kb([inp], out, index_kind="hnsw", progress=False)
    assert (
        fourth.status == "built" and "index_request" in fourth.reason and fourth.manifest["index_factory"] == "HNSW32"
    )
    kb = KnowledgeBase(out)
    assert _top(kb, "umbrella") == "extra-1"


def test_stale_or_broken_kb_is_detected(small_input_dir, tmp_path):
    out = tmp_path / "kb"
    build_kb([small_input_dir], out, progress=False)
    # an intentions table replaced behind the index's back
    df = pd.read_parquet(out / "intentions.parquet").head(50)
    df.to_parquet(out / "intentions.parquet", index=False)
    with pytest.raises(StaleIndexError, match="stale: intentions.parquet changed.*build-kb"):
        KnowledgeBase(out)
    # build-kb notices and rebuilds
    res = build_kb([small_input_dir], out, progress=False)
    assert res.status == "built" and "intentions.parquet changed" in res.reason
    KnowledgeBase(out)
    (out / "index.faiss").unlink()
    assert build_kb([small_input_dir], out, progress=False).reason == "index.faiss is missing"
    with pytest.raises(KBError, match="not a built KB"):
        KnowledgeBase(tmp_path)
    with pytest.raises(KBError, match="does not exist"):
        KnowledgeBase(tmp_path / "missing")


def test_precomputed_vectors(small_input_dir, tmp_path):
    from mind_core.data.kb_files import load_inputs
    from mind_core.kb.embed import get_embedder

    texts = [r["intention"] for r in load_inputs([small_input_dir]).intentions]
    vecs = get_embedder().encode(texts) * 3.0  # unnormalised on purpose: build-kb normalises
    np.save(tmp_path / "v.npy", vecs.astype(np.float16))
    res = build_kb([small_input_dir], tmp_path / "kb", vectors=tmp_path / "v.npy", progress=False)
    assert res.status == "built" and res.manifest["vectors"]["bytes"] == (tmp_path / "v.npy").stat().st_size
    kb = KnowledgeBase(tmp_path / "kb")
    assert kb.intentions.set_index("intention_id").loc[_top(kb, texts[5]), "intention"] == texts[5]
    np.save(tmp_path / "bad.npy", vecs[:10])
    with pytest.raises(KBError, match=r"shape \(10, 384\), expected \(120, 384\)"):
        build_kb([small_input_dir], tmp_path / "kb2", vectors=tmp_path / "bad.npy", progress=False)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(KBError, match="not a readable .npy"):
        build_kb([small_input_dir], tmp_path / "kb3", vectors=tmp_path / "obj.npy", progress=False)


def _garble(path, keep: int = 0) -> None:
    """Overwrite ``path`` with noise of the same size (the manifest's size check still passes)."""
    size = path.stat().st_size
    data = path.read_bytes()[:keep] + np.random.default_rng(0).integers(0, 256, size - keep, dtype=np.uint8).tobytes()
    path.write_bytes(data)


def test_damaged_artifacts_are_a_clear_kb_error(small_input_dir, tmp_path, monkeypatch):
    # issue 16 (7): numpy said "Cannot load file containing pickled data when allow_pickle=False"
    monkeypatch.setenv("MIND_CACHE_DIR", str(tmp_path / "cache"))  # no Arrow copy of the tables to fall back on
    out = tmp_path / "kb"
    build_kb([small_input_dir], out, progress=False)
    _garble(out / "embeddings.npy")
    kb = KnowledgeBase(out)
    with pytest.raises(KBError) as err:
        kb.embeddings  # noqa: B018
    msg = str(err.value)
    assert msg.startswith("embeddings.npy is damaged:") and "build-kb" in msg and "--force" in msg
    assert "pickle" not in msg
    _garble(out / "intentions.parquet")
    monkeypatch.setenv("MIND_CACHE_DIR", str(tmp_path / "fresh-cache"))  # the Arrow copy would still be good
    with pytest.raises(KBError, match=r"^intentions.parquet is damaged: .*build-kb .*--force"):
        KnowledgeBase(out)


def test_take_and_vectors_read_the_same_rows_as_plain_indexing(sample_kb):
    """KnowledgeBase.take / .vectors read their pages ahead (mind_core.io.will_need) and return exactly what
    plain indexing of the memory-mapped table / embeddings does, in the asked order, repeats included."""
    import numpy as np

    rows = np.array([3000, 5, 1777, 5, len(sample_kb.intentions) - 1])
    assert sample_kb.take(rows).equals(sample_kb.intentions.iloc[rows])
    vecs = sample_kb.vectors(rows)
    assert vecs.dtype == np.float32 and np.array_equal(vecs, np.asarray(sample_kb.embeddings[rows], np.float32))
    assert sample_kb.take(np.array([], dtype=np.int64)).empty and sample_kb.vectors([]).shape == (0, 384)
