"""Counts over a KB's rows: per relation / category and verdict, category x relation, intention lengths.

Pure, vectorised aggregations of the intentions table (fast at 1.26M rows: they group by categorical codes and
count histogram bins instead of raw points). The Home and Categories pages, the ``stats`` command and the
Filter thresholds page's groupings read them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mind_core.query.keyword import TOKEN_RE
from mind_core.schema import NO, UNJUDGED, VERDICT_CODE_LABELS, YES, verdict_codes


def group_codes(col: pd.Series, missing: str = "(none)") -> tuple[np.ndarray, list[str]]:
    """(integer code per row, names): categorical codes when available (no string work at 1.26M rows);
    missing values and empty strings are named ``missing``."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes, names = col.cat.codes.to_numpy().astype(np.int64), [str(c) for c in col.cat.categories]
    else:
        codes, uniq = pd.factorize(col, sort=True)
        codes, names = codes.astype(np.int64), [str(u) for u in uniq]
    names = [n if n else missing for n in names] + [missing]
    codes = np.where(codes < 0, len(names) - 1, codes)
    # merge names that became equal (e.g. "" and missing)
    uniq_names, inverse = np.unique(np.asarray(names, dtype=object), return_inverse=True)
    return inverse[codes], [str(u) for u in uniq_names]


def verdict_counts(df: pd.DataFrame, by: str = "relation") -> pd.DataFrame:
    """Per value of ``by`` (relation, category, ...): intentions, kept, filtered, unjudged, kept_rate (kept /
    judged; NaN when nothing was judged), sorted by intentions (descending), then by name."""
    gc, names = group_codes(df[by])
    vc = verdict_codes(df["verdict"]).astype(np.int64)
    counts = np.bincount(gc * 3 + vc, minlength=3 * len(names)).reshape(len(names), 3)
    out = pd.DataFrame(
        {
            by: names,
            "intentions": counts.sum(axis=1),
            "kept": counts[:, YES],
            "filtered": counts[:, NO],
            "unjudged": counts[:, UNJUDGED],
        }
    )
    out = out[out["intentions"] > 0]
    judged = (out["kept"] + out["filtered"]).replace(0, np.nan)
    out["kept_rate"] = out["kept"] / judged
    return out.sort_values(["intentions", by], ascending=[False, True], kind="stable").reset_index(drop=True)


def relation_verdict_data(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`verdict_counts` per relation (the Categories page's bar charts, the home page's table)."""
    return verdict_counts(df, "relation")


def category_relation_data(df: pd.DataFrame, category: pd.Series | None = None) -> pd.DataFrame:
    """Counts: rows = category (``category`` series aligned with ``df``, default the intention category),
    columns = relation (same order as :func:`relation_verdict_data`)."""
    cc, cats = group_codes(df["category"] if category is None else category)
    rc, rels = group_codes(df["relation"])
    counts = np.bincount(cc * len(rels) + rc, minlength=len(cats) * len(rels)).reshape(len(cats), len(rels))
    table = pd.DataFrame(counts, index=pd.Index(cats, name="category"), columns=pd.Index(rels, name="relation"))
    order = relation_verdict_data(df)["relation"].tolist()
    table = table.loc[table.sum(axis=1) > 0, [r for r in order if r in table.columns]]
    return table.loc[table.sum(axis=1).sort_values(ascending=False, kind="stable").index]


def product_category_of_a(df: pd.DataFrame, products: pd.DataFrame, a_pos: np.ndarray | None = None) -> pd.Series:
    """The product category of each row's product A (for the category × relation heatmap), as a categorical.
    ``a_pos``: optional precomputed position of each ``asin_a`` in ``products`` (-1 = unknown), e.g. from
    :class:`mind_core.query.products.ProductIndex`, which avoids mapping 1.26M strings."""
    if a_pos is None:
        a_pos = pd.Index(products["asin"].to_numpy()).get_indexer(df["asin_a"])
    codes, names = pd.factorize(products["category"].fillna("").to_numpy(), sort=True)
    names = [n if n else "(unknown)" for n in names] + ["(unknown)"]
    row_codes = np.where(a_pos >= 0, codes[np.maximum(a_pos, 0)], len(names) - 1)
    row_codes = np.where(row_codes < 0, len(names) - 1, row_codes)
    uniq, inverse = np.unique(np.asarray(names, dtype=object), return_inverse=True)
    return pd.Series(pd.Categorical.from_codes(inverse[row_codes], categories=[str(u) for u in uniq]), index=df.index)


def intention_lengths(df: pd.DataFrame, unit: str = "words") -> np.ndarray:
    """Length of each intention in words (tokens ``[a-z0-9]+``, as the keyword index counts them) or chars.
    The dashboard passes the keyword index's precomputed per-text lengths instead (same numbers, no text scan)."""
    text = df["intention"].astype(object).fillna("")
    if unit == "chars":
        return text.str.len().to_numpy(dtype=np.int64)
    return text.str.lower().str.count(TOKEN_RE.pattern).to_numpy(dtype=np.int64)


def length_data(df: pd.DataFrame, bins: int = 40, lengths: np.ndarray | None = None) -> pd.DataFrame:
    """Histogram of intention length (default: :func:`intention_lengths` in words) split by verdict label:
    columns bin_left, bin_right, verdict, count (numpy bins: [left, right), the last one closed)."""
    lengths = intention_lengths(df) if lengths is None else np.asarray(lengths)
    labels = np.asarray(VERDICT_CODE_LABELS, dtype=object)[verdict_codes(df["verdict"])]
    edges = np.histogram_bin_edges(lengths, bins=bins) if len(lengths) else np.array([0.0, 1.0])
    parts = []
    for lab in ("kept", "filtered", "unjudged"):
        sel = labels == lab
        if not sel.any():
            continue
        counts, _ = np.histogram(lengths[sel], bins=edges)
        parts.append(pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:], "verdict": lab, "count": counts}))
    if not parts:
        return pd.DataFrame(columns=["bin_left", "bin_right", "verdict", "count"])
    return pd.concat(parts, ignore_index=True)
