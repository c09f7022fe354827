"""Search: semantic (FAISS), keyword (words / "phrases", BM25) or hybrid, with facets; open a row's product;
export the shown rows."""

import math

import streamlit as st

from dashboard import ui
from dashboard.presenters.tables import HIDDEN, export_view, page_slice, results_table
from dashboard.presenters.text import md, md_escape
from mind_core import query
from mind_core.kb.export import EXPORT_FORMATS, export_frame
from mind_core.kb.store import KBError
from mind_core.query.facets import Facets
from mind_core.query.semantic import index_available

PAGE_SIZE = 25
MODE_HELP = {
    "semantic": "by meaning, cosine similarity of MiniLM embeddings (FAISS); the first query loads the model",
    "keyword": 'exact words and "quoted phrases", all must occur; ranked by BM25',
    "hybrid": "0.5 · cosine + 0.5 · BM25 / max BM25 over the top semantic and keyword candidates",
}

kb = ui.render_sidebar()
st.title("Search intentions")
if kb is None:
    st.stop()
kb_key = ui.kb_cache_key(kb)


@st.cache_data(show_spinner=False, max_entries=1)
def facet_values(_kb, kb_key: str):
    df = _kb.intentions
    p = df["p_yes"]
    has_p = bool(p.notna().any())
    return (
        sorted(df["relation"].dropna().unique().tolist()),
        sorted(df["category"].dropna().unique().tolist()),
        has_p,
        (float(p.min()), float(p.max())) if has_p else (0.0, 1.0),
    )


@st.cache_data(show_spinner="Searching…", max_entries=64)
def run_search(_kb, kb_key: str, text: str, mode: str, k: int, facets: Facets):
    res = query.search(_kb, text, mode=mode, k=k, facets=facets)
    return results_table(res.hits, _kb.products["title"]), res.total, res.seconds


relations, categories, has_p, p_bounds = facet_values(kb, kb_key)

q_col, m_col = st.columns([3, 2])
text = q_col.text_input("Query", key="query", placeholder='e.g. keep warm in winter · or "phone case" screen')
mode = m_col.radio(
    "Mode", query.MODES, horizontal=True, key="mode", help="\n\n".join(f"**{m}**: {h}" for m, h in MODE_HELP.items())
)
st.caption(f"{mode}: {MODE_HELP[mode]}")

f1, f2, f3, f4 = st.columns(4)
rel = f1.multiselect("Relation", relations, key="f_relation")
cat = f2.multiselect("Intention category", categories, key="f_category")
ver = f3.multiselect("Verdict", ["kept", "filtered", "unjudged"], key="f_verdict")
if has_p:
    lo, hi = f4.slider("Filter score P(yes)", 0.0, 1.0, (0.0, 1.0), step=0.05, key="f_pyes")
    p_range = None if (lo, hi) == (0.0, 1.0) else (lo, hi)
else:
    f4.caption("Filter score P(yes): this KB has no scores (MIND sample verdicts are yes/no only).")
    p_range = None
k = st.select_slider("Results to rank", [50, 100, 200, 500, 1000], value=200, key="k")
facets = Facets(
    relations=tuple(rel),
    categories=tuple(cat),
    verdicts=tuple({"kept": "yes", "filtered": "no", "unjudged": "none"}[v] for v in ver),
    p_yes_range=p_range,
)

if not text.strip():
    st.info(
        'Type a query above: a description of a shopping intention for **semantic**, words or "quoted phrases" '
        "for **keyword**, or both for **hybrid**."
    )
    st.stop()
if mode != "keyword" and (missing := index_available(kb)):
    st.error(md_escape(missing))
    st.stop()
try:
    table, total, seconds = run_search(kb, kb_key, text, mode, k, facets)
except KBError as err:  # a damaged embeddings.npy / index.faiss: what and how to rebuild, in one line
    st.error(md_escape(ui.one_line(err)))
    st.stop()
except ValueError as err:
    st.warning(md_escape(err))
    st.stop()

if table.empty:
    hint = " or remove some facets" if facets.active else ""
    st.warning(
        md("No intentions match '{}' ({}). Try other words", text.strip(), mode)
        + hint
        + (", or semantic mode." if mode == "keyword" else ".")
    )
    st.stop()

more = f" (of {total:,} matches)" if mode == "keyword" and total > len(table) else ""
n_pages = math.ceil(len(table) / PAGE_SIZE)
page = st.number_input(f"Page (of {n_pages})", 1, n_pages, 1, key="page") if n_pages > 1 else 1
start, stop, _ = page_slice(len(table), page, PAGE_SIZE)
shown = table.iloc[start:stop]
st.caption(
    f"Rows {start + 1}–{stop} of the top {len(table):,}{more} · {seconds * 1000:.0f} ms. "
    "Select a row to open its product (A)."
)
event = st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key="results",
    column_config={
        "intention": st.column_config.TextColumn(width="large"),
        "score": st.column_config.NumberColumn(format="%.3f"),
        "p_yes": st.column_config.NumberColumn("P(yes)", format="%.2f"),
        **HIDDEN,
    },
)
selected = event.selection.rows if event is not None else []
if selected:
    st.switch_page("dashboard/views/products.py", query_params={"asin": shown.iloc[selected[0]]["asin_a"]})

e1, e2 = st.columns([1, 3])
fmt = e1.selectbox("Export format", EXPORT_FORMATS, key="export_fmt")
e2.download_button(
    f"Export these {len(shown)} rows as {fmt.upper()}",
    export_frame(export_view(shown), fmt),  # the full intention text
    file_name=f"mind-search-{mode}.{fmt}",
    mime={"csv": "text/csv", "jsonl": "application/jsonl", "parquet": "application/octet-stream"}[fmt],
    key="export",
)
