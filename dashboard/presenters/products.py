"""Product pickers: labels for choosing a KB product in a select box."""

from __future__ import annotations

from dashboard.presenters.text import clean_title
from mind_core.query.products import find_products


def product_choices(kb, query: str = "", limit: int = 20_000) -> dict[str, str]:
    """``{label: asin}`` for a KB product picker: every product when the KB has at most ``limit`` (the select box
    filters as you type), else the products whose title contains every word of ``query`` (first 50)."""
    prods = kb.products
    if len(prods) > limit:
        prods = find_products(kb, query, limit=50)
    return {f"{clean_title(t)[:110]} · {a}": str(a) for a, t in zip(prods["asin"], prods["title"])}
