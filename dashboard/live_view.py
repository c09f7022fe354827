"""The try page's run panel, as data: :func:`build_view` turns a :class:`~mind_core.distill.live.LiveRun`'s events
into a :class:`RunView` (one :class:`StageView` per MIND stage, the descriptions, the stacked image, intentions and
verdicts as they finish, errors, done / total calls) that the page renders; nothing here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from PIL import Image

from mind_core.distill.live import LiveRun
from mind_core.distill.pipeline import PairResult
from mind_core.schema import intention_body, verdict_label

STAGES: tuple[tuple[str, str], ...] = (
    ("describe", "Stage 1 · describe each product"),
    ("intention", "Stage 2 · one intention per relation"),
    ("filter", "Stage 3 · role-aware filter"),
)


@dataclass
class StageView:
    key: str
    title: str
    #: "waiting", "running", "complete", "skipped", "error", "stopped"
    state: str = "waiting"
    planned: int = 0
    finished: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class RunView:
    """A snapshot of a :class:`LiveRun` for rendering (built from its events; nothing here changes later)."""

    phase: str  # "loading", "running", "finished"
    stages: list[StageView]
    done: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    backend_label: str = ""
    source: str = ""
    images: dict[str, Image.Image | None] = field(default_factory=dict)
    image_notes: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    stacked: Image.Image | None = None
    stacked_ready: bool = False
    #: relation -> latest row (intention, then with the verdict)
    rows: dict[str, dict] = field(default_factory=dict)
    #: the critic's P(keep) by intention_id (filter "critic" / "both")
    critic: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    fatal: str | None = None
    cancel_requested: bool = False
    cancelled: bool = False
    result: PairResult | None = None

    @property
    def finished(self) -> bool:
        return self.phase == "finished"


def build_view(run: LiveRun) -> RunView:
    """A snapshot of ``run`` for rendering."""
    events, phase, elapsed = run.snapshot()
    v = RunView(
        phase=phase,
        stages=[StageView(k, t) for k, t in STAGES],
        elapsed_s=elapsed,
        backend_label=run.backend_label,
        source=run.source,
        image_notes=dict(run.image_notes),
        cancel_requested=run.cancel_event.is_set(),
        fatal=run.fatal,
        result=run.result,
    )
    st = {s.key: s for s in v.stages}
    n_desc = sum(1 for p in (run.a, run.b) if not p.description.strip())
    st["describe"].planned = n_desc
    st["intention"].planned = len(run.relations)
    for e in events:
        v.done, v.total = e.done, e.total
        if e.kind == "image":
            v.images[e.asin] = e.image
            if e.image is None and e.text:
                v.image_notes[e.asin] = f"no image: {e.text}"
        elif e.kind == "describe":
            v.descriptions[e.asin] = e.text or ""
            st["describe"].finished += 1
        elif e.kind == "stacked":
            v.stacked, v.stacked_ready = e.image, True
        elif e.kind in ("intention", "filter"):
            v.rows[e.relation] = e.row
            st[e.kind].finished += 1
            if e.score is not None and e.row is not None:
                v.critic[e.row["intention_id"]] = e.score
        elif e.kind == "error":
            where = e.asin or e.relation
            msg = f"{e.stage}{f' ({where})' if where else ''}: {e.text}"
            v.errors.append(msg)
            if e.stage in st:
                st[e.stage].errors.append(f"{where}: {e.text}" if where else str(e.text))
                st[e.stage].finished += 1
        elif e.kind == "cancelled":
            v.cancelled = True
    if run.result is not None:  # final rows carry the flags added at the end (e.g. not_filtered)
        v.rows = {r["relation"]: r for r in run.result.rows}
        v.critic.update(run.result.critic)
    _stage_states(v, st, run.options.run_filter)
    return v


def _stage_states(v: RunView, st: dict[str, StageView], run_filter: bool) -> None:
    """Each stage's state from what happened so far (the pipeline runs the stages in order)."""
    if v.phase == "loading":
        return

    def settle(s: StageView, complete: bool) -> None:
        if complete:  # every planned call answered; "error" when all of them failed
            s.state = "error" if s.errors and len(s.errors) >= s.finished else "complete"
        elif v.finished:  # the run ended inside this stage: Stop or a backend-wide failure
            s.state = "stopped"
        else:
            s.state = "running"

    d, i, f = st["describe"], st["intention"], st["filter"]
    if d.planned == 0:
        d.state = "skipped"
    else:
        settle(d, d.finished >= d.planned and v.stacked_ready)
    if d.state not in ("complete", "error", "skipped") or not v.stacked_ready:
        return
    settle(i, i.finished >= i.planned)
    if i.state not in ("complete", "error"):
        return
    f.planned = i.finished - len(i.errors)  # one filter call per intention made
    if not run_filter or f.planned == 0:
        f.state = "skipped"
        return
    settle(f, f.finished >= f.planned)


RESULT_TABLE_COLUMNS = ["relation", "verdict", "p_yes", "critic", "intention", "reason", "flags"]

#: the try page's filter choice (mind_core.distill.pipeline.DistillOptions.filter_mode), default first
FILTER_LABELS: dict[str, str] = {
    "both": "both — the LVLM filter answers (recorded), the learned critic decides",
    "lvlm": "LVLM — MIND's rule: the filter's yes / no decides",
    "critic": "critic only — no filter calls, the learned critic decides",
}


def score_note(row: dict, critic: dict[str, float]) -> str:
    """`` · P(yes) 0.62 · critic P(keep) 0.71`` for what a row has (empty when neither)."""
    p, c = row.get("p_yes"), critic.get(row.get("intention_id"))
    return (f" · P(yes) {p:.2f}" if p is not None else "") + (f" · critic P(keep) {c:.2f}" if c is not None else "")


def result_rows(view: RunView) -> list[dict]:
    """The run's KB rows in relation order (final rows once the run finished)."""
    return [r for r in view.rows.values() if r is not None]


def results_table(rows: list[dict], critic: dict[str, float] | None = None) -> pd.DataFrame:
    """Rows as the page's table: relation, kept / filtered / unjudged, P(yes), the critic's P(keep), intention,
    reason, flags."""
    critic = critic or {}
    return pd.DataFrame(
        {
            "relation": [r["relation"] for r in rows],
            "verdict": [verdict_label(r.get("verdict")) for r in rows],
            "p_yes": [r.get("p_yes") for r in rows],
            "critic": [critic.get(r["intention_id"]) for r in rows],
            "intention": [intention_body(r["intention"]) for r in rows],
            "reason": [r.get("reason") or "" for r in rows],
            "flags": [r.get("flags") or "" for r in rows],
        },
        columns=RESULT_TABLE_COLUMNS,
    )


def similar_in_kb(kb, rows: list[dict], k: int = 3) -> dict[str, pd.DataFrame]:
    """For each new row, the ``k`` nearest KB intentions (the KB's encoder + FAISS, :mod:`mind_core.query`), with
    both titles: ``{intention_id: frame(score, relation, verdict, intention, title_a, title_b)}``. A row already in
    the KB (a saved run) is not its own neighbour."""
    from mind_core.query.products import with_titles
    from mind_core.query.semantic import similar_intentions

    rows = [r for r in rows if (r.get("intention") or "").strip()]
    if kb is None or not rows:
        return {}
    out = {}
    for r, res in zip(rows, similar_intentions(kb, [r["intention"] for r in rows], k=k + 1)):
        h = res.hits[res.hits["intention_id"].astype(str) != r["intention_id"]].head(k)
        h = with_titles(kb, h)
        h = h.assign(intention=[intention_body(t) for t in h["intention"]])
        out[r["intention_id"]] = h[["score", "relation", "verdict", "intention", "title_a", "title_b"]].reset_index(
            drop=True
        )
    return out
