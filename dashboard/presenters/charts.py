"""Plotly figures for the Categories page (the paper's intention categories = relation types), and turning a
chart selection (``st.plotly_chart(on_select=...)`` points) back into KB rows. The numbers come from
:mod:`mind_core.query.aggregate`; nothing here computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dashboard.presenters.text import plot_text
from mind_core.query.aggregate import group_codes, intention_lengths
from mind_core.query.embedmap import EmbeddingMap
from mind_core.schema import VERDICT_CODE_LABELS, verdict_codes

VERDICT_COLORS = {"kept": "#2e7d32", "filtered": "#c62828", "unjudged": "#9e9e9e"}


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

    rows = list(table.index)  # KB text: the raw values select rows, the escaped ones are shown
    shown = [plot_text(r) for r in rows]
    fig = go.Figure(
        go.Heatmap(
            z=table.to_numpy(),
            x=list(table.columns),
            y=rows,
            colorscale="Blues",
            customdata=[[s] * len(table.columns) for s in shown],
            hovertemplate="%{customdata} × %{x}: %{z:,}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="relation",
        yaxis=dict(title=dict(text="category"), tickmode="array", tickvals=rows, ticktext=shown),
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


# --- embedding map ---------------------------------------------------------------------------------------------


def _label_order(label) -> tuple:
    """Cluster labels "3: words" in numeric order, other labels alphabetically."""
    head = str(label).split(":", 1)[0]
    return (0, int(head), "") if head.isdigit() else (1, 0, str(label))


def fig_map(m: EmbeddingMap, color: np.ndarray, color_title: str, hover: list[str]):
    """Scatter of the map; ``color``: one label per point (relation or cluster label)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    from plotly.colors import qualitative

    color = np.asarray(color, dtype=object)
    n_labels = len(pd.unique(color))
    palette = (
        qualitative.G10 + ["#222222", "#AAAA11"]
        if n_labels <= 12  # clusters: 12 well-separated colours
        else qualitative.Dark24 + qualitative.Light24
    )  # relations (20) and more
    for i, lab in enumerate(sorted(pd.unique(color), key=_label_order)):
        sel = np.flatnonzero(color == lab)
        fig.add_scattergl(
            x=m.xy[sel, 0],
            y=m.xy[sel, 1],
            mode="markers",
            name=str(lab),
            marker=dict(size=5, opacity=0.7, color=palette[i % len(palette)]),
            customdata=m.rows[sel][:, None],
            text=[hover[i] for i in sel],
            hovertemplate="%{text}<extra>" + str(lab)[:40] + "</extra>",
        )
    fig.update_layout(
        title=f"Intention embeddings, PCA 2-D ({len(m.rows):,} points; coloured by {color_title})",
        xaxis_title=f"PC1 ({m.explained[0]:.0%} var.)",
        yaxis_title=f"PC2 ({m.explained[1]:.0%} var.)",
        height=600,
        legend_title=color_title,
        dragmode="lasso",
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
    rc, rels = group_codes(df["relation"])
    verdict = verdict_codes(df["verdict"])
    names = list(VERDICT_CODE_LABELS)
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
            cc, cats = group_codes(df["category"] if category is None else category)
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
