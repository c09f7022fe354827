"""Home: what is loaded, and where to go next."""

import streamlit as st

from dashboard import ui
from dashboard.presenters.text import md, md_code
from mind_core.query.aggregate import verdict_counts

kb = ui.render_sidebar()

st.title("MIND Explorer")
st.write(
    "Multimodal shopping-intention knowledge, after **MIND** (Xu et al., EMNLP 2024): a vision-language model "
    "looks at two co-bought products and writes *why a person would buy both*, one intention per relation type; "
    "a role-aware filter then asks the model, as the shopper, whether that intention would really make them buy both."
)
if kb is not None:
    c = kb.counts()
    cols = st.columns(5)
    cols[0].metric("Intentions", f"{c['intentions']:,}")
    cols[1].metric("Co-buy pairs", f"{c['pairs']:,}")
    cols[2].metric("Products", f"{c['products']:,}")
    cols[3].metric("Kept by the filter", f"{c['kept']:,}")
    cols[4].metric("Relation types", f"{c['relations']:,}")
    m = kb.manifest
    st.caption(
        md(
            "KB folder {} · built {} · embeddings {} ({}-d, {}) · FAISS {}",
            md_code(kb.path),
            m.get("built_at"),
            md_code(m.get("embed_model")),
            m.get("embed_dim"),
            kb.embed_backend,
            md_code(m.get("index_factory")),
        )
    )
    st.subheader("Intentions per relation")
    st.dataframe(
        verdict_counts(kb.intentions, "relation"),
        hide_index=True,
        width="stretch",
        column_config={"kept_rate": st.column_config.NumberColumn("kept rate", format="percent")},
    )

others = [p for p in ui.PAGES if p[0] != "dashboard/views/home.py"]
if others:
    st.subheader("Go to")
    for script, title, icon, _url, purpose in others:
        st.page_link(script, label=f"{title} — {purpose}", icon=icon)
