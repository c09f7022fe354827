"""Counts over a KB (mind_core.query.aggregate) and the embedding map (mind_core.query.embedmap), against direct
pandas / numpy computations on the vendored sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mind_core.query import aggregate, embedmap
from mind_core.query.keyword import keyword_index
from mind_core.query.products import product_index


def test_relation_data_matches_groupby(sample_kb):
    df = sample_kb.intentions
    data = aggregate.relation_verdict_data(df).set_index("relation")
    direct = pd.crosstab(df["relation"].astype(str), df["verdict"].astype(str))
    assert data["intentions"].sum() == len(df) == 3397
    for rel, row in direct.iterrows():
        assert data.loc[rel, "kept"] == row.get("yes", 0) and data.loc[rel, "filtered"] == row.get("no", 0)
    for rel, row in direct.iterrows():
        assert data.loc[rel, "kept_rate"] == pytest.approx(row.get("yes", 0) / (row.get("yes", 0) + row.get("no", 0)))
    assert list(data["intentions"]) == sorted(data["intentions"], reverse=True)


def test_category_relation_heatmap_data(sample_kb):
    df = sample_kb.intentions
    table = aggregate.category_relation_data(df)
    direct = pd.crosstab(df["category"].astype(str), df["relation"].astype(str))
    assert table.to_numpy().sum() == len(df)
    for cat in direct.index:
        for rel in direct.columns:
            assert table.loc[cat, rel] == direct.loc[cat, rel]
    pcat = aggregate.product_category_of_a(df, sample_kb.products)
    direct_pcat = df["asin_a"].map(sample_kb.products["category"]).fillna("(unknown)").replace("", "(unknown)")
    assert pcat.astype(str).tolist() == direct_pcat.astype(str).tolist()
    via_index = aggregate.product_category_of_a(df, sample_kb.products, product_index(sample_kb).a_pos)
    assert via_index.astype(str).tolist() == pcat.astype(str).tolist()
    by_product = aggregate.category_relation_data(df, pcat)
    assert by_product.to_numpy().sum() == len(df) and "Electronics" in by_product.index


def test_length_histogram_counts(sample_kb):
    df = sample_kb.intentions
    kw = keyword_index(sample_kb)
    lengths = kw.doc_len[kw.row_text]
    assert np.array_equal(lengths, aggregate.intention_lengths(df))  # the index's counts = a direct count
    data = aggregate.length_data(df, lengths=lengths)
    per = data.groupby("verdict")["count"].sum()
    assert per["kept"] == (df["verdict"] == "yes").sum() and per["filtered"] == (df["verdict"] == "no").sum()
    assert "unjudged" not in per


def test_embedding_map(sample_kb):
    kw = keyword_index(sample_kb)
    m = embedmap.build_map(
        sample_kb.embeddings, sample_kb.intentions["intention"], max_points=1500, n_clusters=8, keyword_index=kw
    )
    assert len(m.rows) == 1500 == len(np.unique(m.rows)) and m.xy.shape == (1500, 2)
    assert len(m.labels) == 8 and m.explained[0] >= m.explained[1] > 0 and sum(m.explained) < 1
    # the sparse (indexed) top words equal the plain re-tokenising rule
    texts = sample_kb.intentions["intention"].iloc[m.rows].tolist()
    assert embedmap.top_words_indexed(kw, m.rows, m.cluster) == embedmap.top_words(texts, m.cluster)
    for label in m.labels:
        words = label.split(": ", 1)[1].split(", ")
        assert len(words) == 4 and not set(words) & embedmap.STOP_WORDS
    # PCA axes: the projection's variance equals the top eigenvalues' share
    x = np.asarray(sample_kb.embeddings[m.rows], dtype=np.float64)
    var = np.var(x - x.mean(0), axis=0).sum()
    assert np.isclose(np.var(m.xy[:, 0]) / var, m.explained[0], rtol=1e-3)
    again = embedmap.build_map(
        sample_kb.embeddings, sample_kb.intentions["intention"], max_points=1500, n_clusters=8, keyword_index=kw
    )
    assert np.array_equal(again.cluster, m.cluster)  # seeded


def test_kb_map_is_saved_and_reloaded(sample_kb, tmp_path, monkeypatch):
    monkeypatch.setenv("MIND_CACHE_DIR", str(tmp_path))
    first = embedmap.kb_map(sample_kb, max_points=800, n_clusters=5)
    assert len(list((tmp_path / "derived").glob("embedmap-*.npz"))) == 1
    second = embedmap.kb_map(sample_kb, max_points=800, n_clusters=5)
    assert np.array_equal(first.rows, second.rows) and np.allclose(first.xy, second.xy)
    assert second.labels == first.labels and second.explained == pytest.approx(first.explained)
