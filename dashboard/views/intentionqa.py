"""IntentionQA: does the KB help answer purchase-intention questions? Run methods on a sample and compare them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import ui
from dashboard.presenters import intentionqa as present
from dashboard.presenters.text import md, md_code, md_escape
from mind_core import config
from mind_core.distill.live import open_backend
from mind_core.eval import intentionqa as iqa
from mind_core.kb.store import KBError
from mind_core.lvlm.base import BackendError

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
    backend_key: tuple,
    _kb,
    _backend_config=None,
    _progress=None,
) -> dict:
    """One method on one sample; cached per inputs (the KB by path + build time, the backend by its options
    without secrets)."""
    questions, dropped = iqa.select_questions(
        path, n=n, seed=seed, exclude_pair_ids=_kb.intentions["pair_id"].unique() if exclude else None
    )
    backend, owned, cache = None, False, None
    if method in iqa.LVLM_METHODS:
        backend, owned = open_backend(_backend_config)
        cache = iqa.AnswerCache(config.cache_dir("intentionqa") / "answers.jsonl")
    vectors = None
    if method != "overlap" and method != "lvlm":
        vectors = iqa.TextVectors(questions, encoder=_kb.encoder)
    try:
        res = iqa.evaluate(
            questions, method, kb=_kb, k=k, backend=backend, cache=cache, vectors=vectors, seed=seed, progress=_progress
        )
    finally:
        if owned:
            backend.close()
    return {"result": res.to_json(), "questions": [iqa.question_view(q) for q in questions], "dropped": dropped}


if kb is None:
    st.stop()

files = iqa.data_files()
with st.expander("LVLM backend (for the lvlm / lvlm+kb methods)"):
    backend_config = ui.backend_picker("iqa", ui.settings())
    st.caption(
        md_escape(backend_config.describe()) + " · offline = text-only SmolLM2-135M, seconds per question on a CPU"
    )
with st.form("iqa_form"):
    c1, c2 = st.columns([2, 1])
    names = [f.name for f in files]
    picked = c1.selectbox(
        "Question file",
        [str(f) for f in files],
        key="iqa_file",
        index=names.index("task1_sample.jsonl") if "task1_sample.jsonl" in names else 0,
        format_func=lambda p: Path(p).name,
        help="data/intentionqa/ holds 60-question subsets and the full benchmark files (full/*.jsonl.gz); set "
        "MIND_INTENTIONQA_DIR to a folder of other IntentionQA files to offer them here.",
    )
    typed = ""
    if not ui.settings().is_shared:  # shared: only the files the operator put in data/ or MIND_INTENTIONQA_DIR
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
    submitted = st.form_submit_button("Run", type="primary")

if submitted:
    path = typed.strip() or picked
    if not path or not Path(path).is_file():
        st.error(
            md(
                "No question file at {}. Pick one of the listed files or give a path to an IntentionQA JSONL file.",
                md_code(path),
            )
        )
        st.stop()
    if not methods:
        st.warning("Pick at least one method.")
        st.stop()
    if any(m in iqa.LVLM_METHODS for m in methods) and (problems := backend_config.problems()):
        st.error(f"LVLM backend: {md_escape(problems[0])}")
        st.stop()
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
                backend_config.cache_key(),
                kb,
                backend_config,
                progress,
            )
            bar.progress((i + 1) / len(methods), text=f"{method}: done")
    except KBError as err:  # a damaged embeddings / index file of the KB
        st.error(md("The KB cannot be searched: {}", ui.one_line(err)))
        st.stop()
    except (iqa.DataError, ValueError, FileNotFoundError) as err:
        st.error(md("Could not evaluate: {}", err))
        st.stop()
    except BackendError as err:  # backend failures: say what to do, keep the page alive
        st.error(f"LVLM backend failed: {md_escape(err)}")
        st.stop()
    bar.empty()
    st.session_state[RESULTS_KEY] = {"path": path, "k": int(k), "exclude": bool(exclude), "runs": runs}

state = st.session_state.get(RESULTS_KEY)
if not state:
    st.info("Pick a file and methods, then **Run**. Results are cached: running the same settings again is instant.")
    st.stop()

runs = state["runs"]
first = next(iter(runs.values()))
st.caption(
    md("{} · {} questions sampled", md_code(Path(state["path"]).name), len(first["questions"]))
    + (f" · {first['dropped']} dropped because their pair is in the KB" if state["exclude"] else "")
    + f" · k = {state['k']}"
)

summary = present.accuracy_table(runs)
st.subheader("Accuracy (95 % bootstrap interval)")
st.plotly_chart(present.fig_accuracy(summary), key="iqa_acc_chart")
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
    fig = present.fig_by_group(runs, field, title)
    if fig is not None:
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
preds = present.predictions_by_method(runs)
idx = st.selectbox(
    "Question",
    range(len(questions)),
    format_func=lambda i: present.question_label(questions[i], preds),
    key="iqa_question",
    help="✓/✗ per method in the order of the table above; – = not scored (< 4 options) or failed",
)
q = questions[idx]
st.markdown(
    md(
        "**{}** · {} · relation {} · typicality {}",
        q["id"],
        q["task"].replace("_", " "),
        md_code(q["relation"]),
        q["typicality"],
    )
    + ("" if q["scored"] else " · *fewer than 4 options: not scored*")
)
st.text(q["question"])
st.dataframe(present.choices_table(q, preds), hide_index=True, key="iqa_choices")
for m in runs:
    p = preds[m][q["key"]]
    if p.get("raw") is not None or p.get("error"):
        st.caption(
            md("{} answered: {}", m, md_code(p.get("raw")))
            + (md(" — error: {}", p["error"]) if p.get("error") else "")
            + ("" if p["letter"] else " → no valid letter, counted wrong")
        )
kb_methods = [m for m in runs if preds[m][q["key"]].get("retrieved")]
if kb_methods:
    hits = preds[kb_methods[0]][q["key"]]["retrieved"]
    st.markdown(md("**Retrieved KB intentions** (k = {}, used by {})", len(hits), ", ".join(kb_methods)))
    st.dataframe(
        present.retrieved_table(hits, kb.products["title"]),
        hide_index=True,
        key="iqa_hits",
        column_config={"intention": st.column_config.TextColumn(width="large")},
    )
    with st.expander("Full text of the retrieved intentions"):
        for i, h in enumerate(hits, 1):
            st.markdown(md("{}. **{:.3f}** · {} · {}", i, h["score"], md_code(h["relation"]), h["intention"]))
