"""Products: find a product, see its card, its co-buy partners and the intentions for each pair.

Deep link: ``/products?asin=<ASIN>``; opening a partner moves there and updates the URL.
"""

import streamlit as st

from dashboard import ui
from dashboard.presenters.tables import page_slice
from dashboard.presenters.text import clean_title, md, md_escape, verdict_badge
from mind_core import images
from mind_core.query import products as lookups
from mind_core.schema import intention_body

PARTNERS_PER_PAGE = 10

kb = ui.render_sidebar()
st.title("Products")
if kb is None:
    st.stop()
kb_key = ui.kb_cache_key(kb)


@st.cache_data(show_spinner=False, max_entries=256)
def find(_kb, kb_key: str, text: str):
    return lookups.find_products(_kb, text, limit=50)


@st.cache_data(show_spinner=False, max_entries=1)
def most_connected(_kb, kb_key: str, n: int = 10):
    idx = lookups.product_index(_kb)
    counts = idx.offsets[1:] - idx.offsets[:-1]
    top = counts.argsort(kind="stable")[::-1][:n]
    return [(str(idx.asins[i]), int(counts[i])) for i in top]


def open_product(asin: str) -> None:
    st.query_params["asin"] = asin
    st.session_state.pop("product_pick", None)


asin = st.query_params.get("asin", "")

typed = st.text_input(
    "Find a product by title words or ASIN", key="product_query", placeholder="e.g. aviator hat, or B004I41M6K"
)
if typed.strip():
    found = find(kb, kb_key, typed)
    if found.empty:
        st.info(md("No product title contains all of: '{}'. Try fewer or other words.", typed.strip()))
    else:
        labels = {f"{clean_title(t)[:110]} · {a}": a for a, t in zip(found["asin"], found["title"])}
        pick = st.selectbox(
            f"{len(found)} matching products" + (" (first 50)" if len(found) == 50 else ""),
            list(labels),
            index=None,
            key="product_pick",
            placeholder="choose one…",
        )
        if pick and labels[pick] != asin:
            open_product(labels[pick])
            st.rerun()

if not asin:
    st.write("Choose a product above, or start from one of the most connected products:")
    for a, n in most_connected(kb, kb_key):
        title = clean_title(kb.products["title"].get(a, ""))
        if st.button(md("{} · {} intentions", title[:100] or a, n), key=f"top_{a}"):
            open_product(a)
            st.rerun()
    st.stop()

product = kb.product(asin)
if product is None:
    st.warning(md("No product with ASIN '{}' in this KB. Search for it by title above.", asin))
    st.stop()

img_col, info_col = st.columns([1, 3])
with img_col:
    image, why = images.fetch_first_image((product["image_urls"] or [])[:2], timeout=2.0)
    if image is None:
        st.image(images.placeholder_image((256, 256)), width=220)
        st.caption("Image unavailable (network or URL); showing a placeholder.")
    else:
        st.image(image, width=220)
with info_col:
    st.header(md_escape(clean_title(product["title"])) or asin, anchor=False)
    st.caption(f"ASIN {md_escape(asin)} · category {md_escape(product['category'] or 'unknown')}")
    if product["description"]:
        with st.expander("Description (stage-1 model output)", expanded=True):
            st.markdown(md_escape(product["description"]))

kept_only = st.toggle("Kept only (intentions the filter accepted)", key="kept_only")
partners = lookups.product_partners(kb, asin, kept_only=kept_only)
rows = lookups.product_intentions(kb, asin, kept_only=kept_only)
st.subheader(f"Co-buy partners ({len(partners):,}) · {len(rows):,} intentions", anchor=False)
if partners.empty:
    st.info("No intentions for this product" + (" were kept by the filter." if kept_only else "."))
    st.stop()

page = 1
start, stop, n_pages = page_slice(len(partners), 1, PARTNERS_PER_PAGE)
if n_pages > 1:
    page = st.number_input(f"Partner page (of {n_pages})", min_value=1, max_value=n_pages, value=1, key="partner_page")
    start, stop, n_pages = page_slice(len(partners), page, PARTNERS_PER_PAGE)

for prow in partners.iloc[start:stop].itertuples(index=False):
    with st.container(border=True):
        head, btn = st.columns([5, 1])
        head.markdown(
            f"**{md_escape(clean_title(prow.title) or prow.asin)}**  \n"
            f"{md_escape(prow.asin)} · {prow.intentions} intentions · {prow.kept} kept"
        )
        if btn.button("Open partner →", key=f"open_{prow.asin}"):
            open_product(prow.asin)
            st.rerun()
        pair_rows = rows[rows["partner"] == prow.asin].sort_values("relation", kind="stable")
        for r in pair_rows.itertuples(index=False):
            body = intention_body(r.intention)
            st.markdown(f"{verdict_badge(r.verdict)} **{md_escape(r.relation)}** — {md_escape(body)}")
            has_reason = isinstance(r.reason, str) and bool(r.reason.strip())
            tail = r.tail if isinstance(r.tail, str) and r.tail.strip() else None
            if has_reason or body != r.intention or tail:
                label = (
                    "Details: full text" + (", filter's reason" if has_reason else "") + (", lineage" if tail else "")
                )
                with st.expander(label):
                    st.markdown(md("**Intention (full text)**: {}", r.intention))
                    if has_reason:
                        st.markdown(md("**Filter's reason**: {}", r.reason))
                    if tail:
                        st.caption(md("Sampled from the FolkScope assertion: {}", tail))
