"""Categories: the paper's intention categories (the 20 relation types) and product categories, as interactive
charts. Selecting bars, heatmap cells or map points filters the table of intentions below (selections on several
charts intersect)."""

import numpy as np
import streamlit as st

from dashboard import ui
from dashboard.presenters import charts
from dashboard.presenters.tables import HIDDEN, results_table
from dashboard.presenters.text import hover_escape, md_escape
from mind_core.kb.store import KBError
from mind_core.query import aggregate, embedmap
from mind_core.query.keyword import keyword_index
from mind_core.query.products import product_index
from mind_core.schema import intention_body

kb = ui.render_sidebar()
st.title("Intention categories")
if kb is None:
    st.stop()
kb_key = ui.kb_cache_key(kb)


@st.cache_data(show_spinner=False, max_entries=2)
def relation_data(_kb, kb_key: str):
    return aggregate.relation_verdict_data(_kb.intentions)


@st.cache_resource(show_spinner=False, max_entries=4)
def heat_category(_kb, kb_key: str, by: str):
    if by == "intention":
        return None
    return aggregate.product_category_of_a(_kb.intentions, _kb.products, product_index(_kb).a_pos)


@st.cache_data(show_spinner=False, max_entries=4)
def heat_data(_kb, kb_key: str, by: str):
    return aggregate.category_relation_data(_kb.intentions, heat_category(_kb, kb_key, by))


@st.cache_resource(show_spinner=False, max_entries=2)
def lengths(_kb, kb_key: str) -> np.ndarray:
    kw = keyword_index(_kb)  # per-text token counts, precomputed with the keyword index
    return kw.doc_len[kw.row_text].astype(np.int64)


@st.cache_data(show_spinner=False, max_entries=2)
def length_data(_kb, kb_key: str):
    return aggregate.length_data(_kb.intentions, lengths=lengths(_kb, kb_key))


@st.cache_resource(show_spinner="Projecting embeddings…", max_entries=2)
def emb_map(_kb, kb_key: str):
    return embedmap.kb_map(_kb, max_points=4000, n_clusters=12)


rel = relation_data(kb, kb_key)
c = kb.counts()
st.caption(
    f"{c['intentions']:,} intentions · {len(rel)} relation types · "
    f"kept rate {c['kept'] / max(1, c['kept'] + c['filtered']):.1%} overall. "
    "Click or box/lasso-select marks to filter the table at the bottom."
)

selections: dict[str, np.ndarray] = {}


def chart(fig, key: str, chart_kind: str, **kw):
    event = st.plotly_chart(fig, key=key, on_select="rerun", selection_mode=("points", "box", "lasso"))
    points = event.selection.points if event is not None else []
    rows = charts.rows_for_selection(kb.intentions, chart_kind, points, **kw)
    if rows is not None:
        selections[key] = rows


left, right = st.columns(2)
with left:
    chart(charts.fig_relation_stacked(rel), "relation_chart", "relation")
with right:
    chart(charts.fig_kept_rate(rel), "kept_rate_chart", "kept_rate")

by = st.radio(
    "Heatmap rows",
    ["intention", "product"],
    horizontal=True,
    key="heat_by",
    format_func={"intention": "intention category", "product": "product category (product A)"}.get,
)
chart(
    charts.fig_heatmap(
        heat_data(kb, kb_key, by), f"{'Intention' if by == 'intention' else 'Product'} category × relation"
    ),
    f"heatmap_{by}",
    "heatmap",
    category=heat_category(kb, kb_key, by),
)
chart(charts.fig_lengths(length_data(kb, kb_key)), "lengths_chart", "lengths", lengths=lengths(kb, kb_key))

m = None
if kb.manifest.get("embed_dim") and (kb.path / "embeddings.npy").exists():
    try:
        m = emb_map(kb, kb_key)
    except KBError as err:  # a damaged embeddings.npy: no map, the rest of the page works
        st.error(md_escape(ui.one_line(err)))
if m is not None:
    color_by = st.radio("Colour the map by", ["topic cluster", "relation"], horizontal=True, key="map_color")
    color = (
        np.asarray(m.labels, dtype=object)[m.cluster]
        if color_by == "topic cluster"
        else kb.intentions["relation"].astype(object).to_numpy()[m.rows]
    )
    hover = [hover_escape(intention_body(t)) for t in kb.intentions["intention"].iloc[m.rows]]
    chart(charts.fig_map(m, color, color_by, hover), "map_chart", "map")
    st.caption(
        "Topic clusters: FAISS spherical k-means (12) on the sampled embeddings, labelled by class-based "
        "TF-IDF top words; axes: PCA of the same sample."
    )
elif not (kb.path / "embeddings.npy").exists():
    st.info("This KB has no embeddings.npy, so there is no embedding map. Rebuild it with build-kb --force.")

st.subheader("Matching intentions", anchor=False)
if selections:
    rows = None
    for r in selections.values():
        rows = r if rows is None else np.intersect1d(rows, r)
    st.caption(
        f"Selection in {', '.join(k.replace('_chart', '') for k in selections)}: {len(rows):,} intentions "
        "(first 500 shown)."
    )
    subset = kb.intentions.iloc[rows[:500]]
else:
    st.caption("Nothing selected: the first 500 intentions of the KB.")
    subset = kb.intentions.iloc[:500]
table = results_table(subset.assign(score=np.nan), kb.products["title"]).drop(columns=["score"])
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    key="category_rows",
    column_config={"intention": st.column_config.TextColumn(width="large"), **HIDDEN},
)
