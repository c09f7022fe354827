"""Safe, plain presentation of KB text for the pages (pure functions, no Streamlit import).

Intentions, reasons, titles and descriptions are model output or scraped metadata: they may contain Markdown or
HTML characters. Pages never render them as HTML; text shown through ``st.markdown`` goes through
:func:`md_escape` first, so ``*``, ``_``, ``#``, ``<b>``, ``[x](y)``, ``:emoji:``, ``$math$`` show literally.
"""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~:$<&])")

VERDICT_TEXT = {"yes": "kept", "no": "filtered"}
VERDICT_BADGE = {"yes": ":green-badge[kept]", "no": ":red-badge[filtered]"}
UNJUDGED_BADGE = ":gray-badge[unjudged]"


def md_escape(text: object) -> str:
    """Backslash-escape every Markdown/HTML-significant character (also ``&``, ``<`` so entities stay literal)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", "  \n")


def clean_title(text: object) -> str:
    """Product titles in Amazon metadata carry HTML entities (``Barnes &amp; Noble``): decode them for display."""
    return "" if text is None or (isinstance(text, float) and np.isnan(text)) else html.unescape(str(text))


def hover_escape(text: object, limit: int = 140) -> str:
    """Short, HTML-escaped text for plotly hover labels."""
    s = "" if text is None else str(text)
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return html.escape(s)


def verdict_text(verdict: object) -> str:
    return VERDICT_TEXT.get(verdict, "unjudged") if isinstance(verdict, str) else "unjudged"


def verdict_badge(verdict: object) -> str:
    return VERDICT_BADGE.get(verdict, UNJUDGED_BADGE) if isinstance(verdict, str) else UNJUDGED_BADGE


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
]


def results_table(hits: pd.DataFrame, titles: pd.Series) -> pd.DataFrame:
    """Search hits as shown (and exported): score, relation, kept/filtered, intention, both titles, ids."""
    out = pd.DataFrame(
        {
            "score": hits["score"].round(4) if "score" in hits else np.nan,
            "relation": hits["relation"].astype(object),
            "verdict": [verdict_text(v) for v in hits["verdict"].astype(object)],
            "intention": hits["intention"].astype(object),
            "title_a": [clean_title(t) for t in hits["asin_a"].map(titles)],
            "title_b": [clean_title(t) for t in hits["asin_b"].map(titles)],
            "p_yes": hits["p_yes"].astype(float),
            "category": hits["category"].astype(object),
            "asin_a": hits["asin_a"].astype(object),
            "asin_b": hits["asin_b"].astype(object),
            "intention_id": hits["intention_id"].astype(object),
        }
    )
    for extra in ("cosine", "bm25"):
        if extra in hits:
            out.insert(1, extra, hits[extra].round(4).to_numpy())
    return out.reset_index(drop=True)


def page_slice(n: int, page: int, page_size: int) -> tuple[int, int, int]:
    """(start, stop, n_pages) of 1-based ``page`` (clamped) for ``n`` rows."""
    n_pages = max(1, -(-n // page_size))
    page = min(max(1, int(page)), n_pages)
    start = (page - 1) * page_size
    return start, min(n, start + page_size), n_pages
