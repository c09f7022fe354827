"""Chart data and plotly figures for the Categories page (the paper's intention categories = relation types).

Every ``*_data`` function is a pure, vectorised aggregation of the intentions table (fast at 1.26M rows: group
by categorical codes, histogram bins instead of raw points); every ``fig_*`` builds a plotly figure from it.
:func:`rows_for_selection` turns a chart selection (``st.plotly_chart(on_select=...)`` points) into matching rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

VERDICT_LABELS = {"yes": "kept", "no": "filtered", None: "unjudged"}
VERDICT_COLORS = {"kept": "#2e7d32", "filtered": "#c62828", "unjudged": "#9e9e9e"}


VERDICT_NAMES = np.array(["kept", "filtered", "unjudged"], dtype=object)


def _codes(col: pd.Series, missing: str = "(none)") -> tuple[np.ndarray, list[str]]:
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


def verdict_codes(verdict: pd.Series) -> np.ndarray:
    """0 = kept (yes), 1 = filtered (no), 2 = unjudged, per row."""
    codes, names = _codes(verdict, missing="")
    lut = np.array([0 if n == "yes" else 1 if n == "no" else 2 for n in names], dtype=np.int64)
    return lut[codes]


def _verdict_label(verdict: pd.Series) -> np.ndarray:
    return VERDICT_NAMES[verdict_codes(verdict)]


def relation_verdict_data(df: pd.DataFrame) -> pd.DataFrame:
    """Per relation: intentions, kept, filtered, unjudged, kept_rate (kept / judged), sorted by intentions desc."""
    rc, rels = _codes(df["relation"])
    vc = verdict_codes(df["verdict"])
    counts = np.bincount(rc * 3 + vc, minlength=3 * len(rels)).reshape(len(rels), 3)
    out = pd.DataFrame(
        {
            "relation": rels,
            "intentions": counts.sum(axis=1),
            "kept": counts[:, 0],
            "filtered": counts[:, 1],
            "unjudged": counts[:, 2],
        }
    )
    out = out[out["intentions"] > 0]
    judged = (out["kept"] + out["filtered"]).replace(0, np.nan)
    out["kept_rate"] = out["kept"] / judged
    return out.sort_values(["intentions", "relation"], ascending=[False, True], kind="stable").reset_index(drop=True)


def category_relation_data(df: pd.DataFrame, category: pd.Series | None = None) -> pd.DataFrame:
    """Counts: rows = category (``category`` series aligned with ``df``, default the intention category),
    columns = relation (same order as :func:`relation_verdict_data`)."""
    cc, cats = _codes(df["category"] if category is None else category)
    rc, rels = _codes(df["relation"])
    counts = np.bincount(cc * len(rels) + rc, minlength=len(cats) * len(rels)).reshape(len(cats), len(rels))
    table = pd.DataFrame(counts, index=pd.Index(cats, name="category"), columns=pd.Index(rels, name="relation"))
    order = relation_verdict_data(df)["relation"].tolist()
    table = table.loc[table.sum(axis=1) > 0, [r for r in order if r in table.columns]]
    return table.loc[table.sum(axis=1).sort_values(ascending=False, kind="stable").index]


def product_category_of_a(df: pd.DataFrame, products: pd.DataFrame, a_pos: np.ndarray | None = None) -> pd.Series:
    """The product category of each row's product A (for the category × relation heatmap), as a categorical.
    ``a_pos``: optional precomputed position of each ``asin_a`` in ``products`` (-1 = unknown), e.g. from
    :class:`mind_core.query.search.ProductIndex`, which avoids mapping 1.26M strings."""
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
    from mind_core.query.search import TOKEN_RE

    text = df["intention"].astype(object).fillna("")
    if unit == "chars":
        return text.str.len().to_numpy(dtype=np.int64)
    return text.str.lower().str.count(TOKEN_RE.pattern).to_numpy(dtype=np.int64)


def length_data(df: pd.DataFrame, bins: int = 40, lengths: np.ndarray | None = None) -> pd.DataFrame:
    """Histogram of intention length (default: :func:`intention_lengths` in words) split by verdict label:
    columns bin_left, bin_right, verdict, count (numpy bins: [left, right), the last one closed)."""
    lengths = intention_lengths(df) if lengths is None else np.asarray(lengths)
    labels = _verdict_label(df["verdict"])
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


def fig_relation_stacked(data: pd.DataFrame):
    import plotly.graph_objects as go

    fig = go.Figure()
    for col, lab in (("kept", "kept"), ("filtered", "filtered"), ("unjudged", "unjudged")):
        if data[col].sum() == 0 and col == "unjudged":
            continue
        fig.add_bar(
            x=data["relation"],
            y=data[col],
            name=lab,
            marker_color=VERDICT_COLORS[lab],
            customdata=np.full(len(data), lab),
            hovertemplate="%{x}: %{y:,} " + lab + "<extra></extra>",
        )
    fig.update_layout(
        barmode="stack",
        title="Intentions per relation (kept vs filtered)",
        xaxis_title="relation",
        yaxis_title="intentions",
        legend_title="verdict",
        margin=dict(t=50, b=40),
    )
    return fig


def fig_kept_rate(data: pd.DataFrame):
    import plotly.graph_objects as go

    d = data.sort_values("kept_rate", ascending=False, kind="stable")
    judged = d["kept"] + d["filtered"]
    fig = go.Figure(
        go.Bar(
            x=d["relation"],
            y=d["kept_rate"],
            marker_color="#1565c0",
            text=[f"{k:,}/{j:,}" for k, j in zip(d["kept"], judged)],
            textposition="outside",
            textangle=-90,
            textfont=dict(size=11),
            cliponaxis=False,
            customdata=np.full(len(d), "kept"),
            hovertemplate="%{x}: kept rate %{y:.1%} (%{text} judged)<extra></extra>",
        )
    )
    fig.update_layout(
        title="Kept rate per relation (kept / judged; labels = counts)",
        yaxis_tickformat=".0%",
        yaxis_range=[0, 1.3],
        yaxis_tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0],
        uniformtext=dict(minsize=10, mode="show"),
        xaxis_title="relation",
        yaxis_title="kept rate",
        margin=dict(t=50, b=40),
    )
    return fig


def fig_heatmap(table: pd.DataFrame, title: str = "Category × relation"):
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Heatmap(
            z=table.to_numpy(),
            x=list(table.columns),
            y=list(table.index),
            colorscale="Blues",
            hovertemplate="%{y} × %{x}: %{z:,}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="relation",
        yaxis_title="category",
        height=max(300, 60 + 28 * len(table)),
        margin=dict(t=50, b=40),
    )
    return fig


def fig_lengths(data: pd.DataFrame, unit: str = "words"):
    import plotly.graph_objects as go

    fig = go.Figure()
    for lab, part in data.groupby("verdict", sort=False):
        centers = (part["bin_left"] + part["bin_right"]) / 2
        fig.add_bar(
            x=centers,
            y=part["count"],
            width=(part["bin_right"] - part["bin_left"]),
            name=lab,
            marker_color=VERDICT_COLORS.get(lab),
            legendgroup=lab,
            customdata=np.stack([part["bin_left"], part["bin_right"]], axis=1),
            hovertemplate="%{customdata[0]:.0f}–%{customdata[1]:.0f} " + unit + ": %{y:,}<extra>" + lab + "</extra>",
        )
    fig.update_layout(
        barmode="stack",
        title=f"Intention length ({unit}; stacked by verdict)",
        xaxis_title=unit,
        yaxis_title="intentions",
        margin=dict(t=50, b=40),
    )
    return fig


# --- selections ------------------------------------------------------------------------------------------------


def rows_for_selection(
    df: pd.DataFrame,
    chart: str,
    points: Sequence[dict[str, Any]],
    *,
    category: pd.Series | None = None,
    lengths: np.ndarray | None = None,
) -> np.ndarray | None:
    """Row positions (into ``df``) matching the selected points of ``chart`` (``relation`` | ``kept_rate`` |
    ``heatmap`` | ``lengths`` | ``map``), or None when nothing is selected.

    relation / kept_rate bars: that relation (and that verdict for the stacked bars); heatmap cell: category ×
    relation (``category`` as passed to the heatmap); length bar: lengths inside the bin (and that verdict);
    map points: their ``customdata`` row numbers."""
    if not points:
        return None
    mask = np.zeros(len(df), dtype=bool)
    rc, rels = _codes(df["relation"])
    verdict = verdict_codes(df["verdict"])
    names = list(VERDICT_NAMES)
    lengths_ = lengths

    def rel_is(x) -> np.ndarray:
        return rc == rels.index(x) if x in rels else np.zeros(len(df), dtype=bool)

    for p in points:
        if chart == "map":
            cd = p.get("customdata")
            row = cd[0] if isinstance(cd, (list, tuple)) else cd
            if row is not None and 0 <= int(row) < len(df):
                mask[int(row)] = True
            continue
        if chart in ("relation", "kept_rate"):
            m = rel_is(p.get("x"))
            if chart == "relation" and p.get("customdata") in names:
                m &= verdict == names.index(p["customdata"])
            mask |= m
        elif chart == "heatmap":
            cc, cats = _codes(df["category"] if category is None else category)
            y = p.get("y")
            mask |= rel_is(p.get("x")) & (cc == cats.index(y) if y in cats else False)
        elif chart == "lengths":
            if lengths_ is None:
                lengths_ = intention_lengths(df)
            cd = p.get("customdata") or [None, None]
            lo, hi = float(cd[0]), float(cd[1])
            last = hi >= lengths_.max()  # numpy's last bin is closed on the right
            m = (lengths_ >= lo) & ((lengths_ <= hi) if last else (lengths_ < hi))
            name = p.get("legendgroup") or p.get("name")
            if name in names:
                m &= verdict == names.index(name)
            mask |= m
        else:
            raise ValueError(f"unknown chart {chart!r}")
    return np.flatnonzero(mask)
