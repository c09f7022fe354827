"""Review: rate intentions as MIND's annotators did (plausibility 0/1, typicality 1-5), one click per answer; and
what the ratings say about the annotators' agreement, MIND's filter and the scores.

Answers go to the review database (``MIND_REVIEW_DB``, default ``<MIND_USER_DATA>/review.sqlite``) the moment a
button is clicked; the filter's verdict, its reason and every score stay hidden while rating.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import review_ui, ui
from dashboard.presenters import review as present
from dashboard.presenters.products import product_choices
from dashboard.presenters.text import md, md_escape
from mind_core import images
from mind_core.kb.store import load_scores, rescore_signature
from mind_core.review import protocol
from mind_core.review.analysis import review_report
from mind_core.review.exchange import answers_table, write_human_labels
from mind_core.review.protocol import AnswerError
from mind_core.review.queue import QUEUES, UNCERTAIN_SCORES, QueueError, next_unrated, queue_order, remaining
from mind_core.review.store import kb_id_of
from mind_core.schema import now_utc
from mind_core.scores import SCORE_DEFS

ANNOTATOR_KEY = "review_annotator"
LAST_KEY = "review_last"  # (intention id, what was answered) of this session's latest answer, for the undo line
SKIPPED_KEY = "review_skipped"
_prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-prefetch")

kb = ui.render_sidebar()
st.title("Review")
if kb is None:
    st.stop()
kb_key = ui.kb_cache_key(kb)
kb_id = kb_id_of(kb)
base = ui.settings()
store = review_ui.review_store()
if store is None:
    st.stop()


@st.cache_resource(show_spinner="Loading scores…", max_entries=2)
def scores_of(_kb, kb_key: str, signature: tuple) -> pd.DataFrame:
    return load_scores(_kb)


@st.cache_data(show_spinner=False, max_entries=32)
def order_of(_kb, kb_key: str, kind: str, score: str | None, asin: str | None, signature: tuple) -> np.ndarray:
    s = scores_of(_kb, kb_key, signature)[score] if score else None
    return queue_order(_kb.intentions, kind, scores=s, asin=asin)


@st.cache_data(show_spinner=False, max_entries=1)
def intention_ids(_kb, kb_key: str) -> np.ndarray:
    return _kb.intentions["intention_id"].astype(str).to_numpy(dtype=object)


signature = (rescore_signature(kb.path), kb.manifest.get("scores", {}).get("critic", {}).get("sha256"))
mode = st.radio("Mode", ["Rate", "Results"], horizontal=True, key="review_mode", label_visibility="collapsed")


def render_results() -> None:
    answers = store.answers(kb_id)
    st.caption(md("Review database: {} · KB id {}", store.describe(), kb_id))
    if answers.empty:
        st.info("No answers on this KB yet: rate a few intentions first (Rate above).")
        return
    fingerprint = int(pd.util.hash_pandas_object(answers.astype(str), index=False).sum())
    report = results(kb, kb_key, signature, fingerprint, answers)
    cols = st.columns(4)
    cols[0].metric("answers", f"{report['answers']:,}")
    cols[1].metric("annotators", len(report["annotators"]))
    cols[2].metric("intentions rated", f"{report['items_rated']:,}")
    share = report["plausible_share"]
    cols[3].metric("plausible (majority)", "–" if share is None else f"{share:.1%}")
    st.subheader("Agreement between annotators", anchor=False)
    st.caption(
        "Krippendorff's alpha over the intentions at least two annotators rated (nominal for plausibility, ordinal "
        "for typicality); Cohen's kappa when there are exactly two annotators (quadratic weights for typicality). "
        "Intervals: 95 % percentile bootstrap over intentions. 1 = perfect agreement, 0 = chance."
    )
    st.dataframe(present.agreement_table(report), hide_index=True, key="review_agreement")
    st.subheader("People vs MIND's filter", anchor=False)
    f = report["filter"]
    st.caption(
        "On judged intentions with a human label (the majority of the plausibility answers; ties are left out): "
        "precision of kept = share of the filter's kept intentions people find plausible; recall = share of the "
        "plausible ones the filter kept."
        + (
            ""
            if f["precision_kept_ci95"][0] is None
            else f" Overall precision 95 % CI {f['precision_kept_ci95'][0]:.3f}–{f['precision_kept_ci95'][1]:.3f}, "
            f"recall {f['recall_ci95'][0]:.3f}–{f['recall_ci95'][1]:.3f}."
        )
    )
    st.dataframe(present.filter_table(report), hide_index=True, key="review_filter")
    st.subheader("People vs scores", anchor=False)
    st.caption("ROC AUC of each score against the human label (0.5 = no better than chance), 95 % bootstrap CI.")
    st.dataframe(
        present.scores_table(report, {k: d.label for k, d in SCORE_DEFS.items()}), hide_index=True, key="review_scores"
    )
    table = answers_table(answers).to_pandas()
    st.download_button(
        "Download the answers (CSV)",
        table.to_csv(index=False).encode("utf-8"),
        file_name=f"review-{kb_id}.csv",
        mime="text/csv",
        key="review_download",
    )
    if not base.is_shared and st.button("Write human labels for the critic", key="review_labels"):
        path, n = write_human_labels(answers, kb.path)
        st.success(md("Wrote {} labels to {}: train with `critic train --labels human`.", n, str(path)))


@st.cache_data(show_spinner="Computing agreement…", max_entries=8)
def results(_kb, kb_key: str, signature: tuple, fingerprint: int, _answers: pd.DataFrame) -> dict:
    return review_report(_answers, _kb.intentions, scores_of(_kb, kb_key, signature))


if mode == "Results":
    render_results()
    st.stop()

# --- rating ----------------------------------------------------------------------------------------------------
typed = st.text_input(
    "Your name (answers are stored under it)",
    key=ANNOTATOR_KEY,
    persist_state="session",
    placeholder="e.g. alice",
    help="Kept for this browser session. The same name in another session adds to the same answers.",
)
if not typed.strip():
    st.info("Type your name to start rating. Another person rates in their own browser under their own name.")
    st.stop()
try:
    annotator = protocol.check_annotator(typed)
except AnswerError as err:
    st.error(md("Name: {}", str(err)))
    st.stop()

left, right = st.columns([2, 3])
kind = left.selectbox(
    "Queue",
    list(QUEUES),
    key="review_queue",
    persist_state="session",
    format_func=lambda k: QUEUES[k].label,
    help=QUEUES["random"].help,
)
score = asin = None
if kind == "uncertain":
    sc = scores_of(kb, kb_key, signature)
    usable = [k for k in UNCERTAIN_SCORES if k in sc.columns and sc[k].notna().any()]
    if not usable:
        st.warning("This KB has no critic P(keep) and no P(yes): pick another queue (or run critic score).")
        st.stop()
    score = right.selectbox("Uncertain by", usable, key="review_score", format_func=lambda k: SCORE_DEFS[k].label)
elif kind == "product":
    choices = product_choices(kb)
    pick = right.selectbox("Product", list(choices), index=None, key="review_product", placeholder="choose one…")
    if pick is None:
        st.info("Choose the product whose intentions to rate.")
        st.stop()
    asin = choices[pick]
st.caption(QUEUES[kind].help + ". Every annotator gets the same order, so your answers overlap with the others'.")

try:
    order = order_of(kb, kb_key, kind, score, asin, signature)
except QueueError as err:
    st.warning(md("{}", str(err)))
    st.stop()
ids = intention_ids(kb, kb_key)
rated = store.rated_ids(kb_id, annotator)
skipped = st.session_state.setdefault(SKIPPED_KEY, set())
left_in_queue = remaining(order, ids, rated)
done = len(order) - left_in_queue
st.progress(
    done / len(order) if len(order) else 1.0,
    text=f"{done:,} of {len(order):,} rated in this queue · {len(rated):,} answers by you on this KB",
)


def answer(intention_id: str, plausibility: int, typicality: int | None) -> None:
    comment = st.session_state.get("review_comment") or None
    try:
        a = protocol.check_answer(intention_id, annotator, plausibility, typicality, comment, now=now_utc())
    except AnswerError as err:
        st.session_state[LAST_KEY] = ("error", str(err))
        return
    store.put(kb_id, [a])
    st.session_state["review_comment"] = ""
    what = "not plausible" if not plausibility else f"plausible, typicality {typicality}"
    st.session_state[LAST_KEY] = ("saved", f"{intention_id}: {what}")


def undo() -> None:
    row = store.undo_last(kb_id, annotator)
    st.session_state[LAST_KEY] = ("undone", row["intention_id"] if row else None)


def skip(intention_id: str) -> None:
    st.session_state[SKIPPED_KEY].add(intention_id)


nxt = next_unrated(order, ids, rated | skipped, 2)
last = st.session_state.get(LAST_KEY)
bar = st.columns([4, 1])
if last and last[0] == "saved":
    bar[0].caption(md("Saved {}", last[1]))
elif last and last[0] == "undone":
    bar[0].caption(md("Undid your answer to {}: it is offered again.", last[1]) if last[1] else "Nothing to undo.")
elif last and last[0] == "error":
    bar[0].error(md("Not saved: {}", last[1]))
bar[1].button("↶ Undo last", key="review_undo", on_click=undo, disabled=not rated, width="stretch")

if not nxt:
    if skipped and left_in_queue:
        st.info(f"You skipped the {left_in_queue:,} intention(s) left in this queue in this session.")
        if st.button("Offer the skipped ones again", key="review_unskip"):
            skipped.clear()
            st.rerun()
    else:
        st.success("You have rated every intention of this queue. Pick another queue, or see Results above.")
    st.stop()

card = present.item_card(kb, nxt[0])
with st.container(border=True):
    cols = st.columns(2)
    for col, side, name in zip(cols, card.products, ("A", "B")):
        with col:
            image, _why = images.fetch_first_image(list(side.image_urls), timeout=2.0)
            st.image(image if image is not None else images.placeholder_image((160, 160)), width=140)
            st.markdown(md("**{}: {}**", name, side.title))
            st.caption(md("ASIN {}", side.asin))
            if side.description:
                with st.expander("Description"):
                    st.markdown(md_escape(side.description))
    st.markdown(md("**Relation:** {} ({})", card.relation, card.phrase))
    st.markdown(md("#### {}", card.body))
    if card.body != card.full_text:
        with st.expander("Full text of the intention"):
            st.markdown(md_escape(card.full_text))

st.markdown(md("**{}** / **{}**", protocol.PLAUSIBILITY_QUESTION, protocol.TYPICALITY_QUESTION))
buttons = st.columns(7)
buttons[0].button(
    "✗ Not plausible",
    key="review_no",
    on_click=answer,
    args=(card.intention_id, 0, None),
    width="stretch",
    help="Not a reason anyone would buy both: no typicality is recorded.",
)
for t in range(protocol.TYPICALITY_MIN, protocol.TYPICALITY_MAX + 1):
    buttons[t].button(
        f"✓ {t}",
        key=f"review_t{t}",
        on_click=answer,
        args=(card.intention_id, 1, t),
        width="stretch",
        help=f"Plausible; typicality {t}: {protocol.TYPICALITY_LABELS[t]}",
    )
buttons[6].button("Skip", key="review_skip", on_click=skip, args=(card.intention_id,), width="stretch")
st.caption(
    "✓ 1–5 = plausible, with its typicality: "
    + "; ".join(f"{t} {label}" for t, label in protocol.TYPICALITY_LABELS.items())
    + ". Skip leaves it unrated for this session."
)
st.text_input("Comment (optional, saved with your next answer)", key="review_comment")

if len(nxt) > 1:  # warm the image cache for the next card, so it appears at once
    following = present.item_card(kb, nxt[1])
    for side in following.products:
        _prefetch.submit(images.fetch_first_image, list(side.image_urls), timeout=2.0)
