"""Filter thresholds: what would a stricter or looser filter keep, per relation and category, and how well does
"score ≥ t" agree with the LVLM's recorded yes/no verdicts? Two thresholds side by side.

All numbers come from a per-score histogram built once (mind_core.scores.histograms.ScoreView): a slider move costs
O(groups × bins), the same at 3k and 1.26M rows; thresholds snap to the 0.01-wide bin edges, where counts are exact.
"""

import pandas as pd
import streamlit as st

from dashboard import review_ui, ui
from dashboard.presenters import threshold_charts as tc
from dashboard.presenters import thresholds as present
from dashboard.presenters.text import md_code
from mind_core.kb.store import load_scores, rescore_signature
from mind_core.query.aggregate import product_category_of_a
from mind_core.query.products import product_index
from mind_core.scores import SCORE_DEFS, available_scores
from mind_core.scores.histograms import ScoreView
from mind_core.scores.metrics import reliability_table

kb = ui.render_sidebar()
st.title("Filter thresholds")
if kb is None:
    st.stop()
kb_key = ui.kb_cache_key(kb)
signature = (rescore_signature(kb.path), present.scores_signature(kb.path))  # new rescores / critic -> fresh scores
GROUPINGS = {"category": "intention category (KB)", "product category (A)": "product category of product A"}


@st.cache_resource(show_spinner="Loading scores…", max_entries=2)
def score_table(_kb, kb_key: str, signature: tuple) -> pd.DataFrame:
    return load_scores(_kb)


@st.cache_resource(show_spinner="Counting…", max_entries=8)
def score_view(_kb, kb_key: str, signature: tuple, key: str, truth_key: tuple, _truth: pd.Series) -> ScoreView:
    df = _kb.intentions
    groups = {
        "relation": df["relation"],
        "category": df["category"],
        "product category (A)": product_category_of_a(df, _kb.products, product_index(_kb).a_pos),
    }
    return ScoreView.build(key, score_table(_kb, kb_key, signature)[key], _truth, groups)


sc = score_table(kb, kb_key, signature)
if sc.attrs.get("missing_file"):
    inputs = " ".join(sorted({i["path"].rsplit("/", 1)[0] for i in kb.manifest.get("inputs", [])})) or "<data>"
    st.warning(
        "This KB was built before filter scores existed, so it has no grounding or typicality scores. "
        "Rebuild it (embeddings come from the cache): "
        + md_code(f"python -m mind_core build-kb --input {inputs} --out {kb.path} --force")
    )
available = available_scores(sc)
if not available:
    st.info(
        "No row of this KB has a score yet. Rebuild it with build-kb --force (grounding, typicality), or run "
        + md_code(f"python -m mind_core rescore --kb {kb.path} --backend …")
        + " to get the LVLM filter's P(yes)."
    )
    st.stop()

key = st.selectbox("Score", available, key="score", format_func=lambda k: SCORE_DEFS[k].label)
truth, truth_key, truth_name = review_ui.ground_truth_choice(kb)
view = score_view(kb, kb_key, signature, key, truth_key, truth)
hist = view.hist
label = SCORE_DEFS[key].label
note = (
    f" **{view.nan:,} rows have no value**: they are left out of every number below and counted separately."
    if view.nan
    else ""
)
st.caption(
    SCORE_DEFS[key].definition + note + " Keep an intention when score ≥ threshold (ties are kept). "
    f"Precision / recall / F1 treat {truth_name[0]} as positive; {truth_name[1]} count in the "
    f"kept numbers only. ROC AUC of this score against {truth_name[2]}: **{view.auc:.3f}** (0.5 = chance)."
)

lo, hi = float(hist.edges[0]), float(hist.edges[-1])
col_a, col_b = st.columns(2)
SLIDER_HELP = {
    "A": "Starts where the threshold keeps about as many intentions as the LVLM's yes/no.",
    "B": "Starts where the threshold keeps about half as many as the LVLM's yes/no (a stricter filter).",
}
ta, tb = (
    hist.snap(
        col.slider(
            f"Threshold {name}: keep if score ≥ {name}",
            lo,
            hi,
            value=default,
            step=hist.width,
            format="%.2f",
            key=f"t{name.lower()}_{key}",
            help=SLIDER_HELP[name],
        )
    )
    for name, col, default in (("A", col_a, view.default_a), ("B", col_b, view.default_b))
)

ma, mb = hist.metrics(ta), hist.metrics(tb)
yes, judged = present.paper_rule_counts(kb.intentions["verdict"])
summary = present.rule_summary(key, ta, ma, tb, mb, kb.intentions["verdict"])
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

st.subheader("At MIND's kept share", anchor=False)
same = hist.metrics(view.default_a)
st.caption(
    f"The threshold that keeps about the same share of intentions as MIND's filter ({yes / max(1, judged):.1%}): "
    "how many of those the LVLM also said yes to (precision) and how many of its yes this threshold finds (recall)."
)
cols = st.columns(4)
cols[0].metric("threshold", f"{same.threshold:.2f}")
cols[1].metric("kept", f"{same.kept:,} ({same.kept_rate:.1%})")
cols[2].metric("precision", f"{same.precision:.3f}")
cols[3].metric("recall", f"{same.recall:.3f}")
if SCORE_DEFS[key].fixed_range == (0.0, 1.0):  # a probability: is it calibrated?
    rel_table = reliability_table(sc[key], truth)
    st.plotly_chart(tc.fig_reliability(rel_table, key), key="reliability")
    st.caption(
        "A calibrated score lies on the diagonal: of the intentions scored about 0.7, about 70 % were kept by the "
        "filter. Bins are 0.1 wide; a bigger marker holds more intentions."
    )
if key == "critic":
    st.caption(present.critic_note(kb.manifest.get("scores", {}).get("critic")))

st.subheader("Counts per relation", anchor=False)
table = present.relation_table(by_rel_a, by_rel_b)
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
    flips = present.flips_table(kb, shown, sc[key].to_numpy(), kept_by)
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
    "filter would agree with the LVLM. The critic is learned from MIND's verdicts (`python -m mind_core critic`); on "
    "the KB it was trained on every row is scored out-of-fold, by a model that never saw that row's pair, so its "
    "numbers here are honest validation numbers, not training fit."
)
