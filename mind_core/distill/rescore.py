"""Recompute the role-aware filter (its answer and P(yes)) for a slice of a built KB with any LVLM backend.

The KB's own tables are never changed. Results go next to them, one folder per backend/model::

    <kb>/rescore/<source slug>/part-<seq>.parquet   intention_id, p_yes, verdict, reason, source, created_at, flags
    <kb>/rescore/<source slug>/_state/errors.jsonl  one line per failed request (retried by the next run)
    <kb>/rescore/<source slug>/_state/runs.jsonl    one line per run start / end

``source`` is ``rescore:<backend>:<model>``. Resumable like ``distill`` (same atomic writer and lock): each chunk of
rows is written as a complete part (temporary file, fsync, rename) only after its answers arrived; on start the
``intention_id`` of every part already in the folder is skipped, so a run killed at any moment (even ``kill -9``)
and started again redoes nothing that was written and loses nothing but the chunk in flight.

:func:`mind_core.scores.metrics.load_scores` (``KnowledgeBase.scores``) reads every part of every source and exposes the
latest answer per row as ``p_yes_rescored`` / ``verdict_rescored`` / ``rescore_source``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mind_core.lvlm.base import Backend, GenParams
from mind_core.scores.metrics import RESCORE_COLUMNS, RESCORE_DIR, now_utc

#: columns ``--where`` may name (KB facets)
WHERE_COLUMNS = ("relation", "verdict", "category", "source")
STATE_DIR = "_state"
_PART_RE = re.compile(r"^part-(\d+)\.parquet$")

RESCORE_SCHEMA = pa.schema(
    [
        ("intention_id", pa.string()),
        ("p_yes", pa.float64()),
        ("verdict", pa.string()),
        ("reason", pa.string()),
        ("source", pa.string()),
        ("created_at", pa.string()),
        ("flags", pa.string()),
    ]
)
assert tuple(RESCORE_SCHEMA.names) == RESCORE_COLUMNS


class RescoreError(Exception):
    """A problem the user can fix (bad --where, folder in use, unreadable part)."""


def parse_where(specs: Sequence[str] | None) -> dict[str, list[str]]:
    """``["relation=usedFor,isA", "verdict=no"]`` -> ``{"relation": ["usedFor", "isA"], "verdict": ["no"]}``;
    several conditions must all hold."""
    out: dict[str, list[str]] = {}
    for spec in specs or []:
        col, sep, values = spec.partition("=")
        col = col.strip()
        if not sep or col not in WHERE_COLUMNS:
            raise RescoreError(
                f"--where {spec!r}: expected COLUMN=VALUE[,VALUE...] with COLUMN one of "
                f"{', '.join(WHERE_COLUMNS)} (e.g. relation=usedFor)"
            )
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise RescoreError(f"--where {spec!r}: no value after '='")
        out.setdefault(col, []).extend(vals)
    return out


def select_rows(kb, where: dict[str, list[str]] | None = None, limit: int | None = None) -> pd.DataFrame:
    """The KB rows to rescore: those matching every ``where`` condition, in KB order, the first ``limit`` of them
    (the cut is made before skipping finished rows, so re-running the same command targets the same rows)."""
    rows = kb.filter(**(where or {}))
    return rows if limit is None else rows.head(limit)


def source_of(backend: Backend) -> str:
    return f"rescore:{backend.name}:{backend.model}"


def source_slug(source: str) -> str:
    """A folder name for a source: ``rescore:openai:llava-1.5`` -> ``openai_llava-1.5``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.removeprefix("rescore:")).strip("_.")
    return slug[-100:] or "unnamed"


def _parts(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _PART_RE.match(p.name))


def done_ids(folder: Path, source: str) -> set[str]:
    """``intention_id`` of every row of ``source`` already written in ``folder``."""
    done: set[str] = set()
    for part in _parts(folder):
        try:
            t = pq.read_table(part, columns=["intention_id", "source"])
        except Exception as err:  # pyarrow raises several types for damaged files
            raise RescoreError(
                f"{part}: not a readable Parquet part ({err}); it was not written by this tool's "
                "atomic writer; move it away and re-run"
            ) from None
        done.update(
            i for i, s in zip(t.column("intention_id").to_pylist(), t.column("source").to_pylist()) if s == source
        )
    return done


@dataclass
class RescoreSummary:
    folder: str
    source: str
    selected: int = 0
    done_before: int = 0
    written: int = 0
    errors: int = 0
    calls: int = 0
    no_p_yes: int = 0  # answers for which the backend gave no P(yes) (no logprobs)
    seconds: float = 0.0
    parts: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.selected - self.done_before - self.written

    def text(self) -> str:
        lines = [
            f"{self.source}: {self.selected} rows selected; {self.done_before} were done, {self.written} "
            f"rescored now, {self.remaining} remaining ({self.calls} backend calls in {self.seconds:.1f} s)"
        ]
        if self.no_p_yes:
            lines.append(
                f"{self.no_p_yes} answers came without P(yes) (the backend/server gave no logits or "
                "logprobs): they have a verdict but no score"
            )
        if self.errors:
            lines.append(
                f"{self.errors} requests failed (see {self.folder}/{STATE_DIR}/errors.jsonl); re-run the "
                "same command to retry them"
            )
        lines.append(f"results: {self.folder} (read by the Filter thresholds page as p_yes_rescored)")
        return "\n".join(lines)


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
    """Ask ``backend`` the role-aware filter question again for ``rows`` (from :func:`select_rows`) and write the
    answers under ``<kb>/rescore/<source slug>/``, skipping rows already there. See the module docstring."""
    from tqdm import tqdm

    from mind_core.distill.batch import DistillError, _append_jsonl, _shard_lock, write_table_atomic
    from mind_core.distill.parsing import flags_text, parse_filter
    from mind_core.distill.pipeline import DistillOptions, pair_image, product_images
    from mind_core.distill.prompts import filter_request
    from mind_core.schema import Product

    t0 = time.monotonic()
    params = params or GenParams(temperature=0.0, do_sample=False, max_new_tokens=128)
    source = source_of(backend)
    folder = Path(kb.path) / RESCORE_DIR / source_slug(source)
    state = folder / STATE_DIR
    parallel = int(getattr(backend, "concurrency", None) or getattr(backend, "batch_size", None) or 1)
    chunk_rows = chunk_rows or max(16, 2 * parallel)
    summary = RescoreSummary(folder=str(folder), source=source, selected=len(rows))
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    text_only = bool(getattr(backend, "text_only", False))
    options = DistillOptions(use_images=use_images, image_timeout=image_timeout)
    try:
        lock = _shard_lock(state, "rescore")
        lock.__enter__()
    except DistillError:
        raise RescoreError(f"another rescore run with {source} is writing into {folder}; wait for it") from None
    try:
        for tmp in folder.glob(".part-*.tmp"):  # leftovers of a killed run
            tmp.unlink(missing_ok=True)
        done = done_ids(folder, source)
        todo = rows[~rows["intention_id"].isin(done)]
        summary.done_before = len(rows) - len(todo)
        seq = 1 + max([int(m.group(1)) for p in _parts(folder) if (m := _PART_RE.match(p.name))], default=0)
        _append_jsonl(
            state / "runs.jsonl",
            [
                {
                    "run": run_id,
                    "event": "start",
                    "at": time.time(),
                    "source": source,
                    "selected": len(rows),
                    "todo": len(todo),
                }
            ],
        )
        bar = tqdm(
            total=len(rows),
            initial=summary.done_before,
            unit="row",
            desc="rescore",
            disable=not progress,
            dynamic_ncols=True,
            mininterval=0.5,
        )
        try:
            for start in range(0, len(todo), chunk_rows):
                chunk = todo.iloc[start : start + chunk_rows]
                products: dict[str, Product] = {}
                for asin in pd.unique(chunk[["asin_a", "asin_b"]].to_numpy().ravel()):
                    p = kb.product(asin) or {"asin": asin, "title": "", "description": "", "image_urls": []}
                    products[asin] = Product(
                        asin=asin,
                        title=p["title"] or "",
                        description=p["description"] or "",
                        image_urls=list(p["image_urls"] or []),
                        category=p.get("category") or "",
                    )
                images, _failures = product_images(list(products.values()), options)
                reqs, flags = [], []
                for r in chunk.itertuples(index=False):
                    stacked, image_flags = pair_image(images.get(r.asin_a), images.get(r.asin_b))
                    reqs.append(
                        filter_request(products[r.asin_a], products[r.asin_b], str(r.relation), r.intention, stacked)
                    )
                    flags.append(image_flags + (["text_only"] if text_only and "text_only" not in image_flags else []))
                outs = backend.generate(reqs, params)
                if len(outs) != len(reqs):
                    raise RescoreError(f"backend {backend.name} returned {len(outs)} answers for {len(reqs)} requests")
                summary.calls += len(reqs)
                now = now_utc()
                records, errors = [], []
                for r, out, fl in zip(chunk.itertuples(index=False), outs, flags):
                    if out.error:
                        errors.append(
                            {"run": run_id, "at": time.time(), "intention_id": r.intention_id, "error": out.error}
                        )
                        continue
                    verdict, reason = parse_filter(out.text)
                    if verdict is None:
                        fl = fl + ["filter_unparsed"]
                    summary.no_p_yes += out.p_yes is None
                    records.append(
                        {
                            "intention_id": r.intention_id,
                            "p_yes": None if out.p_yes is None else float(out.p_yes),
                            "verdict": verdict,
                            "reason": reason,
                            "source": source,
                            "created_at": now,
                            "flags": flags_text(fl),
                        }
                    )
                _append_jsonl(state / "errors.jsonl", errors)
                summary.errors += len(errors)
                if records:
                    name = f"part-{seq:06d}.parquet"
                    seq += 1
                    write_table_atomic(pa.Table.from_pylist(records, schema=RESCORE_SCHEMA), folder / name)
                    summary.parts.append(name)
                    summary.written += len(records)
                    bar.update(len(records))
                if on_chunk is not None:
                    on_chunk(summary.written)
        finally:
            bar.close()
            summary.seconds = time.monotonic() - t0
            _append_jsonl(
                state / "runs.jsonl",
                [
                    {
                        "run": run_id,
                        "event": "end",
                        "at": time.time(),
                        "written": summary.written,
                        "errors": summary.errors,
                        "seconds": round(summary.seconds, 2),
                    }
                ],
            )
    finally:
        lock.__exit__(None, None, None)
    return summary
