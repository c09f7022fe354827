"""Reading a built KB - one layer for every caller (pages, CLI, IntentionQA, the try page).

* :mod:`~mind_core.query.facets` - which rows a query looks at (relation, category, verdict, source, P(yes));
* :mod:`~mind_core.query.keyword` - exact words and phrases, BM25;
* :mod:`~mind_core.query.semantic` - the KB's encoder + FAISS (exact on small facet subsets);
* :mod:`~mind_core.query.hybrid` - both in one score;
* :mod:`~mind_core.query.products` - a product's intentions and partners, titles, product search;
* :mod:`~mind_core.query.aggregate` - counts per relation / category, the data behind the charts;
* :mod:`~mind_core.query.embedmap` - a 2-D map of the embeddings with topic clusters.

:func:`search` is the entry point of the three search modes.
"""

from __future__ import annotations

from mind_core.query.facets import Facets
from mind_core.query.hybrid import hybrid_search
from mind_core.query.keyword import keyword_search
from mind_core.query.results import SearchResult
from mind_core.query.semantic import semantic_search

MODES: tuple[str, ...] = ("semantic", "keyword", "hybrid")
_BY_MODE = {"semantic": semantic_search, "keyword": keyword_search, "hybrid": hybrid_search}

__all__ = ["MODES", "Facets", "SearchResult", "hybrid_search", "keyword_search", "search", "semantic_search"]


def search(kb, query: str, mode: str = "semantic", k: int = 200, facets: Facets | None = None) -> SearchResult:
    """The top ``k`` rows for ``query`` in ``mode`` (semantic / keyword / hybrid) within ``facets``."""
    if mode not in _BY_MODE:
        raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")  # k <= 0 once sliced the results
    return _BY_MODE[mode](kb, query, k=k, facets=facets)
