"""IntentionQA: does the KB help answer purchase-intention questions? Run methods on a sample and compare them."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import ui
from mind_core.eval import intentionqa as iqa

RESULTS_KEY = "iqa_results"

kb = ui.render_sidebar()
st.title("IntentionQA")
st.write(
    "Multiple-choice questions from the IntentionQA benchmark (Ding et al., 2024). **Task 1**: which intention "
    "explains buying products A and B? **Task 2**: given A and the intention, which product was bought with it? "
    "Accuracy counts questions with at least 4 options, like the benchmark's scorer, with a 95 % bootstrap "
    "interval. `overlap` is a no-model word-overlap baseline; `+kb` methods add the k KB intentions retrieved for "
    "the question. Task 2 is largely solvable by word overlap alone, so read it next to that baseline."
)


@st.cache_resource(show_spinner="Starting the LVLM backend…")
def _backend(kind: str, endpoint: str | None, model: str | None):
    from mind_core.lvlm import make_backend

    return make_backend(kind, endpoint=endpoint or None, model=model or None)


@st.cache_data(show_spinner=False, max_entries=64)
def run_method(
    path: str,
    mtime: float,
    method: str,
    k: int,
    n: int,
    seed: int,
    exclude: bool,
    kb_path: str,
    kb_built: str,
    backend_cfg: tuple,
    _kb,
    _progress=None,
) -> dict:
    """One method on one sample; cached per inputs (the KB by path + build time)."""
    questions, dropped = iqa.select_questions(
        path, n=n, seed=seed, exclude_pair_ids=_kb.intentions["pair_id"].unique() if exclude else None
    )
    backend = cache = None
    if method in iqa.LVLM_METHODS:
        from mind_core.config import cache_dir

        backend = _backend(*backend_cfg)
        cache = iqa.AnswerCache(cache_dir() / "intentionqa" / "answers.jsonl")
    vectors = None
    if method != "overlap" and method != "lvlm":
        vectors = iqa.TextVectors(questions, _kb.embed_model)
    res = iqa.evaluate(
        questions, method, kb=_kb, k=k, backend=backend, cache=cache, vectors=vectors, seed=seed, progress=_progress
    )
    return {"result": res.to_json(), "questions": [iqa.question_view(q) for q in questions], "dropped": dropped}


if kb is None:
    st.stop()

files = iqa.data_files()
with st.form("iqa_form"):
    c1, c2 = st.columns([2, 1])
    names = [f.name for f in files]
    picked = c1.selectbox(
        "Question file",
        [str(f) for f in files],
        key="iqa_file",
        index=names.index("task1_sample.jsonl") if "task1_sample.jsonl" in names else 0,
        format_func=lambda p: Path(p).name,
        help="data/intentionqa/ holds 60-question subsets; set MIND_INTENTIONQA_DIR to a folder "
        "with the full files to offer them here.",
    )
    typed = c2.text_input("…or another file (same JSONL format)", key="iqa_file_typed")
    methods = st.multiselect("Methods", list(iqa.METHODS), default=["overlap", "embed", "embed+kb"], key="iqa_methods")
    c1, c2, c3, c4 = st.columns(4)
    k = c1.slider("k (KB intentions per question)", 1, 20, iqa.DEFAULT_K, key="iqa_k")
    n = c2.number_input("Questions (random sample)", 5, 5000, 100, step=10, key="iqa_n")
    seed = c3.number_input("Seed (sample + bootstrap)", 0, 10_000, 0, key="iqa_seed")
    exclude = c4.checkbox(
        "Drop KB pairs",
        key="iqa_exclude",
        help="Drop questions whose product pair is in the KB: the MIND sample shares pairs with "
        "IntentionQA, so this measures the KB without that leakage.",
    )
    with st.expander("LVLM backend (lvlm / lvlm+kb)"):
        b1, b2, b3 = st.columns(3)
        kind = b1.selectbox(
            "Backend",
            ["offline", "openai"],
            key="iqa_backend",
            help="offline = text-only SmolLM2-135M fallback, seconds per question on a CPU",
        )
        endpoint = b2.text_input(
            "Endpoint (openai)",
            value=os.environ.get("MIND_ENDPOINT", ""),
            key="iqa_endpoint",
            placeholder="http://localhost:8000/v1",
        )
        model = b3.text_input("Model (optional)", key="iqa_model")
    submitted = st.form_submit_button("Run", type="primary")

if submitted:
    path = typed.strip() or picked
    if not path or not Path(path).is_file():
        st.error(
            f"No question file at `{path}`. Pick one of the listed files or give a path to an IntentionQA JSONL file."
        )
        st.stop()
    if not methods:
        st.warning("Pick at least one method.")
        st.stop()
    cfg = (kind, endpoint.strip() if kind == "openai" else None, model.strip() or None)
    runs = {}
    bar = st.progress(0.0, text="starting…")
    try:
        for i, method in enumerate(methods):

            def progress(done: int, total: int, i=i, method=method) -> None:
                frac = (i + done / max(total, 1)) / len(methods)
                bar.progress(min(frac, 1.0), text=f"{method}: {done}/{total}")

            runs[method] = run_method(
                path,
                Path(path).stat().st_mtime,
                method,
                int(k),
                int(n),
                int(seed),
                bool(exclude),
                str(kb.path),
                kb.manifest.get("built_at", ""),
                cfg,
                kb,
                progress,
            )
            bar.progress((i + 1) / len(methods), text=f"{method}: done")
    except (iqa.DataError, ValueError, FileNotFoundError) as err:
        st.error(f"Could not evaluate: {err}")
        st.stop()
    except Exception as err:  # backend failures: say what to do, keep the page alive
        from mind_core.lvlm.base import BackendError

        if isinstance(err, BackendError):
            st.error(f"LVLM backend failed: {err}")
            st.stop()
        raise
    bar.empty()
    st.session_state[RESULTS_KEY] = {"path": path, "k": int(k), "exclude": bool(exclude), "runs": runs}

state = st.session_state.get(RESULTS_KEY)
if not state:
    st.info("Pick a file and methods, then **Run**. Results are cached: running the same settings again is instant.")
    st.stop()

runs = state["runs"]
first = next(iter(runs.values()))
st.caption(
    f"`{Path(state['path']).name}` · {len(first['questions'])} questions sampled"
    + (f" · {first['dropped']} dropped because their pair is in the KB" if state["exclude"] else "")
    + f" · k = {state['k']}"
)

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
summary = pd.DataFrame(rows)
st.subheader("Accuracy (95 % bootstrap interval)")
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
st.plotly_chart(fig, key="iqa_acc_chart")
st.dataframe(
    summary.style.format({"accuracy": "{:.1%}", "ci_low": "{:.1%}", "ci_high": "{:.1%}", "seconds": "{:.1f}"}),
    hide_index=True,
    key="iqa_summary",
)

for other, base in iqa.KB_BASE.items():
    if other in runs and base in runs:
        d = iqa.paired_difference(runs[base]["result"]["predictions"], runs[other]["result"]["predictions"])
        st.caption("Effect of the KB: " + iqa.format_difference(base, other, d))


def _group_chart(field: str, title: str, key: str) -> None:
    recs = [
        {"method": m, "group": g, "accuracy": v["accuracy"], "n": v["n"], "lo": v["ci95"][0], "hi": v["ci95"][1]}
        for m, run in runs.items()
        for g, v in run["result"][field].items()
        if v["n"]
    ]
    if not recs:
        return
    df = pd.DataFrame(recs)
    fig = go.Figure(
        [
            go.Bar(
                name=m,
                x=d["group"],
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
    st.plotly_chart(fig, key=key)


c1, c2 = st.columns(2)
with c1:
    st.subheader("Per relation")
    _group_chart("per_relation", 'relation ("all" for the mixRelation files)', "iqa_rel_chart")
with c2:
    st.subheader("Per typicality of the gold intention")
    _group_chart("per_typicality", "typicality", "iqa_typ_chart")

st.subheader("Question browser")
questions = first["questions"]
preds = {m: {p["key"]: p for p in run["result"]["predictions"]} for m, run in runs.items()}


def _label(i: int) -> str:
    q = questions[i]
    marks = " ".join(
        ("✓" if preds[m][q["key"]]["correct"] else "✗" if preds[m][q["key"]]["correct"] is False else "–") for m in runs
    )
    return f"{q['id']} [{marks}] {q['question'][:90]}"


idx = st.selectbox(
    "Question",
    range(len(questions)),
    format_func=_label,
    key="iqa_question",
    help="✓/✗ per method in the order of the table above; – = not scored (< 4 options) or failed",
)
q = questions[idx]
st.markdown(
    f"**{q['id']}** · {q['task'].replace('_', ' ')} · relation `{q['relation']}` · typicality "
    f"{q['typicality']}" + ("" if q["scored"] else " · *fewer than 4 options: not scored*")
)
st.text(q["question"])
table = pd.DataFrame({"letter": list(iqa.LETTERS[: len(q["choices"])]), "choice": q["choices"]})
table["gold"] = ["✓" if letter == q["answer_letter"] else "" for letter in table["letter"]]
for m in runs:
    p = preds[m][q["key"]]
    table[m] = ["◀ picked" if letter == p["letter"] else "" for letter in table["letter"]]
st.dataframe(table, hide_index=True, key="iqa_choices")
for m in runs:
    p = preds[m][q["key"]]
    if p.get("raw") is not None or p.get("error"):
        st.caption(
            f"{m} answered: `{p.get('raw')!s}`"
            + (f" — error: {p['error']}" if p.get("error") else "")
            + ("" if p["letter"] else " → no valid letter, counted wrong")
        )
kb_methods = [m for m in runs if preds[m][q["key"]].get("retrieved")]
if kb_methods:
    hits = preds[kb_methods[0]][q["key"]]["retrieved"]
    st.markdown(f"**Retrieved KB intentions** (k = {len(hits)}, used by {', '.join(kb_methods)})")
    titles = kb.products["title"]
    hits_df = pd.DataFrame(hits)
    hits_df["products"] = [" + ".join(str(titles.get(a, a))[:60] for a in pid.split("|")) for pid in hits_df["pair_id"]]
    st.dataframe(
        hits_df[["score", "weight", "relation", "products", "intention"]],
        hide_index=True,
        key="iqa_hits",
        column_config={"intention": st.column_config.TextColumn(width="large")},
    )
    with st.expander("Full text of the retrieved intentions"):
        for i, h in enumerate(hits, 1):
            st.markdown(f"{i}. **{h['score']:.3f}** · `{h['relation']}` · {h['intention']}")
