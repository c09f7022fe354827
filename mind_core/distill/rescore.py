"""Recompute the role-aware filter (its answer and P(yes)) for a slice of a built KB with any LVLM backend.

The KB's own tables are never changed. Results go next to them, one folder per backend/model::

    <kb>/rescore/<source slug>/part-<seq>.parquet   intention_id, p_yes, verdict, reason, source, created_at, flags
    <kb>/rescore/<source slug>/_state/errors.jsonl  one line per failed request (retried by the next run)
    <kb>/rescore/<source slug>/_state/runs.jsonl    one line per run start / end

``source`` is ``rescore:<backend>:<model>``. Resumable like ``distill`` (the same part writer and lock,
:mod:`mind_core.distill.runs`; the same filter stage, :mod:`mind_core.distill.stages`): each chunk of rows is
written as a complete part only after its answers arrived; on start the ``intention_id`` of every part already in
the folder is skipped, so a run killed at any moment (even ``kill -9``) and started again redoes nothing that was
written and loses nothing but the chunk in flight.

:func:`mind_core.kb.store.load_scores` (``KnowledgeBase.scores``) reads every part of every source and exposes the
latest answer per row as ``p_yes_rescored`` / ``verdict_rescored`` / ``rescore_source``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mind_core import io
from mind_core.distill.runs import (
    STATE_DIR,
    JobError,
    JobTally,
    RunLog,
    job_lock,
    keys_of,
    list_parts,
    next_seq,
    progress_bar,
    write_part,
)
from mind_core.distill.stages import FilterJob, ImageOptions, judge, pair_image, product_images, row_flags
from mind_core.lvlm.base import Backend, GenParams
from mind_core.schema import RESCORE_DIR, RESCORE_SCHEMA, Product, flags_text, now_utc

_PART_RE = re.compile(r"^part-(\d+)\.parquet$")

#: a problem the user can fix (folder in use, unreadable part)
RescoreError = JobError


def source_of(backend: Backend) -> str:
    return f"rescore:{backend.name}:{backend.model}"


def source_slug(source: str) -> str:
    """A folder name for a source: ``rescore:openai:llava-1.5`` -> ``openai_llava-1.5``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.removeprefix("rescore:")).strip("_.")
    return slug[-100:] or "unnamed"


def done_ids(folder: Path, source: str) -> set[str]:
    """``intention_id`` of every row of ``source`` already written in ``folder``."""
    done: set[str] = set()
    for part in list_parts(folder, _PART_RE):
        done |= {key for (key,) in keys_of(part, ("intention_id",), source)}
    return done


@dataclass
class RescoreSummary(JobTally):
    folder: str
    source: str
    selected: int = 0
    no_p_yes: int = 0  # answers for which the backend gave no P(yes) (no logprobs)

    @property
    def planned(self) -> int:
        return self.selected

    def text(self) -> str:
        lines = [f"{self.source}: {self.selected} rows selected; " + self.done_text("rescored")]
        if self.no_p_yes:
            lines.append(
                f"{self.no_p_yes} answers came without P(yes) (the backend/server gave no logits or "
                "logprobs): they have a verdict but no score"
            )
        if failed := self.errors_text(f"{self.folder}/{STATE_DIR}", "requests"):
            lines.append(failed)
        lines.append(f"results: {self.folder} (read by the Filter thresholds page as p_yes_rescored)")
        return "\n".join(lines)


def _products_of(kb, chunk: pd.DataFrame) -> dict[str, Product]:
    out: dict[str, Product] = {}
    for asin in pd.unique(chunk[["asin_a", "asin_b"]].to_numpy().ravel()):
        p = kb.product(asin) or {"asin": asin, "title": "", "description": "", "image_urls": []}
        out[asin] = Product(
            asin=asin,
            title=p["title"] or "",
            description=p["description"] or "",
            image_urls=list(p["image_urls"] or []),
            category=p.get("category") or "",
        )
    return out


def run_rescore(
    kb,
    rows: pd.DataFrame,
    backend: Backend,
    *,
    params: GenParams | None = None,
    use_images: bool = True,
    image_timeout: float = 2.0,
    chunk_rows: int | None = None,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> RescoreSummary:
    """Ask ``backend`` the role-aware filter question again for ``rows`` (KB rows, e.g. from
    :func:`mind_core.query.facets.filter_rows`) and write the answers under ``<kb>/rescore/<source slug>/``,
    skipping rows already there. See the module docstring."""
    t0 = time.monotonic()
    params = params or GenParams(temperature=0.0, do_sample=False, max_new_tokens=128)
    source = source_of(backend)
    folder = Path(kb.path) / RESCORE_DIR / source_slug(source)
    state = folder / STATE_DIR
    parallel = int(getattr(backend, "concurrency", None) or getattr(backend, "batch_size", None) or 1)
    chunk_rows = chunk_rows or max(16, 2 * parallel)
    summary = RescoreSummary(folder=str(folder), source=source, selected=len(rows))
    runlog = RunLog(state)
    image_options = ImageOptions(use_images=use_images, timeout=image_timeout)
    with job_lock(state, "rescore", f"another rescore run with {source} is writing into {folder}; wait for it"):
        io.remove_temp_files(folder, prefix="part-")  # leftovers of a killed run
        done = done_ids(folder, source)
        todo = rows[~rows["intention_id"].isin(done)]
        summary.done_before = len(rows) - len(todo)
        seq = next_seq(list_parts(folder, _PART_RE), _PART_RE)
        runlog.event("start", source=source, selected=len(rows), todo=len(todo))
        bar = progress_bar(len(rows), summary.done_before, "rescore", progress)
        try:
            for start in range(0, len(todo), chunk_rows):
                chunk = todo.iloc[start : start + chunk_rows]
                products = _products_of(kb, chunk)
                images, _failures = product_images(list(products.values()), image_options)
                jobs, flags = [], []
                for r in chunk.itertuples(index=False):
                    stacked, image_flags = pair_image(images.get(r.asin_a), images.get(r.asin_b))
                    jobs.append(
                        FilterJob(products[r.asin_a], products[r.asin_b], str(r.relation), r.intention, stacked)
                    )
                    flags.append(row_flags(image_flags, backend))
                answers = judge(backend, jobs, params)
                summary.calls += len(jobs)
                now = now_utc()
                records, errors = [], []
                for r, (verdict, err), fl in zip(chunk.itertuples(index=False), answers, flags):
                    if err:
                        errors.append({"intention_id": r.intention_id, "error": err})
                        continue
                    summary.no_p_yes += verdict.p_yes is None
                    records.append(
                        {
                            "intention_id": r.intention_id,
                            "p_yes": verdict.p_yes,
                            "verdict": verdict.verdict,
                            "reason": verdict.reason,
                            "source": source,
                            "created_at": now,
                            "flags": flags_text(fl + verdict.flags),
                        }
                    )
                runlog.append("errors", errors)
                summary.errors += len(errors)
                if records:
                    name = f"part-{seq:06d}.parquet"
                    seq += 1
                    write_part(records, RESCORE_SCHEMA, folder / name)
                    summary.parts.append(name)
                    summary.written += len(records)
                    bar.update(len(records))
                if on_chunk is not None:
                    on_chunk(summary.written)
        finally:
            bar.close()
            summary.seconds = time.monotonic() - t0
            runlog.event("end", written=summary.written, errors=summary.errors, seconds=round(summary.seconds, 2))
    return summary
