"""KB build on the vendored sample, queries, stats, export, search quality, idempotent rebuilds."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mind_core.kb.store import KBError, KnowledgeBase, StaleIndexError, build_kb, export, export_frame


def test_sample_kb_counts_match_data_readme(sample_kb):
    c = sample_kb.counts()
    assert c == {"intentions": 3397, "products": 5472, "pairs": 2974, "kept": 1487, "filtered": 1910, "relations": 20}
    m = sample_kb.manifest
    assert m["index_factory"] == "Flat" and m["embed_dim"] == 384 and m["embed_model"] == "all-MiniLM-L6-v2"
    assert m["counts"]["intentions"] == 3397 and len(m["inputs"]) == 2


def test_stats_per_relation_match_readme(sample_kb):
    rel = sample_kb.stats_by_relation().set_index("relation")
    assert rel.loc["partOf", "intentions"] == 267 and rel.loc["partOf", "kept"] == 138
    assert rel.loc["propertyOf", "kept_rate"] == pytest.approx(0.714, abs=1e-3)
    assert rel["intentions"].sum() == 3397
    cat = sample_kb.stats_by_category().set_index("category")
    assert cat.loc["clothing", "intentions"] == 2073 and cat.loc["electronics", "intentions"] == 1324


def test_queries_by_product_pair_and_facets(sample_kb):
    rows = sample_kb.by_product("B004I41M6K")
    assert len(rows) >= 1 and ((rows.asin_a == "B004I41M6K") | (rows.asin_b == "B004I41M6K")).all()
    partners = sample_kb.partners("B004I41M6K")
    assert "B00DGBVAOK" in set(partners["asin"])
    pair = sample_kb.by_pair("B00DGBVAOK", "B004I41M6K")  # order does not matter
    assert len(pair) >= 1 and set(pair["pair_id"]) == {"B004I41M6K|B00DGBVAOK"}
    sub = sample_kb.filter(relation="usedFor", verdict="yes", category="clothing")
    direct = sample_kb.intentions.query("relation == 'usedFor' and verdict == 'yes' and category == 'clothing'")
    assert len(sub) == len(direct) > 0
    assert sample_kb.product("B004I41M6K")["title"].startswith("Classic Aviator Hat")
    assert sample_kb.product("NOPE") is None


def test_exact_text_search_returns_that_intention_first(sample_kb):
    rng = np.random.default_rng(7)
    picks = rng.choice(len(sample_kb.intentions), size=50, replace=False)
    recs = sample_kb.intentions.iloc[picks]
    results = sample_kb.search_batch(list(recs["intention"]), k=3)
    for (_, rec), hits in zip(recs.iterrows(), results):
        assert hits.iloc[0]["intention_id"] == rec["intention_id"], rec["intention"][:80]
        assert hits.iloc[0]["score"] == pytest.approx(1.0, abs=1e-3)
    # the single-query path agrees
    one = sample_kb.search(recs.iloc[0]["intention"], k=1)
    assert one.iloc[0]["intention_id"] == recs.iloc[0]["intention_id"]


@pytest.mark.parametrize(
    "query, relation, min_relation_hits, word",
    [
        # MiniLM retrieves by topic first; relation wording pulls the relation in when the topic carries it
        ("the two products are both made of leather", "madeOf", 3, "leather"),
        ("both are symbols of love and romance", "symbolOf", 2, "valentine"),
        ("shoppers want to stay warm when it is cold outside", None, 0, "warm"),
    ],
)
def test_paraphrased_queries_find_relevant_intentions(sample_kb, query, relation, min_relation_hits, word):
    hits = sample_kb.search(query, k=10)
    texts = " ".join(hits["intention"]).lower()
    assert word in texts
    if relation:
        assert (hits["relation"] == relation).sum() >= min_relation_hits, hits["relation"].tolist()


def test_search_with_facets_is_exact_within_the_subset(sample_kb):
    hits = sample_kb.search("keeping warm in winter", k=5, relation=["usedFor"], verdict="yes")
    assert len(hits) == 5 and set(hits["relation"]) == {"usedFor"} and set(hits["verdict"]) == {"yes"}
    assert list(hits["score"]) == sorted(hits["score"], reverse=True)
    assert sample_kb.search("anything", k=5, relation="effect", category="nope").empty
    with pytest.raises(ValueError, match="empty query"):
        sample_kb.search("   ")


def test_export_formats_round_trip(sample_kb, tmp_path):
    rows = sample_kb.filter(relation="isA").head(7)
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
    assert kb.search("umbrella", k=1).iloc[0]["intention_id"] == "extra-1"


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
    assert kb.search(texts[5], k=1).iloc[0]["intention"] == texts[5]
    np.save(tmp_path / "bad.npy", vecs[:10])
    with pytest.raises(KBError, match=r"shape \(10, 384\), expected \(120, 384\)"):
        build_kb([small_input_dir], tmp_path / "kb2", vectors=tmp_path / "bad.npy", progress=False)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(KBError, match="not a readable .npy"):
        build_kb([small_input_dir], tmp_path / "kb3", vectors=tmp_path / "obj.npy", progress=False)
