"""Filter thresholds: what would a stricter or looser filter keep, per relation and category, and how well does
"score ≥ t" agree with the LVLM's recorded yes/no verdicts? Two thresholds side by side.

All numbers come from a per-score histogram built once (mind_core.scores.metrics.ScoreView): a slider move costs
O(groups × bins), the same at 3k and 1.26M rows; thresholds snap to the 0.01-wide bin edges, where counts are exact.
"""

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import ui
from dashboard.presenters import charts
from dashboard.presenters import threshold_charts as tc
from dashboard.presenters.text import clean_title, verdict_text
from mind_core.scores import metrics as scores

kb = ui.render_sidebar()
st.title("Filter thresholds")
if kb is None:
    st.stop()
kb_key = ui.kb_cache_key(kb)
signature = scores.rescore_signature(kb.path)  # new rescore parts -> fresh scores
GROUPINGS = {"category": "intention category (KB)", "product category (A)": "product category of product A"}


@st.cache_resource(show_spinner="Loading scores…", max_entries=2)
def score_table(_kb, kb_key: str, signature: tuple) -> pd.DataFrame:
    return scores.load_scores(_kb)


@st.cache_resource(show_spinner="Counting…", max_entries=8)
def score_view(_kb, kb_key: str, signature: tuple, key: str) -> scores.ScoreView:
    df = _kb.intentions
    groups = {
        "relation": df["relation"],
        "category": df["category"],
        "product category (A)": charts.product_category_of_a(df, _kb.products),
    }
    return scores.ScoreView.build(key, score_table(_kb, kb_key, signature)[key], df["verdict"], groups)


sc = score_table(kb, kb_key, signature)
if sc.attrs.get("missing_file"):
    inputs = " ".join(sorted({i["path"].rsplit("/", 1)[0] for i in kb.manifest.get("inputs", [])})) or "<data>"
    st.warning(
        "This KB was built before filter scores existed, so it has no grounding or typicality scores. "
        f"Rebuild it (embeddings come from the cache): `python -m mind_core build-kb --input {inputs} "
        f"--out {kb.path} --force`"
    )
available = scores.available_scores(sc)
if not available:
    st.info(
        "No row of this KB has a score yet. Rebuild it with build-kb --force (grounding, typicality), or run "
        f"`python -m mind_core rescore --kb {kb.path} --backend …` to get the LVLM filter's P(yes)."
    )
    st.stop()

key = st.selectbox("Score", available, key="score", format_func=lambda k: scores.SCORE_DEFS[k].label)
view = score_view(kb, kb_key, signature, key)
hist = view.hist
label = scores.SCORE_DEFS[key].label
note = (
    f" **{view.nan:,} rows have no value**: they are left out of every number below and counted separately."
    if view.nan
    else ""
)
st.caption(
    scores.SCORE_DEFS[key].definition + note + " Keep an intention when score ≥ threshold (ties are kept). "
    'Precision / recall / F1 treat the recorded verdict "yes" as positive; unjudged rows count in the '
    f"kept numbers only. ROC AUC of this score against the verdicts: **{view.auc:.3f}** (0.5 = chance)."
)

lo, hi = float(hist.edges[0]), float(hist.edges[-1])
col_a, col_b = st.columns(2)
ta = hist.snap(
    col_a.slider(
        "Threshold A: keep if score ≥ A",
        lo,
        hi,
        value=view.default_a,
        step=hist.width,
        format="%.2f",
        key=f"ta_{key}",
        help="Starts where the threshold keeps about as many intentions as the LVLM's yes/no.",
    )
)
tb = hist.snap(
    col_b.slider(
        "Threshold B: keep if score ≥ B",
        lo,
        hi,
        value=view.default_b,
        step=hist.width,
        format="%.2f",
        key=f"tb_{key}",
        help="Starts where the threshold keeps about half as many as the LVLM's yes/no (a stricter filter).",
    )
)

ma, mb = hist.metrics(ta), hist.metrics(tb)
verdict_codes = scores.verdict_codes(kb.intentions["verdict"])
yes, judged = int((verdict_codes == scores.YES).sum()), int((verdict_codes != scores.UNJUDGED).sum())
summary = pd.DataFrame(
    [
        {
            "rule": f"A: {key} ≥ {ta:.2f}",
            "kept": ma.kept,
            "kept rate": ma.kept_rate,
            "precision": ma.precision,
            "recall": ma.recall,
            "F1": ma.f1,
        },
        {
            "rule": f"B: {key} ≥ {tb:.2f}",
            "kept": mb.kept,
            "kept rate": mb.kept_rate,
            "precision": mb.precision,
            "recall": mb.recall,
            "F1": mb.f1,
        },
        {
            "rule": "paper: filter answered yes",
            "kept": yes,
            "kept rate": yes / judged if judged else np.nan,
            "precision": np.nan,
            "recall": np.nan,
            "F1": np.nan,
        },
    ]
)
pct = st.column_config.NumberColumn(format="percent")
num = st.column_config.NumberColumn(format="%.3f")
st.dataframe(
    summary,
    hide_index=True,
    key="summary",
    column_config={"kept rate": pct, "precision": num, "recall": num, "F1": num},
)

by_rel_a, by_rel_b = hist.kept_by("relation", ta), hist.kept_by("relation", tb)
st.plotly_chart(tc.fig_kept_grouped(by_rel_a, by_rel_b, "relation"), key="kept_relation")
grouping = st.radio("Category", list(GROUPINGS), horizontal=True, key="grouping", format_func=GROUPINGS.get)
st.plotly_chart(
    tc.fig_kept_grouped(hist.kept_by(grouping, ta), hist.kept_by(grouping, tb), GROUPINGS[grouping]),
    key="kept_category",
)

left, right = st.columns(2)
with left:
    st.plotly_chart(tc.fig_score_histogram(hist.bins(), ta, tb, key), key="histogram")
with right:
    st.plotly_chart(tc.fig_curves(hist.curve(), ta, tb, key), key="curves")

st.subheader("Counts per relation", anchor=False)
table = pd.DataFrame(
    {
        "relation": by_rel_a["group"],
        "intentions": by_rel_a["rows"],
        "no score": by_rel_a["nan"],
        "kept by yes/no": by_rel_a["yes"],
        "kept at A": by_rel_a["kept"],
        "kept at B": by_rel_b["kept"],
        "kept rate A": by_rel_a["kept_rate"],
        "kept rate B": by_rel_b["kept_rate"],
        "precision A": by_rel_a["tp"] / by_rel_a["kept"].where(by_rel_a["kept"] > 0),
        "precision B": by_rel_b["tp"] / by_rel_b["kept"].where(by_rel_b["kept"] > 0),
    }
).sort_values("intentions", ascending=False, kind="stable")
st.dataframe(
    table,
    hide_index=True,
    key="relation_table",
    column_config={"kept rate A": pct, "kept rate B": pct, "precision A": num, "precision B": num},
)

st.subheader("Intentions that flip between A and B", anchor=False)
rows, kept_by = view.flip_rows(ta, tb)
if len(rows) == 0:
    st.caption("A and B keep exactly the same intentions.")
else:
    other = "B" if kept_by == "A" else "A"
    shown = rows[:300]
    st.caption(
        f"{len(rows):,} intentions are kept at {kept_by} but not at {other} (lowest scores first"
        f"{'; first 300 shown' if len(rows) > 300 else ''}). Their recorded verdict and the filter's reason "
        "show whether the looser threshold adds intentions the LVLM rejected."
    )
    part = kb.intentions.iloc[shown]
    titles = kb.products["title"]
    flips = pd.DataFrame(
        {
            "score": np.round(sc[key].to_numpy()[shown], 4),
            "kept only at": kept_by,
            "relation": part["relation"].astype(object).to_numpy(),
            "verdict": [verdict_text(v) for v in part["verdict"].astype(object)],
            "intention": part["intention"].astype(object).to_numpy(),
            "reason": part["reason"].astype(object).to_numpy(),
            "title A": [clean_title(t) for t in part["asin_a"].map(titles)],
            "title B": [clean_title(t) for t in part["asin_b"].map(titles)],
        }
    )
    st.dataframe(
        flips,
        hide_index=True,
        key="flips",
        column_config={
            "intention": st.column_config.TextColumn(width="large"),
            "reason": st.column_config.TextColumn(width="large"),
        },
    )

st.subheader("The paper's rule, for reference", anchor=False)
st.markdown(
    "MIND keeps an intention when the role-aware filter, asked as a shopper whether the intention would make them "
    "buy both products at the same time, answers **yes** (the leading word decides). On this KB that keeps "
    f"**{yes:,} of {judged:,}** judged intentions ({yes / max(1, judged):.1%}), the grey bars above. A threshold "
    "on the filter's P(yes) at 0.5 is the continuous version of that rule; grounding and typicality are not the "
    "filter's judgement but cheap embedding scores, so their precision and recall say how far an embedding-only "
    "filter would agree with the LVLM."
)
