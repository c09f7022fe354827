"""Tables and figures of the IntentionQA page, from the plain results of :func:`mind_core.eval.intentionqa.evaluate`
(``MethodResult.to_json()`` per method, as the page caches them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from dashboard.presenters.text import plot_text
from mind_core.eval.intentionqa import LETTERS
from mind_core.schema import intention_body


def accuracy_table(runs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per method: accuracy with its 95 % interval, scored / skipped / failed questions, seconds."""
    rows = []
    for method, run in runs.items():
        r = run["result"]
        rows.append(
            {
                "method": method,
                "accuracy": r["accuracy"],
                "ci_low": r["ci95"][0],
                "ci_high": r["ci95"][1],
                "scored": r["n"],
                "skipped (<4 options)": r["n_skipped_lt4"],
                "errors": r["n_errors"],
                "seconds": r["seconds"],
            }
        )
    return pd.DataFrame(rows)


def fig_accuracy(summary: pd.DataFrame):
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Bar(
            x=summary["method"],
            y=100 * summary["accuracy"],
            error_y=dict(
                type="data",
                array=100 * (summary["ci_high"] - summary["accuracy"]),
                arrayminus=100 * (summary["accuracy"] - summary["ci_low"]),
            ),
            text=[f"{100 * a:.1f}%" for a in summary["accuracy"]],
            textposition="inside",
            insidetextanchor="start",
        )
    )
    fig.update_layout(yaxis_title="accuracy (%)", yaxis_range=[0, 105], height=360, margin=dict(t=20, b=20))
    return fig


def fig_by_group(runs: Mapping[str, Mapping[str, Any]], field: str, title: str):
    """Grouped bars of accuracy per ``field`` group (``per_relation`` / ``per_typicality``), or None when empty."""
    import plotly.graph_objects as go

    recs = [
        {"method": m, "group": g, "accuracy": v["accuracy"], "n": v["n"], "lo": v["ci95"][0], "hi": v["ci95"][1]}
        for m, run in runs.items()
        for g, v in run["result"][field].items()
        if v["n"]
    ]
    if not recs:
        return None
    df = pd.DataFrame(recs)
    fig = go.Figure(
        [
            go.Bar(
                name=m,
                x=[plot_text(g) for g in d["group"]],  # question-file text: plotly renders HTML in labels
                y=100 * d["accuracy"],
                error_y=dict(
                    type="data", array=100 * (d["hi"] - d["accuracy"]), arrayminus=100 * (d["accuracy"] - d["lo"])
                ),
                customdata=d["n"],
                hovertemplate="%{x}: %{y:.1f}% (n=%{customdata})",
            )
            for m, d in df.groupby("method", sort=False)
        ]
    )
    fig.update_layout(
        barmode="group",
        yaxis_title="accuracy (%)",
        yaxis_range=[0, 105],
        height=340,
        margin=dict(t=20, b=20),
        xaxis_title=title,
    )
    return fig


def predictions_by_method(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict]]:
    return {m: {p["key"]: p for p in run["result"]["predictions"]} for m, run in runs.items()}


def question_label(q: Mapping[str, Any], preds: Mapping[str, Mapping[str, dict]]) -> str:
    """``<id> [✓ ✗ –] <question…>``: one mark per method (– = not scored or failed)."""
    marks = " ".join(
        ("✓" if preds[m][q["key"]]["correct"] else "✗" if preds[m][q["key"]]["correct"] is False else "–")
        for m in preds
    )
    return f"{q['id']} [{marks}] {q['question'][:90]}"


def choices_table(q: Mapping[str, Any], preds: Mapping[str, Mapping[str, dict]]) -> pd.DataFrame:
    """The options of one question: letter, text, the gold mark and which option each method picked."""
    table = pd.DataFrame({"letter": list(LETTERS[: len(q["choices"])]), "choice": q["choices"]})
    table["gold"] = ["✓" if letter == q["answer_letter"] else "" for letter in table["letter"]]
    for m in preds:
        p = preds[m][q["key"]]
        table[m] = ["◀ picked" if letter == p["letter"] else "" for letter in table["letter"]]
    return table


def retrieved_table(hits: list[dict], titles: pd.Series) -> pd.DataFrame:
    """The KB intentions retrieved for a question: score, weight, relation, both products, intention."""
    df = pd.DataFrame(hits)
    df["products"] = [" + ".join(str(titles.get(a, a))[:60] for a in pid.split("|")) for pid in df["pair_id"]]
    df["intention"] = [intention_body(t) for t in df["intention"]]  # the full text is in the page's details
    return df[["score", "weight", "relation", "products", "intention"]]
