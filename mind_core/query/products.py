"""Product lookups: a product's intentions and co-buy partners, titles for rows, product search by title words.

:class:`ProductIndex` keeps the rows of the intentions table per product (both sides), as CSR over the products
table order, so a product page costs the same at 3k and at 1.26M rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mind_core.kb.store import take_rows
from mind_core.query.derived import derived
from mind_core.query.keyword import tokenize


@dataclass
class ProductIndex:
    """Rows of the intentions table per product (both sides), as CSR over the product table order, plus each
    row's product-A position (for product-category charts). Saved next to the keyword index."""

    asins: pd.Index
    offsets: np.ndarray
    rows: np.ndarray
    a_pos: np.ndarray  # int32 [n] position of asin_a in the products table (-1: not described)

    @classmethod
    def build(cls, kb) -> ProductIndex:
        df = kb.intentions
        asins = pd.Index(kb.products["asin"].to_numpy())
        n = len(df)
        a_pos = asins.get_indexer(df["asin_a"])
        ids = np.concatenate([a_pos, asins.get_indexer(df["asin_b"])])
        rows = np.concatenate([np.arange(n), np.arange(n)])
        keep = ids >= 0
        ids, rows = ids[keep], rows[keep]
        order = np.lexsort((rows, ids))
        offsets = np.zeros(len(asins) + 1, dtype=np.int64)
        np.cumsum(np.bincount(ids, minlength=len(asins)), out=offsets[1:])
        return cls(asins, offsets, rows[order].astype(np.int64), a_pos.astype(np.int32))

    def rows_of(self, asin: str) -> np.ndarray:
        i = self.asins.get_indexer([asin])[0]
        if i < 0:
            return np.empty(0, dtype=np.int64)
        return self.rows[self.offsets[i] : self.offsets[i + 1]]


def product_index(kb) -> ProductIndex:
    """The KB's product index (built once per KB, then read from the cache)."""
    asins = pd.Index(kb.products["asin"].to_numpy())

    def load(arrays: dict[str, np.ndarray]) -> ProductIndex | None:
        index = ProductIndex(asins, arrays["offsets"], arrays["rows"], arrays["a_pos"])
        ok = len(index.offsets) == len(asins) + 1 and len(index.a_pos) == len(kb.intentions)
        return index if ok else None

    return derived(
        kb,
        f"products-v1-{len(asins)}",
        lambda: ProductIndex.build(kb),
        lambda i: {"offsets": i.offsets, "rows": i.rows, "a_pos": i.a_pos},
        load,
    )


def titles_of(kb, asins) -> np.ndarray:
    """Product titles for ``asins`` (None where unknown), via the product index's cached hash table (a plain
    ``Series.map`` rebuilds a 200k-entry hash table on every call)."""
    idx = product_index(kb)
    pos = idx.asins.get_indexer(np.asarray(asins, dtype=object))
    if not len(pos) or not len(kb.products):
        return np.full(len(pos), None, dtype=object)
    titles = take_rows(kb.products, np.maximum(pos, 0), ["title"])["title"].to_numpy(dtype=object)
    return np.where(pos >= 0, titles, None)


def product_intentions(kb, asin: str, kept_only: bool = False) -> pd.DataFrame:
    """Intentions of ``asin`` with a ``partner`` column (the other product) and partner titles."""
    rows = product_index(kb).rows_of(asin)
    df = kb.take(rows)
    if kept_only:
        df = df[(df["verdict"] == "yes").to_numpy(dtype=bool, na_value=False)]
    partner = np.where(df["asin_a"].to_numpy() == asin, df["asin_b"].to_numpy(), df["asin_a"].to_numpy())
    return df.assign(partner=partner, partner_title=titles_of(kb, partner))


def product_partners(kb, asin: str, kept_only: bool = False) -> pd.DataFrame:
    """One row per co-buy partner: asin, title, intentions, kept (sorted by intentions desc, then asin)."""
    df = product_intentions(kb, asin, kept_only=kept_only)
    codes, partners = pd.factorize(df["partner"].to_numpy(), sort=True)
    kept = (df["verdict"] == "yes").to_numpy(dtype=bool, na_value=False)
    out = pd.DataFrame(
        {
            "asin": np.asarray(partners, dtype=object),
            "intentions": np.bincount(codes, minlength=len(partners)),
            "kept": np.bincount(codes, weights=kept, minlength=len(partners)).astype(int),
        }
    )
    out["title"] = titles_of(kb, out["asin"])
    return out.sort_values(["intentions", "asin"], ascending=[False, True], kind="stable").reset_index(drop=True)


def find_products(kb, text: str, limit: int = 50) -> pd.DataFrame:
    """Products whose ASIN equals ``text`` (case-insensitive) or whose title contains every word of it."""
    text = (text or "").strip()
    prods = kb.products
    if not text:
        return prods.iloc[0:0][["asin", "title", "category"]]
    exact = prods[prods["asin"].str.upper() == text.upper()] if len(text) <= 20 else prods.iloc[0:0]
    mask = np.ones(len(prods), dtype=bool)
    for word in tokenize(text):
        mask &= prods["title"].str.contains(word, case=False, regex=False).to_numpy(dtype=bool, na_value=False)
    hits = prods[mask & ~prods["asin"].isin(exact["asin"]).to_numpy()]
    return pd.concat([exact, hits.head(limit)])[["asin", "title", "category"]].head(limit).reset_index(drop=True)


def with_titles(kb, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (KB rows) with ``title_a`` / ``title_b`` columns."""
    return df.assign(title_a=titles_of(kb, df["asin_a"]), title_b=titles_of(kb, df["asin_b"]))


def pair_intentions(kb, asin_a: str, asin_b: str) -> pd.DataFrame:
    """The intentions of one co-buy pair (order of the two ASINs does not matter)."""
    from mind_core.schema import pair_id

    rows = product_index(kb).rows_of(asin_a)
    df = kb.take(rows)
    return df[(df["pair_id"] == pair_id(asin_a, asin_b)).to_numpy(dtype=bool)]
