"""The Categories page's figures and chart selections (dashboard.presenters.charts), safe text display and the
results table (dashboard.presenters.text / tables), against direct computations."""

from __future__ import annotations

import numpy as np

from dashboard.presenters import charts
from dashboard.presenters.tables import page_slice, results_table
from dashboard.presenters.text import md_escape, verdict_badge
from mind_core.query import aggregate


def test_selections_map_to_rows(sample_kb):
    df = sample_kb.intentions
    rows = charts.rows_for_selection(df, "relation", [{"x": "usedFor", "customdata": "kept"}])
    assert rows.tolist() == np.flatnonzero((df["relation"] == "usedFor") & (df["verdict"] == "yes")).tolist()
    rows = charts.rows_for_selection(df, "kept_rate", [{"x": "isA"}, {"x": "can"}])
    assert rows.tolist() == np.flatnonzero(df["relation"].isin(["isA", "can"])).tolist()
    rows = charts.rows_for_selection(df, "heatmap", [{"x": "usedFor", "y": "clothing"}])
    assert len(rows) == ((df["relation"] == "usedFor") & (df["category"] == "clothing")).sum() > 0
    lengths = aggregate.intention_lengths(df)
    data = aggregate.length_data(df, lengths=lengths)
    b = data[data["verdict"] == "filtered"].iloc[5]
    rows = charts.rows_for_selection(
        df, "lengths", [{"customdata": [b.bin_left, b.bin_right], "legendgroup": "filtered"}], lengths=lengths
    )
    assert len(rows) == b["count"]
    assert charts.rows_for_selection(df, "map", [{"customdata": [7]}, {"customdata": [3]}]).tolist() == [3, 7]
    assert charts.rows_for_selection(df, "map", []) is None


def test_figures_have_the_data(sample_kb):
    data = aggregate.relation_verdict_data(sample_kb.intentions)
    fig = charts.fig_relation_stacked(data)
    assert [t.name for t in fig.data] == ["kept", "filtered"]  # no unjudged rows in the sample
    assert list(fig.data[0].y) == data["kept"].tolist() and len(fig.data[0].x) == 20
    rate = charts.fig_kept_rate(data)
    assert max(rate.data[0].y) <= 1 and len(rate.data[0].x) == 20
    heat = charts.fig_heatmap(aggregate.category_relation_data(sample_kb.intentions))
    assert np.asarray(heat.data[0].z).sum() == 3397


def test_display_escapes_markdown_and_html():
    raw = "**bold** <b>x</b> [a](http://e) :smile: $x$ # h _i_ &amp;"
    esc = md_escape(raw)
    for ch in ("\\*\\*", "\\<b\\>", "\\[a\\]", "\\:smile\\:", "\\$x\\$", "\\#", "\\_i\\_", "\\&amp;"):
        assert ch in esc
    assert md_escape(None) == "" and md_escape("a\nb") == "a  \nb"
    assert [verdict_badge(v) for v in ("yes", "no", None, "maybe")] == [
        ":green-badge[kept]",
        ":red-badge[filtered]",
        ":gray-badge[unjudged]",
        ":gray-badge[unjudged]",
    ]
    assert page_slice(51, 3, 25) == (50, 51, 3) and page_slice(0, 1, 25) == (0, 0, 1) and page_slice(10, 9, 5)[0] == 5


def test_results_table_titles(sample_kb):
    hits = sample_kb.intentions.head(3).assign(score=[0.9, 0.8, 0.7])
    table = results_table(hits, sample_kb.products["title"])
    assert table["title_a"].iloc[0] == "Classic Aviator Hat - Pilot Aviator Cap - Vintage WWII Hat Funny Party Hats"
    assert table["verdict"].tolist() == ["filtered" if v == "no" else "kept" for v in hits["verdict"]]
    nook = sample_kb.intentions[sample_kb.intentions["asin_b"] == "0594296420"].assign(score=1.0)
    assert len(nook) == 1  # title "Barnes &amp; Noble Power Adapter…" in the metadata
    assert results_table(nook, sample_kb.products["title"])["title_b"].iloc[0].startswith("Barnes & Noble Power")


def test_tables_show_the_informative_part_and_export_the_full_text(sample_kb):
    from dashboard.presenters.tables import export_view

    hits = sample_kb.intentions.head(5).assign(score=1.0)
    table = results_table(hits, sample_kb.products["title"])
    full = hits["intention"].tolist()
    assert all(t.startswith("The potential co-buy intention") for t in full)
    assert table["intention_full"].tolist() == full
    assert not any(t.startswith("The potential co-buy intention") for t in table["intention"])
    assert table["intention"].iloc[0].startswith("The consumer is looking for a versatile and stylish winter hat")
    exported = export_view(table)
    assert exported["intention"].tolist() == full and "intention_full" not in exported
