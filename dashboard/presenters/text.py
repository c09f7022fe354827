"""Safe, plain presentation of KB text for the pages (pure functions): the one Markdown escape of the dashboard.

Intentions, reasons, titles, descriptions, categories and ASINs are model output or scraped metadata; question
files, server answers, error messages and typed paths come from outside too. Any of them may contain Markdown or
HTML. Pages never render them as HTML, and every such text that reaches an element rendering Markdown
(``st.markdown``, captions, alerts, headings, button / expander / widget labels) goes through this module:

* :func:`md` — ``md("**{}** · {}", relation, intention)``: the template is page text, every value is escaped
  (numbers format as usual; a value already made safe here, :class:`Md`, is kept);
* :func:`md_escape` — one value: ``*``, ``_``, ``#``, ``<b>``, ``[x](y)``, ``![x](y)``, ``:emoji:``, ``$math$``
  show literally;
* :func:`md_code` — one value as an inline code span that no backtick in the value can break out of.

``tests/dashboard/test_app_hostile.py`` opens every page on a KB full of such text and fails on any left unescaped.
"""

from __future__ import annotations

import html
import re

import numpy as np

from mind_core.schema import verdict_label

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~:$<&])")

_BADGE_COLOUR = {"kept": "green", "filtered": "red", "unjudged": "gray"}


class Md(str):
    """Markdown that is safe to render as it is: made by :func:`md`, :func:`md_escape` or :func:`md_code`."""


def md_escape(text: object) -> Md:
    """Backslash-escape every Markdown/HTML-significant character (also ``&``, ``<`` so entities stay literal)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return Md("")
    if isinstance(text, Md):
        return text
    return Md(_MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", "  \n"))


def md_code(text: object) -> Md:
    """``text`` as one inline code span (shown literally: no link, image, HTML or emoji inside it works). The
    fence is one backtick longer than the longest run of backticks in ``text``, so none of them closes it; line
    breaks become spaces."""
    s = " ".join(("" if text is None else str(text)).splitlines()) or " "
    fence = "`" * (max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or (s.startswith(" ") and s.endswith(" ")) else ""
    return Md(f"{fence}{pad}{s}{pad}{fence}")


def _safe_value(value: object) -> object:
    if isinstance(value, Md) or (
        isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ):
        return value
    return md_escape(value)


def md(template: str, *args: object, **kwargs: object) -> Md:
    """``template.format(...)`` with every argument escaped by :func:`md_escape` (numbers and :class:`Md` values
    as they are): the page writes the Markdown, the values can never add any."""
    return Md(template.format(*(_safe_value(a) for a in args), **{k: _safe_value(v) for k, v in kwargs.items()}))


def clean_title(text: object) -> str:
    """Product titles in Amazon metadata carry HTML entities (``Barnes &amp; Noble``): decode them for display."""
    return "" if text is None or (isinstance(text, float) and np.isnan(text)) else html.unescape(str(text))


def plot_text(text: object) -> str:
    """KB text for a plotly label (tick, legend, bar text): HTML-escaped, since plotly renders ``<a href>``,
    ``<b>`` and friends in its labels and decodes entities for display."""
    return html.escape("" if text is None else str(text))


def hover_escape(text: object, limit: int = 140) -> str:
    """Short, HTML-escaped text for plotly hover labels."""
    s = "" if text is None else str(text)
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return html.escape(s)


def verdict_badge(verdict: object) -> str:
    """A Markdown badge for a verdict: green "kept", red "filtered", grey "unjudged"."""
    label = verdict_label(verdict)
    return f":{_BADGE_COLOUR[label]}-badge[{label}]"
