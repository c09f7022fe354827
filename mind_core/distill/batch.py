"""Resumable, sharded batch distillation: Amazon metadata in, Parquet parts a KB can be built from out.

Output folder layout (``build-kb --input DIR`` reads it through :func:`mind_core.data.kb_files.load_inputs`)::

    DIR/
      intentions/part-s<i>of<n>-<seq>.parquet   KB rows (INTENTION_COLUMNS), one part per finished chunk
      products/part-s<i>of<n>-<seq>.parquet     products of those rows (PRODUCT_COLUMNS) incl. stage-1 descriptions
      _state/                                   ignored by build-kb
        errors.jsonl          one line per failed call (retried on the next run), with run id and time
        image_failures.jsonl  one line per product whose images could not be loaded
        skipped.jsonl         pairs skipped (--require-images)
        runs.jsonl            one line per run: arguments, counts, duration
        lock-s<i>of<n>        flock held while a run writes shard i/n

Crash safety: every part is written to a hidden temporary file, fsynced and renamed with ``os.replace`` (atomic),
then the folder is fsynced; a half-written part is never visible under its final name. On start the (pair,
relation) keys of the existing intention parts with this run's ``source`` are skipped, so a run killed at any
moment (even ``kill -9``) and started again finishes without redoing or duplicating a finished row. Stage-1
descriptions are written as a products part right after stage 1 of a chunk, before stage 2 starts.

Shards: pair ``p`` belongs to shard ``sha1(pair_id) mod n``; shard ``i`` of ``n`` (0 <= i < n) only works on its
pairs and only writes parts named ``s<i>of<n>``, so shards can run on different machines into copies of the
folder (or one shared folder) and their parts are simply put together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mind_core import io
from mind_core.distill.pipeline import ChunkResult, DistillOptions, run_pairs
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
    read_part,
    write_part,
)
from mind_core.lvlm.base import Backend, source_label
from mind_core.schema import INTENTIONS_SCHEMA, PRODUCT_COLUMNS, PRODUCTS_SCHEMA, CoBuyPair, Product, split_flags

log = logging.getLogger(__name__)

INTENTIONS_DIR = "intentions"
PRODUCTS_DIR = "products"
DEFAULT_CHUNK_PAIRS = 8


def default_chunk_pairs(backend: Backend, n_relations: int) -> int:
    """Pairs per chunk. Each stage of a chunk is one ``generate`` call, and the next stage waits for all of it, so
    the request count per stage (pairs x relations) should keep the backend's parallelism (OpenAI
    ``concurrency`` / transformers ``batch_size``) busy about twice over and, where possible, fill whole waves
    (a multiple of the parallelism): at least :data:`DEFAULT_CHUNK_PAIRS` pairs."""
    parallel = max(1, int(getattr(backend, "concurrency", None) or getattr(backend, "batch_size", None) or 1))
    n = max(1, n_relations)
    target = max(DEFAULT_CHUNK_PAIRS, -(-2 * parallel // n))
    step = parallel // math.gcd(parallel, n)  # the smallest pair count whose requests fill whole waves
    return step * -(-target // step) if step <= 4 * target else target


_PART_RE = re.compile(r"^part-s(\d+)of(\d+)-(\d+)\.parquet$")

#: a problem the user can fix (bad shard spec, output folder in use, unreadable part)
DistillError = JobError


# --- shards ----------------------------------------------------------------------------------------------------


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``None`` -> ``(0, 1)``."""
    if spec is None or not str(spec).strip():
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m:
        raise DistillError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise DistillError(f"--shard {spec}: need n >= 1 and 0 <= i < n (shards are numbered from 0)")
    return i, n


def shard_of(pid: str, n: int) -> int:
    """The shard (0..n-1) a pair id belongs to: a stable hash, the same on every machine and Python version."""
    return int.from_bytes(hashlib.sha1(pid.encode("utf-8")).digest()[:8], "big") % n


def select_pairs(
    pairs: Sequence[CoBuyPair], *, max_pairs: int | None = None, shard: tuple[int, int] = (0, 1)
) -> list[CoBuyPair]:
    """The pairs of one shard, after cutting the full list to ``max_pairs`` (so the shards of a capped run
    together cover exactly the capped unsharded run)."""
    chosen = list(pairs)[:max_pairs] if max_pairs is not None else list(pairs)
    i, n = shard
    return [p for p in chosen if n == 1 or shard_of(p.pair_id, n) == i]


# --- parts already written -------------------------------------------------------------------------------------


def _parts(folder: Path) -> list[Path]:
    return list_parts(folder, _PART_RE)


def read_done_keys(out_dir: Path, source: str) -> set[tuple[str, str]]:
    """``(pair_id, relation)`` of every row with ``source`` already written under ``out_dir/intentions``."""
    done: set[tuple[str, str]] = set()
    for part in _parts(out_dir / INTENTIONS_DIR):
        done |= keys_of(part, ("pair_id", "relation"), source)
    return done


def read_products(out_dir: Path) -> dict[str, dict]:
    """Products already written (last part wins), by ASIN."""
    out: dict[str, dict] = {}
    for part in _parts(out_dir / PRODUCTS_DIR):
        for row in read_part(part).to_pylist():
            out[row["asin"]] = row
    return out


# --- the run ---------------------------------------------------------------------------------------------------


@dataclass
class DistillSummary(JobTally):
    out_dir: str
    source: str
    shard: str
    pairs: int = 0  # pairs of this shard
    relations: int = 0
    total_rows: int = 0  # pairs x relations
    described: int = 0
    skipped_pairs: int = 0
    image_failures: int = 0
    by_others: int = 0  # rows of this shard another process wrote while this run ran (overlapping shard specs)
    filter_unparsed: int = 0  # rows written now whose filter answer began with neither yes nor no

    @property
    def planned(self) -> int:
        return self.total_rows

    @property
    def remaining(self) -> int:
        return self.planned - self.done_before - self.written - self.by_others

    @property
    def all_unparsed(self) -> bool:
        """Every row written now has an unparseable filter answer: the model or server does not answer yes / no."""
        return self.written > 0 and self.filter_unparsed == self.written

    def text(self) -> str:
        lines = [
            f"{self.shard}: {self.pairs} pairs x {self.relations} relations = {self.total_rows} rows; "
            + self.done_text()
        ]
        if self.by_others:
            lines.append(f"{self.by_others} rows of this shard were written by another run meanwhile (not redone)")
        if self.all_unparsed:
            lines.append(
                f"warning: all {self.written} filter answers were unparseable (neither yes nor no): these rows have "
                "no verdict. The model or server does not follow the filter prompt; check it (python -m mind_core "
                "rescore, or another --model) before building a KB from them"
            )
        elif self.filter_unparsed:
            lines.append(
                f"warning: {self.filter_unparsed} of {self.written} filter answers were unparseable (flag "
                "filter_unparsed, no verdict)"
            )
        if self.described:
            lines.append(f"stage 1 described {self.described} products")
        if self.image_failures:
            lines.append(
                f"{self.image_failures} products had no usable image (text fallback); "
                f"see {self.out_dir}/{STATE_DIR}/image_failures.jsonl"
            )
        if self.skipped_pairs:
            lines.append(f"{self.skipped_pairs} pairs skipped (--require-images); see {STATE_DIR}/skipped.jsonl")
        if failed := self.errors_text(f"{self.out_dir}/{STATE_DIR}"):
            lines.append(failed)
        return "\n".join(lines)


def product_record(p: Product) -> dict:
    """A products-part row of ``p``."""
    return {c: (list(p.image_urls) if c == "image_urls" else getattr(p, c)) for c in PRODUCT_COLUMNS}


def run_distill(
    products: dict[str, Product],
    pairs: Sequence[CoBuyPair],
    out_dir: str | Path,
    backend: Backend,
    options: DistillOptions,
    *,
    shard: tuple[int, int] = (0, 1),
    max_pairs: int | None = None,
    chunk_pairs: int | None = None,
    progress: bool = True,
    run_info: dict | None = None,
) -> DistillSummary:
    """Distill ``pairs`` (from :func:`mind_core.data.amazon.load_amazon_metadata`) into ``out_dir``,
    resuming from what is there. See the module docstring for the layout and guarantees."""
    chunk_pairs = chunk_pairs or default_chunk_pairs(backend, len(options.relations))
    with DistillRun(
        products, pairs, out_dir, source_label(backend), options, shard=shard, max_pairs=max_pairs, progress=progress
    ) as run:
        run.start("local", run_info)
        for chunk in run.chunks(chunk_pairs):

            def on_stage(stage: str, count: int) -> None:
                run.bar.set_postfix_str(f"{stage} x{count}", refresh=True)

            res = run_pairs(
                run.pair_products(chunk),
                backend,
                run.options,
                done=run.done,
                on_descriptions=run.save_descriptions,
                on_stage=on_stage,
            )
            run.record(res)
    return run.summary


class DistillRun:
    """One run of a shard into ``out_dir``, whatever computes the chunks (this process: :func:`run_distill`;
    Ray workers: :mod:`mind_core.distill.ray_engine`). Entering it takes the shard's lock, removes a killed run's
    temporary files and reads what is done; :meth:`chunks` gives the pairs still to do, :meth:`record` writes a
    finished chunk as parts (rows another writer wrote meanwhile are dropped) and logs its errors."""

    def __init__(
        self,
        products: dict[str, Product],
        pairs: Sequence[CoBuyPair],
        out_dir: str | Path,
        source: str,
        options: DistillOptions,
        *,
        shard: tuple[int, int] = (0, 1),
        max_pairs: int | None = None,
        progress: bool = True,
    ):
        self.t0 = time.monotonic()
        self.out = Path(out_dir)
        self.state = self.out / STATE_DIR
        i, n = shard
        self.tag = f"s{i}of{n}"
        self.source = source
        self.products = products
        self.runlog = RunLog(self.state)
        self.mine = select_pairs(pairs, max_pairs=max_pairs, shard=shard)
        self.relations = list(options.relations)
        self.base_options = options
        self.progress = progress
        self.summary = DistillSummary(
            out_dir=str(self.out),
            source=source,
            shard=f"shard {i}/{n}",
            pairs=len(self.mine),
            relations=len(self.relations),
            total_rows=len(self.mine) * len(self.relations),
        )
        self._lock = None

    # --- entering: lock, leftovers, what is done ---------------------------------------------------------------
    def __enter__(self) -> DistillRun:
        out, tag = self.out, self.tag
        out.mkdir(parents=True, exist_ok=True)
        busy = f"another distill run is writing shard {tag} into {out}; wait for it or use another --out / --shard"
        self._lock = job_lock(self.state, tag, busy)
        self._lock.__enter__()
        try:
            self._open()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def _open(self) -> None:
        out, tag, products = self.out, self.tag, self.products
        for folder in (out / INTENTIONS_DIR, out / PRODUCTS_DIR):  # leftovers of a killed run of this shard
            io.remove_temp_files(folder, prefix=f"part-{tag}-")
        self.done = read_done_keys(out, self.source)
        self.known_parts = {p.name for p in _parts(out / INTENTIONS_DIR)}
        stored = read_products(out)
        mine_parts = [
            p for d in (INTENTIONS_DIR, PRODUCTS_DIR) for p in _parts(out / d) if p.name.startswith(f"part-{tag}-")
        ]
        self.seq = next_seq(mine_parts, _PART_RE, group=3)

        # product view for this run: stage-1 descriptions written earlier are reused
        current: dict[str, Product] = {}
        for asin, p in products.items():
            prev = stored.get(asin)
            q = Product(
                asin=p.asin,
                title=p.title,
                description=p.description,
                image_urls=list(p.image_urls),
                category=p.category,
            )
            if prev and (prev.get("description") or "").strip() and prev.get("description") != p.description:
                q.description = prev["description"]  # written by stage 1 in an earlier run
            current[asin] = q
        already_described = {a for a, p in current.items() if p.description != products[a].description}
        if self.base_options.describe == "always":
            # "always" = every product not yet described by stage 1
            self.options = dataclasses.replace(self.base_options, describe="missing")
            for asin, p in current.items():
                if asin not in already_described:
                    p.description = ""
        else:
            self.options = self.base_options
        self.current = current
        self.written_products = {a: (r.get("description") or "") for a, r in stored.items()}
        self.image_failed: dict[str, str] = {}
        self.todo = [p for p in self.mine if any((p.pair_id, r) not in self.done for r in self.relations)]
        self.summary.done_before = sum(1 for p in self.mine for r in self.relations if (p.pair_id, r) in self.done)
        self.bar = None

    def start(self, engine: str, run_info: dict | None = None) -> None:
        """Log the run's start (with the command's ``run_info``) and show the progress bar."""
        self.runlog.event(
            "start",
            **{
                **(run_info or {}),
                "shard": self.tag,
                "source": self.source,
                "engine": engine,
                "pairs": len(self.mine),
                "todo_pairs": len(self.todo),
                "relations": self.relations,
            },
        )
        self.bar = progress_bar(self.summary.total_rows, self.summary.done_before, f"distill {self.tag}", self.progress)

    def __exit__(self, kind, *exc) -> None:
        try:
            if kind is None:
                self._count_others()
            if self.bar is not None:
                self.bar.close()
            self.summary.seconds = time.monotonic() - self.t0
            s = self.summary
            self.runlog.event(
                "end",
                shard=self.tag,
                written=s.written,
                errors=s.errors,
                calls=s.calls,
                seconds=round(s.seconds, 2),
            )
        finally:
            self._lock.__exit__(kind, *exc)

    def _read_new_parts(self) -> None:
        """Add the keys of intention parts another process wrote since this run last looked."""
        for part in _parts(self.out / INTENTIONS_DIR):
            if part.name not in self.known_parts:
                self.known_parts.add(part.name)
                self.done |= keys_of(part, ("pair_id", "relation"), self.source)

    def _count_others(self) -> None:
        """Rows another process wrote after this run's last chunk count as done, not remaining."""
        self._read_new_parts()
        mine_done = sum(1 for p in self.mine for r in self.relations if (p.pair_id, r) in self.done)
        s = self.summary
        s.by_others = max(0, mine_done - s.done_before - s.written)

    # --- the work ----------------------------------------------------------------------------------------------
    def chunks(self, chunk_pairs: int) -> list[list[CoBuyPair]]:
        """The pairs still to do, ``chunk_pairs`` at a time."""
        step = max(1, chunk_pairs)
        return [self.todo[start : start + step] for start in range(0, len(self.todo), step)]

    def pair_products(self, chunk: Sequence[CoBuyPair]) -> list[tuple[Product, Product]]:
        """The products of ``chunk``'s pairs as this run sees them (stage-1 descriptions included)."""
        return [(self.current[p.asin_a], self.current[p.asin_b]) for p in chunk]

    def _next_name(self) -> str:
        name = f"part-{self.tag}-{self.seq:06d}.parquet"
        self.seq += 1
        return name

    def _save_products(self, asins: Sequence[str]) -> None:
        recs = []
        for a in dict.fromkeys(asins):
            p = self.current[a]
            if self.written_products.get(a) != p.description or a not in self.written_products:
                recs.append(product_record(p))
                self.written_products[a] = p.description
        if recs:
            name = self._next_name()
            write_part(recs, PRODUCTS_SCHEMA, self.out / PRODUCTS_DIR / name)
            self.summary.parts.append(f"{PRODUCTS_DIR}/{name}")

    def save_descriptions(self, desc: dict[str, str]) -> None:
        """Stage-1 descriptions, written as a products part at once (before stage 2 runs, in this process)."""
        for a, text in desc.items():
            self.current[a].description = text
        self._save_products(list(desc))

    def record(self, res: ChunkResult, *, descriptions_saved: bool = True) -> None:
        """A finished chunk: its logs, then its rows as an intentions part (and its products). With
        ``descriptions_saved=False`` its stage-1 descriptions are written first."""
        out, summary, source = self.out, self.summary, self.source
        if not descriptions_saved and res.descriptions:
            self.save_descriptions(res.descriptions)
        summary.calls += res.calls
        summary.described += len(res.descriptions)
        self.runlog.append("errors", [{"source": source, **e} for e in res.errors])
        new_failures = {a: r for a, r in res.image_failures.items() if a not in self.image_failed}
        self.image_failed.update(new_failures)
        self.runlog.append("image_failures", [{"asin": a, "reason": r} for a, r in new_failures.items()])
        self.runlog.append("skipped", res.skipped)
        summary.errors += len(res.errors)
        summary.skipped_pairs += len(res.skipped)
        summary.image_failures = len(self.image_failed)

        # another process may have written some of these keys meanwhile (e.g. overlapping shard specs)
        self._read_new_parts()
        rows = [r for r in res.rows if (r["pair_id"], r["relation"]) not in self.done]
        if rows:
            self._save_products([a for r in rows for a in (r["asin_a"], r["asin_b"])])
            name = self._next_name()
            write_part(rows, INTENTIONS_SCHEMA, out / INTENTIONS_DIR / name)
            self.known_parts.add(name)
            summary.parts.append(f"{INTENTIONS_DIR}/{name}")
            self.done |= {(r["pair_id"], r["relation"]) for r in rows}
            summary.written += len(rows)
            summary.filter_unparsed += sum("filter_unparsed" in split_flags(r.get("flags")) for r in rows)
            if self.bar is not None:
                self.bar.update(len(rows))
