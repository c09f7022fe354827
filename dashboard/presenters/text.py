"""Safe, plain presentation of KB text for the pages (pure functions).

Intentions, reasons, titles and descriptions are model output or scraped metadata: they may contain Markdown or
HTML characters. Pages never render them as HTML; text shown through ``st.markdown`` goes through
:func:`md_escape` first, so ``*``, ``_``, ``#``, ``<b>``, ``[x](y)``, ``:emoji:``, ``$math$`` show literally.
"""

from __future__ import annotations

import html
import re

import numpy as np

from mind_core.schema import verdict_label

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~:$<&])")

_BADGE_COLOUR = {"kept": "green", "filtered": "red", "unjudged": "gray"}


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


def verdict_badge(verdict: object) -> str:
    """A Markdown badge for a verdict: green "kept", red "filtered", grey "unjudged"."""
    label = verdict_label(verdict)
    return f":{_BADGE_COLOUR[label]}-badge[{label}]"
