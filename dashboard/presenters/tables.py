"""Tables the pages show: search hits with both titles, and paging.

Display rule (README, "Browsing MIND's text"): the ``intention`` column shows the informative part
(:func:`mind_core.schema.intention_body`, MIND's "The potential co-buy intention ... could be that" opening removed);
the full text travels along in ``intention_full`` (hidden on the pages, see :data:`HIDDEN`) and is what
:func:`export_view` puts back for downloads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.presenters.text import clean_title
from mind_core.schema import intention_body, verdict_label

RESULT_COLUMNS = [
    "score",
    "relation",
    "verdict",
    "intention",
    "title_a",
    "title_b",
    "p_yes",
    "category",
    "asin_a",
    "asin_b",
    "intention_id",
    "intention_full",
]
#: column_config entries that hide the full-text column in st.dataframe
HIDDEN = {"intention_full": None}


def results_table(hits: pd.DataFrame, titles: pd.Series) -> pd.DataFrame:
    """Search hits as shown (and exported): score, relation, kept/filtered, intention, both titles, ids."""
    out = pd.DataFrame(
        {
            "score": hits["score"].round(4) if "score" in hits else np.nan,
            "relation": hits["relation"].astype(object),
            "verdict": [verdict_label(v) for v in hits["verdict"].astype(object)],
            "intention": [intention_body(t) for t in hits["intention"].astype(object)],
            "title_a": [clean_title(t) for t in hits["asin_a"].map(titles)],
            "title_b": [clean_title(t) for t in hits["asin_b"].map(titles)],
            "p_yes": hits["p_yes"].astype(float),
            "category": hits["category"].astype(object),
            "asin_a": hits["asin_a"].astype(object),
            "asin_b": hits["asin_b"].astype(object),
            "intention_id": hits["intention_id"].astype(object),
            "intention_full": hits["intention"].astype(object),
        }
    )
    for extra in ("cosine", "bm25"):
        if extra in hits:
            out.insert(1, extra, hits[extra].round(4).to_numpy())
    return out.reset_index(drop=True)


def export_view(table: pd.DataFrame) -> pd.DataFrame:
    """A shown table as downloaded: the full intention text in ``intention``, no ``intention_full``."""
    if "intention_full" not in table:
        return table
    return table.assign(intention=table["intention_full"]).drop(columns=["intention_full"])


def page_slice(n: int, page: int, page_size: int) -> tuple[int, int, int]:
    """(start, stop, n_pages) of 1-based ``page`` (clamped) for ``n`` rows."""
    n_pages = max(1, -(-n // page_size))
    page = min(max(1, int(page)), n_pages)
    start = (page - 1) * page_size
    return start, min(n, start + page_size), n_pages
