"""What the resumable batch jobs (``distill`` and ``rescore``) share: numbered Parquet parts written atomically
under a lock, a ``_state/`` folder with JSON-lines logs, and a run id.

A job writes each finished chunk as a new part (:func:`mind_core.io.write_parquet`: temporary file, fsync,
rename), so a part is either complete or absent; on start it reads the keys of the parts already there and skips
that work, so a run killed at any moment and started again redoes nothing that was written. One writer at a time
per part series: :func:`job_lock` (an ``flock``) refuses a second one clearly.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mind_core import io

STATE_DIR = "_state"


class JobError(Exception):
    """A problem the user can fix (folder in use, unreadable part, bad spec)."""


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


@contextmanager
def job_lock(state: Path, tag: str, busy_message: str) -> Iterator[None]:
    """Hold ``<state>/lock-<tag>`` for the block, or raise :class:`JobError` with ``busy_message`` at once; the
    temporary files a killed writer of this series left are removed by the caller once it holds the lock."""
    try:
        with io.file_lock(state / f"lock-{tag}", blocking=False):
            yield
    except io.LockBusy:
        raise JobError(busy_message) from None


def list_parts(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """The finished parts in ``folder`` whose names match ``pattern``, in name order."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and pattern.match(p.name))


def next_seq(parts: Sequence[Path], pattern: re.Pattern[str], group: int = 1) -> int:
    """1 + the largest sequence number among ``parts`` (group ``group`` of ``pattern``)."""
    return 1 + max((int(m.group(group)) for p in parts if (m := pattern.match(p.name))), default=0)


def read_part(part: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """A part's table, or :class:`JobError` naming the file when it cannot be read."""
    try:
        return pq.read_table(part, columns=list(columns) if columns is not None else None)
    except Exception as err:  # pyarrow raises several types for damaged files
        raise JobError(
            f"{part}: not a readable Parquet part ({err}). It was not written by this tool's atomic writer or the "
            "disk was damaged; move it away and re-run."
        ) from None


def keys_of(part: Path, key_columns: Sequence[str], source: str) -> set[tuple]:
    """The key tuples of the rows of ``part`` written by ``source``."""
    t = read_part(part, [*key_columns, "source"])
    cols = [t.column(c).to_pylist() for c in key_columns]
    return {key for key, s in zip(zip(*cols), t.column("source").to_pylist()) if s == source}


def write_part(rows: Sequence[dict[str, Any]], schema: pa.Schema, path: Path) -> None:
    io.write_parquet(pa.Table.from_pylist(list(rows), schema=schema), path)


class RunLog:
    """``<state>/runs.jsonl`` (one line per run start / end) and the other JSON-lines logs of a run."""

    def __init__(self, state: Path, run_id: str | None = None):
        self.state = state
        self.run_id = run_id or new_run_id()

    def event(self, event: str, **fields: Any) -> None:
        io.append_jsonl(self.state / "runs.jsonl", [{"run": self.run_id, "event": event, "at": time.time(), **fields}])

    def append(self, name: str, records: Sequence[dict[str, Any]]) -> None:
        """Records (each stamped with the run id and time) to ``<state>/<name>.jsonl``."""
        now = time.time()
        io.append_jsonl(self.state / f"{name}.jsonl", [{"run": self.run_id, "at": now, **r} for r in records])


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="row",
        desc=desc,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5,
    )


@dataclass(kw_only=True)
class JobTally:
    """What a resumable job did: rows done before it started, written now, failed calls; the summary dataclass of
    each job (distill, rescore) adds its own fields and says how many rows it :attr:`planned`."""

    done_before: int = 0  # rows that existed when the run started
    written: int = 0  # rows written by this run
    errors: int = 0
    calls: int = 0
    seconds: float = 0.0
    parts: list[str] = field(default_factory=list)

    @property
    def planned(self) -> int:
        raise NotImplementedError

    @property
    def remaining(self) -> int:
        return self.planned - self.done_before - self.written

    def done_text(self, verb: str = "written") -> str:
        return (
            f"{self.done_before} were done, {self.written} {verb} now, {self.remaining} remaining "
            f"({self.calls} backend calls in {self.seconds:.1f} s)"
        )

    def errors_text(self, state_dir: str | Path, what: str = "calls") -> str | None:
        if not self.errors:
            return None
        return f"{self.errors} {what} failed (see {state_dir}/errors.jsonl); re-run the same command to retry them"
