"""Try a product: upload (or pick) products A and B, choose relations and a backend, watch MIND's three stages run
live, then save the intentions into a user KB or export them.

The run lives in a background thread owned by ``st.session_state`` (``mind_core.distill.live.LiveRun``); the run panel
is a fragment that re-renders every second while the run is active, so clicks (Stop included) never interrupt it.
"""

import streamlit as st

from dashboard import live_view, ui
from dashboard.presenters.products import product_choices
from dashboard.presenters.text import md, md_code, md_escape, verdict_badge
from mind_core import images
from mind_core.distill import inputs, live
from mind_core.distill.check import check_backend
from mind_core.kb.critic import default_critic, row_scorer
from mind_core.kb.export import EXPORT_FORMATS, export_rows
from mind_core.kb.store import KBError
from mind_core.kb.user import annotator_root, save_run, user_kb_path
from mind_core.query.semantic import index_available
from mind_core.schema import RELATION_PHRASES, RELATIONS, flag_notes

RUN_KEY = "try_run"
POLL_S = 1.0

kb = ui.render_sidebar()
base = ui.settings()

# --- sidebar: backend -------------------------------------------------------------------------------------------
with st.sidebar:
    st.subheader("LVLM backend")
    config = ui.backend_picker("try", base)
    max_new_tokens = int(
        st.number_input(
            "Max new tokens per answer",
            1,
            4096,
            min(base.max_new_tokens, 4096),
            step=64,
            key="try_max_new",
            persist_state="session",
            help="MIND uses 512. The offline fallback stops at 200 anyway.",
        )
    )
    st.caption(f"Will run: {md_escape(config.describe())}")
    for problem in config.problems():
        st.warning(md_escape(problem))
    if st.button(
        "Test backend",
        key="try_check",
        disabled=bool(config.problems()),
        help="One call per stage on a built-in pair (drawn images): latency, images, P(yes), what is wrong.",
    ):
        with st.spinner("Testing the backend: one call per stage…"):
            check = check_backend(config)
        st.session_state["try_check_report"] = (config.cache_key(), check.ok, check.lines())
    shown = st.session_state.get("try_check_report")
    if shown and shown[0] == config.cache_key():
        if shown[1]:
            st.success("Backend test: every stage works.")
        else:
            st.error("Backend test: not ready; the report says why.")
        st.code("\n".join(shown[2]), language=None)  # plain text, never Markdown

st.title("Try a product")
st.write(
    "Give two products — upload images and a title, or pick them from the loaded knowledge base — and watch "
    "MIND describe them (stage 1), write one purchase intention per relation (stage 2) and judge each one as "
    "the shopper (stage 3)."
)
if config.text_only:
    st.info(
        "**Text-only fallback**: the offline model cannot see pixels; it gets the OCR text and colours of each "
        "image instead. It is small and slow on a CPU (seconds to tens of seconds per call). Choose "
        "*transformers* or an *OpenAI-compatible server* in the sidebar for a real vision-language model.",
        icon="ℹ️",
    )


# --- inputs -----------------------------------------------------------------------------------------------------
def product_form(slot: str) -> inputs.ProductInput:
    st.subheader(f"Product {slot}")
    source = st.radio(
        "Source",
        ["Upload", "From the KB"],
        horizontal=True,
        key=f"try_{slot}_source",
        persist_state="session",
        label_visibility="collapsed",
    )
    if source == "From the KB":
        if kb is None:
            return inputs.ProductInput(None, errors=[f"No knowledge base is loaded to pick product {slot} from."])
        choices = product_choices(kb, st.session_state.get(f"try_{slot}_query", ""))
        if len(choices) < len(kb.products):  # a big KB: search first
            st.text_input("Title words or ASIN", key=f"try_{slot}_query", persist_state="session")
        pick = st.selectbox(
            "Product",
            list(choices),
            index=None,
            key=f"try_{slot}_pick",
            persist_state="session",
            placeholder="Type a few words of the title…",
        )
        chosen = inputs.kb_product(kb, choices.get(pick) if pick else None, slot)
        if chosen.product is not None:
            st.caption(md_escape(chosen.product.description[:400]) or "No description: stage 1 will write one.")
        return chosen

    files_key, kept_key = f"try_{slot}_files", f"try_{slot}_kept"
    was_mounted = files_key in st.session_state
    files = st.file_uploader(
        f"Images (1–{inputs.MAX_UPLOADS}; PNG, JPEG or WebP)",
        type=list(inputs.UPLOAD_TYPES),
        accept_multiple_files=True,
        key=files_key,
    )
    # only the files the run can use are read and decoded; the session keeps their bytes (at most MAX_UPLOADS files
    # of maxUploadSize), never their pixels: decoded images live in the process's byte-bounded upload cache
    if files:
        if len(files) > inputs.MAX_UPLOADS:
            st.warning(
                md(
                    "Product {}: {} images uploaded; only the first {} are used (the others are not read).",
                    slot,
                    len(files),
                    inputs.MAX_UPLOADS,
                )
            )
        kept = [(f.name, f.getvalue()) for f in files[: inputs.MAX_UPLOADS]]
        st.session_state[kept_key] = kept
    elif was_mounted:
        st.session_state[kept_key] = kept = []  # the user removed them
    else:  # the uploader was hidden (other source or page): its files come back from the session
        kept = st.session_state.get(kept_key, [])
        if kept:
            st.caption("Images kept from before: " + ", ".join(md_escape(name) for name, _ in kept))
    uploads = [inputs.read_upload(name, data) for name, data in kept]
    for u in uploads:
        if u.error:
            st.error(f"**{md_escape(u.name)}**: {md_escape(u.error)}")
        elif u.note:
            st.info(f"{md_escape(u.name)}: {md_escape(u.note)}.")
    good = [u for u in uploads if u.ok][: inputs.MAX_UPLOADS]
    main = 0
    if good:
        st.image([images.thumbnail(u.image, 220) for u in good], width=110, caption=[u.name for u in good])
        if len(good) > 1:
            names = [u.name for u in good]
            main = names.index(
                st.selectbox("Image the model sees (MIND uses one per product)", names, key=f"try_{slot}_main")
            )
    title = st.text_input("Title (required)", key=f"try_{slot}_title", persist_state="session")
    description = st.text_area(
        "Description (optional: stage 1 writes one if empty)",
        key=f"try_{slot}_desc",
        persist_state="session",
        height=90,
    )
    category = st.text_input(
        "Category (optional)", key=f"try_{slot}_cat", persist_state="session", placeholder=inputs.UPLOAD_CATEGORY
    )
    return inputs.uploaded_product(slot, title, description, uploads, main=main, category=category)


col_a, col_b = st.columns(2)
with col_a:
    input_a = product_form("A")
with col_b:
    input_b = product_form("B")
for w in input_a.warnings + input_b.warnings:
    st.warning(md_escape(w))

st.subheader("Relations")
all_relations = st.toggle(f"All {len(RELATIONS)} relations", key="try_all_relations", persist_state="session")
if all_relations:
    relations = list(RELATIONS)
else:
    relations = st.multiselect(
        "Relations",
        list(RELATIONS),
        default=live.default_relations(config.kind),
        key="try_relations",
        persist_state="session",
        format_func=lambda r: f"{r} — “{RELATION_PHRASES[r] or '(open)'}”",
    )
# --- who decides what is kept (issue 12): the LVLM filter, the learned critic, or the critic with the filter recorded
critic = default_critic(base)
if critic is None:
    filter_mode = "lvlm"
    st.caption("No critic is configured (`MIND_CRITIC=none`): the LVLM filter's yes / no decides, as in MIND.")
else:
    filter_mode = st.radio(
        "Filter: who decides what is kept",
        list(live_view.FILTER_LABELS),
        format_func=live_view.FILTER_LABELS.get,
        key="try_filter",
        persist_state="session",
        help="The default is both: the small offline model is no judge, so the learned critic (trained on MIND's "
        "own verdicts) decides while the LVLM filter's answer is still shown and recorded.",
    )
    st.caption(f"Critic: {md_escape(critic.describe())}; keeps an intention when P(keep) ≥ 0.50.")
n_filter = 0 if filter_mode == "critic" else len(relations)
n_desc = sum(1 for p in (input_a.product, input_b.product) if p is None or not p.description.strip())
n_calls = n_desc + len(relations) + n_filter
st.caption(
    f"{n_calls} backend calls: {n_desc} descriptions + {len(relations)} intentions + {n_filter} filter "
    "answers."
    + (
        " The offline fallback takes roughly 10–40 s per call on a busy 2-core CPU (docs/measurements.md)."
        if config.text_only
        else ""
    )
)

run: live.LiveRun | None = st.session_state.get(RUN_KEY)
active = run is not None and run.running
if st.button("Run MIND", type="primary", disabled=active, key="try_run_button"):
    problems = inputs.check_pair(input_a, input_b) + config.problems()
    if not relations:
        problems.append("Choose at least one relation (or turn on all 20).")
    if problems:
        for p in problems:
            st.error(md_escape(p))
    else:
        images = {input_a.product.asin: input_a.image, input_b.product.asin: input_b.image}
        run = live.LiveRun(
            input_a.product,
            input_b.product,
            images,
            config,
            relations,
            max_new_tokens=max_new_tokens,
            filter_mode=filter_mode,
            critic=row_scorer(critic, products={p.asin: p for p in (input_a.product, input_b.product)})
            if filter_mode != "lvlm"
            else None,
        ).start()
        st.session_state[RUN_KEY] = run
        st.session_state.pop("try_similar", None)
        st.session_state.pop("try_saved", None)
        st.rerun()  # redraw with the Run button disabled and the run panel polling


# --- the live run -----------------------------------------------------------------------------------------------
def stage_box(stage: live_view.StageView, view: live_view.RunView):
    label = stage.title  # st.status draws the state's icon
    if stage.state == "skipped":
        label += " — skipped" + (" (both products have a description)" if stage.key == "describe" else "")
    elif stage.planned:
        label += f" — {stage.finished}/{stage.planned}"
    if stage.state == "stopped":
        label += " — stopped"
    state = {"running": "running", "error": "error", "stopped": "error"}.get(stage.state, "complete")
    return st.status(
        label,
        state=state,
        expanded=stage.state in ("running", "error", "stopped") or (view.finished and stage.key == "filter"),
    )


@st.fragment(run_every=POLL_S if active else None)
def run_panel():
    run: live.LiveRun | None = st.session_state.get(RUN_KEY)
    if run is None:
        return
    view = live_view.build_view(run)
    st.subheader("Run")
    st.caption(f"Backend: {md_escape(view.backend_label)} · {view.elapsed_s:.0f} s")
    controls = st.empty()  # a fixed slot, so the elements below keep their places when the controls go
    if run.running:
        c1, c2 = controls.container().columns([1, 5])
        c1.button(
            "Stop",
            key="try_stop",
            on_click=run.stop,
            disabled=view.cancel_requested,
            help="Stops before the next backend call; what finished is kept.",
        )
        if view.phase == "loading":
            c2.info("Loading the model (the first run in this server process takes longest)…")
        elif view.cancel_requested:
            c2.info("Stopping after the current call…")
    frac = view.done / view.total if view.total else 0.0
    st.progress(min(frac, 1.0), text=f"{view.done} / {view.total or '?'} backend calls")
    for stage in view.stages:
        slot = st.empty()  # one slot per stage: the "waiting" line is replaced in place by its status box
        if stage.state == "waiting":
            slot.caption(f"{stage.title} — not run" if view.finished else f"{stage.title} — waiting")
            continue
        with slot.container(), stage_box(stage, view):
            for msg in stage.errors:
                st.warning(md_escape(msg))
            if stage.key == "describe":
                for product in (run.a, run.b):
                    st.markdown(f"**{md_escape(product.title)}**")
                    if view.image_notes.get(product.asin):
                        st.caption(md_escape(view.image_notes[product.asin]))
                    if product.asin in view.descriptions:
                        st.markdown(md_escape(view.descriptions[product.asin]))
                    elif product.description.strip():
                        st.caption("Description given: " + md_escape(product.description[:300]))
                    elif view.phase == "running":
                        st.caption("writing…")
            elif stage.key == "intention":
                if view.stacked is not None:
                    st.image(view.stacked, width=260, caption="The stacked pair image the model gets (A above B)")
                elif view.stacked_ready:
                    st.caption("Neither product has an image: text only.")
                for rel in run.relations:
                    row = view.rows.get(rel)
                    if row is not None:
                        st.markdown(f"**{rel}** · {md_escape(row['intention'])}")
            elif stage.key == "filter":
                for rel in run.relations:
                    row = view.rows.get(rel)
                    if (row is not None and row.get("verdict") is not None) or (
                        row is not None and "filter_unparsed" in (row.get("flags") or "")
                    ):
                        st.markdown(
                            f"**{rel}** {verdict_badge(row.get('verdict'))}"
                            + live_view.score_note(row, view.critic)
                            + f" — {md_escape(row.get('reason') or '')}"
                        )
    if view.finished and st.session_state.get("try_shown") is not run:
        st.session_state["try_shown"] = run
        st.rerun()  # once: the whole page, so the results below appear and polling stops


run_panel()


# --- results ----------------------------------------------------------------------------------------------------
run = st.session_state.get(RUN_KEY)
if run is None or run.running:
    st.stop()
view = live_view.build_view(run)
rows = live_view.result_rows(view)
if view.fatal:
    st.error(f"The backend failed: {md_escape(view.fatal)}")
    st.caption("Your inputs and anything already produced are kept. Fix the backend in the sidebar and run again.")
elif view.cancelled:
    st.info(f"Stopped. {len(rows)} finished intention(s) are kept below.")
if view.errors and not view.fatal:
    st.warning(f"{len(view.errors)} call(s) failed: " + "; ".join(md_escape(e) for e in view.errors[:5]))
if not rows:
    st.stop()

st.subheader("Results")
st.caption(md("{} intention(s) · source {}", len(rows), md_code(view.source)))
st.dataframe(
    live_view.results_table(rows, view.critic),
    hide_index=True,
    width="stretch",
    column_config={
        "intention": st.column_config.TextColumn(width="large"),
        "reason": st.column_config.TextColumn(width="medium"),
        "p_yes": st.column_config.NumberColumn("P(yes)", format="%.2f"),
        "critic": st.column_config.NumberColumn("critic P(keep)", format="%.2f"),
    },
)

similar = st.session_state.get("try_similar")
if similar is None or similar[0] is not run or similar[1] != str(getattr(kb, "path", "")):
    found: dict = {}
    if kb is not None and index_available(kb) is None:
        try:
            with st.spinner("Finding similar intentions in the KB…"):
                found = live_view.similar_in_kb(kb, rows, k=3)
        except KBError as err:  # a damaged index or embeddings file: the run's results still show
            st.warning(md("No similar intentions: {}", ui.one_line(err)))
    similar = (run, str(getattr(kb, "path", "")), found)
    st.session_state["try_similar"] = similar
neighbours = similar[2]

for row in rows:
    with st.container(border=True):
        note = live_view.score_note(row, view.critic)
        st.markdown(f"**{row['relation']}** {verdict_badge(row.get('verdict'))}{note}")
        st.markdown(md_escape(row["intention"]))
        if row.get("reason"):
            st.caption("Filter: " + md_escape(row["reason"]))
        for note in flag_notes(row.get("flags")):
            st.caption(f"⚠️ {md_escape(note)}")
        hits = neighbours.get(row["intention_id"])
        if hits is not None and len(hits):
            with st.expander(f"Similar intentions already in the KB ({len(hits)})"):
                for h in hits.itertuples():
                    st.markdown(
                        md("`{:.2f}` **{}** {} {}", h.score, h.relation, md(verdict_badge(h.verdict)), h.intention)
                    )
                    st.caption(md("{} + {}", h.title_a, h.title_b))

products = [view.result.a, view.result.b] if view.result is not None else [run.a, run.b]
st.subheader("Keep them")
save_root, name_problem = None, None  # None: the one user KB of this machine (local mode)
if base.is_shared:  # one folder for every visitor would mix their runs: one KB per name instead
    annotator = st.text_input(
        "Your name (saved runs are kept per name)", key="try_annotator", persist_state="session", max_chars=60
    )
    st.caption(
        "This dashboard is shared: saved runs go into a KB of their own per name, under the user-data folder. "
        "Names are not logins: anyone who types the same name shares that KB."
    )
    try:
        save_root = annotator_root(annotator)
    except ValueError as err:
        name_problem = str(err)
    else:
        st.session_state[ui.MY_KB_KEY] = str(user_kb_path(save_root))  # the sidebar offers it to this session
c1, c2, c3 = st.columns([2, 1, 2])
if c1.button(
    "Save into my KB",
    key="try_save",
    type="primary",
    help=(
        "Type your name first: saved runs are kept per name."
        if name_problem
        else md(
            "Adds these rows to {} (Parquet + FAISS index), which the sidebar lists.", md_code(user_kb_path(save_root))
        )
    ),
):
    if name_problem:
        st.error(md_escape(name_problem))
    else:
        try:
            with st.spinner("Saving and indexing…"):
                st.session_state["try_saved"] = (run, save_run(rows, products, root=save_root))
        except Exception as err:  # a full disk, a permission problem: say so, keep the results
            st.error(md("Could not save: {}", err))
        else:
            st.rerun()  # so the sidebar lists the user KB at once
saved = st.session_state.get("try_saved")
if saved is not None and saved[0] is run:
    st.success(saved[1].text())

    def open_user_kb(path: str) -> None:
        st.session_state[ui.KB_STATE_KEY] = path
        st.session_state["kb_select"] = path
        st.session_state["kb_typed"] = ""

    if st.button(
        "Load my KB and open Search", key="try_open_search", on_click=open_user_kb, args=(str(saved[1].kb_dir),)
    ):
        st.switch_page("dashboard/views/search.py")
fmt = c2.selectbox("Export format", EXPORT_FORMATS, key="try_export_fmt")
c3.download_button(
    f"Export {len(rows)} rows as {fmt.upper()}",
    export_rows(rows, fmt, products),
    file_name=f"mind-try.{fmt}",
    key="try_export",
    mime={"csv": "text/csv", "jsonl": "application/jsonl", "parquet": "application/octet-stream"}[fmt],
)
