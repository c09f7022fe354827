"""Streamlit glue of the human review that more than one page needs: the review database of this dashboard and the
Filter thresholds page's choice of ground truth (the filter's verdicts or the human labels)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import ui
from dashboard.presenters.review import human_truth
from dashboard.presenters.text import md
from mind_core.review.store import ReviewDBError, ReviewStore, kb_id_of, open_store

#: how the thresholds page's captions name each ground truth: (the positive class, the rows without one, short name)
TRUTH_VERDICT = ('the recorded verdict "yes"', "unjudged rows", "the verdicts")
TRUTH_HUMAN = (
    'the human label "plausible" (the majority of the Review page\'s answers)',
    "rows nobody rated (or with tied answers)",
    "the human labels",
)


def review_store() -> ReviewStore | None:
    """The review database of the settings (``MIND_REVIEW_DB``), or None after an error line."""
    try:
        return open_store(ui.settings().review_db_url)
    except ReviewDBError as err:
        st.error(md("The review database cannot be opened: {}", ui.one_line(err)))
        return None


def ground_truth_choice(kb) -> tuple[pd.Series, tuple, tuple[str, str, str]]:
    """A radio "Ground truth" (only when people rated intentions of this KB): ``(labels aligned with the rows,
    a cache key for them, how the captions name them: TRUTH_VERDICT or TRUTH_HUMAN)``."""
    verdicts = kb.intentions["verdict"]
    store = review_store()
    if store is None:
        return verdicts, ("verdict",), TRUTH_VERDICT
    kb_id = kb_id_of(kb)
    signature = store.signature(kb_id)
    if not signature[0]:
        return verdicts, ("verdict",), TRUTH_VERDICT
    choice = st.radio(
        "Ground truth",
        ["verdict", "human"],
        horizontal=True,
        key="truth",
        format_func={"verdict": "MIND's filter (verdicts)", "human": f"people ({signature[0]:,} answers)"}.get,
        help="Measure the thresholds against the filter's recorded yes/no, or against the human labels of the "
        "Review page (intentions nobody rated count in the kept numbers only).",
    )
    if choice == "verdict":
        return verdicts, ("verdict",), TRUTH_VERDICT
    return human_truth(kb.intentions, store.answers(kb_id)), ("human", *signature), TRUTH_HUMAN
