"""Chart data, selections, the embedding map and safe text display, against direct pandas computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard.presenters import charts
from dashboard.presenters.text import md_escape, page_slice, results_table
from mind_core.query import embedmap, search


def test_relation_data_matches_groupby(sample_kb):
    df = sample_kb.intentions
    data = charts.relation_verdict_data(df).set_index("relation")
    direct = pd.crosstab(df["relation"].astype(str), df["verdict"].astype(str))
    assert data["intentions"].sum() == len(df) == 3397
    for rel, row in direct.iterrows():
        assert data.loc[rel, "kept"] == row.get("yes", 0) and data.loc[rel, "filtered"] == row.get("no", 0)
    stats = sample_kb.stats_by_relation().set_index("relation")
    assert np.allclose(data["kept_rate"], stats.loc[data.index, "kept_rate"], atol=1e-3)
    assert list(data["intentions"]) == sorted(data["intentions"], reverse=True)


def test_category_relation_heatmap_data(sample_kb):
    df = sample_kb.intentions
    table = charts.category_relation_data(df)
    direct = pd.crosstab(df["category"].astype(str), df["relation"].astype(str))
    assert table.to_numpy().sum() == len(df)
    for cat in direct.index:
        for rel in direct.columns:
            assert table.loc[cat, rel] == direct.loc[cat, rel]
    pcat = charts.product_category_of_a(df, sample_kb.products)
    direct_pcat = df["asin_a"].map(sample_kb.products["category"]).fillna("(unknown)").replace("", "(unknown)")
    assert pcat.astype(str).tolist() == direct_pcat.astype(str).tolist()
    via_index = charts.product_category_of_a(df, sample_kb.products, search.product_index(sample_kb).a_pos)
    assert via_index.astype(str).tolist() == pcat.astype(str).tolist()
    by_product = charts.category_relation_data(df, pcat)
    assert by_product.to_numpy().sum() == len(df) and "Electronics" in by_product.index


def test_length_histogram_counts(sample_kb):
    df = sample_kb.intentions
    kw = search.keyword_index(sample_kb)
    lengths = kw.doc_len[kw.row_text]
    assert np.array_equal(lengths, charts.intention_lengths(df))  # the index's counts = a direct count
    data = charts.length_data(df, lengths=lengths)
    per = data.groupby("verdict")["count"].sum()
    assert per["kept"] == (df["verdict"] == "yes").sum() and per["filtered"] == (df["verdict"] == "no").sum()
    assert "unjudged" not in per


def test_selections_map_to_rows(sample_kb):
    df = sample_kb.intentions
    rows = charts.rows_for_selection(df, "relation", [{"x": "usedFor", "customdata": "kept"}])
    assert rows.tolist() == np.flatnonzero((df["relation"] == "usedFor") & (df["verdict"] == "yes")).tolist()
    rows = charts.rows_for_selection(df, "kept_rate", [{"x": "isA"}, {"x": "can"}])
    assert rows.tolist() == np.flatnonzero(df["relation"].isin(["isA", "can"])).tolist()
    rows = charts.rows_for_selection(df, "heatmap", [{"x": "usedFor", "y": "clothing"}])
    assert len(rows) == ((df["relation"] == "usedFor") & (df["category"] == "clothing")).sum() > 0
    lengths = charts.intention_lengths(df)
    data = charts.length_data(df, lengths=lengths)
    b = data[data["verdict"] == "filtered"].iloc[5]
    rows = charts.rows_for_selection(
        df, "lengths", [{"customdata": [b.bin_left, b.bin_right], "legendgroup": "filtered"}], lengths=lengths
    )
    assert len(rows) == b["count"]
    assert charts.rows_for_selection(df, "map", [{"customdata": [7]}, {"customdata": [3]}]).tolist() == [3, 7]
    assert charts.rows_for_selection(df, "map", []) is None


def test_figures_have_the_data(sample_kb):
    data = charts.relation_verdict_data(sample_kb.intentions)
    fig = charts.fig_relation_stacked(data)
    assert [t.name for t in fig.data] == ["kept", "filtered"]  # no unjudged rows in the sample
    assert list(fig.data[0].y) == data["kept"].tolist() and len(fig.data[0].x) == 20
    rate = charts.fig_kept_rate(data)
    assert max(rate.data[0].y) <= 1 and len(rate.data[0].x) == 20
    heat = charts.fig_heatmap(charts.category_relation_data(sample_kb.intentions))
    assert np.asarray(heat.data[0].z).sum() == 3397


def test_embedding_map(sample_kb):
    kw = search.keyword_index(sample_kb)
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
    assert len(list((tmp_path / "embedmap").glob("*.npz"))) == 1
    second = embedmap.kb_map(sample_kb, max_points=800, n_clusters=5)
    assert np.array_equal(first.rows, second.rows) and np.allclose(first.xy, second.xy)
    assert second.labels == first.labels and second.explained == pytest.approx(first.explained)


def test_display_escapes_markdown_and_html():
    raw = "**bold** <b>x</b> [a](http://e) :smile: $x$ # h _i_ &amp;"
    esc = md_escape(raw)
    for ch in ("\\*\\*", "\\<b\\>", "\\[a\\]", "\\:smile\\:", "\\$x\\$", "\\#", "\\_i\\_", "\\&amp;"):
        assert ch in esc
    assert md_escape(None) == "" and md_escape("a\nb") == "a  \nb"
    assert page_slice(51, 3, 25) == (50, 51, 3) and page_slice(0, 1, 25) == (0, 0, 1) and page_slice(10, 9, 5)[0] == 5


def test_results_table_titles(sample_kb):
    hits = sample_kb.intentions.head(3).assign(score=[0.9, 0.8, 0.7])
    table = results_table(hits, sample_kb.products["title"])
    assert table["title_a"].iloc[0] == "Classic Aviator Hat - Pilot Aviator Cap - Vintage WWII Hat Funny Party Hats"
    assert table["verdict"].tolist() == ["filtered" if v == "no" else "kept" for v in hits["verdict"]]
    nook = sample_kb.intentions[sample_kb.intentions["asin_b"] == "0594296420"].assign(score=1.0)
    assert len(nook) == 1  # title "Barnes &amp; Noble Power Adapter…" in the metadata
    assert results_table(nook, sample_kb.products["title"])["title_b"].iloc[0].startswith("Barnes & Noble Power")
