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
from mind_core.distill.pipeline import DistillOptions, run_pairs
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


def _product_record(p: Product) -> dict:
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
    t0 = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = out / STATE_DIR
    i, n = shard
    tag = f"s{i}of{n}"
    source = source_label(backend)
    runlog = RunLog(state)
    mine = select_pairs(pairs, max_pairs=max_pairs, shard=shard)
    relations = list(options.relations)
    chunk_pairs = chunk_pairs or default_chunk_pairs(backend, len(relations))
    summary = DistillSummary(
        out_dir=str(out),
        source=source,
        shard=f"shard {i}/{n}",
        pairs=len(mine),
        relations=len(relations),
        total_rows=len(mine) * len(relations),
    )

    busy = f"another distill run is writing shard {tag} into {out}; wait for it or use another --out / --shard"
    with job_lock(state, tag, busy):
        for folder in (out / INTENTIONS_DIR, out / PRODUCTS_DIR):  # leftovers of a killed run of this shard
            io.remove_temp_files(folder, prefix=f"part-{tag}-")
        done = read_done_keys(out, source)
        known_parts = {p.name for p in _parts(out / INTENTIONS_DIR)}
        stored = read_products(out)
        mine_parts = [
            p for d in (INTENTIONS_DIR, PRODUCTS_DIR) for p in _parts(out / d) if p.name.startswith(f"part-{tag}-")
        ]
        seq = next_seq(mine_parts, _PART_RE, group=3)

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
        if options.describe == "always":
            opts = dataclasses.replace(
                options, describe="missing"
            )  # "always" = every product not yet described by stage 1
            for asin, p in current.items():
                if asin not in already_described:
                    p.description = ""
        else:
            opts = options
        written_products = {a: (r.get("description") or "") for a, r in stored.items()}
        image_failed: dict[str, str] = {}

        todo = [p for p in mine if any((p.pair_id, r) not in done for r in relations)]
        summary.done_before = sum(1 for p in mine for r in relations if (p.pair_id, r) in done)
        runlog.event(
            "start",
            shard=tag,
            source=source,
            pairs=len(mine),
            todo_pairs=len(todo),
            relations=relations,
            **(run_info or {}),
        )
        bar = progress_bar(summary.total_rows, summary.done_before, f"distill {tag}", progress)

        def next_name() -> str:
            nonlocal seq
            name = f"part-{tag}-{seq:06d}.parquet"
            seq += 1
            return name

        def save_products(asins: Sequence[str]) -> None:
            recs = []
            for a in dict.fromkeys(asins):
                p = current[a]
                if written_products.get(a) != p.description or a not in written_products:
                    recs.append(_product_record(p))
                    written_products[a] = p.description
            if recs:
                name = next_name()
                write_part(recs, PRODUCTS_SCHEMA, out / PRODUCTS_DIR / name)
                summary.parts.append(f"{PRODUCTS_DIR}/{name}")

        try:
            for start in range(0, len(todo), max(1, chunk_pairs)):
                chunk = todo[start : start + max(1, chunk_pairs)]
                chunk_pairs_p = [(current[p.asin_a], current[p.asin_b]) for p in chunk]

                def on_descriptions(desc: dict[str, str]) -> None:
                    for a, text in desc.items():
                        current[a].description = text
                    save_products(list(desc))

                def on_stage(stage: str, count: int) -> None:
                    bar.set_postfix_str(f"{stage} x{count}", refresh=True)

                res = run_pairs(
                    chunk_pairs_p, backend, opts, done=done, on_descriptions=on_descriptions, on_stage=on_stage
                )
                summary.calls += res.calls
                summary.described += len(res.descriptions)
                runlog.append("errors", [{"source": source, **e} for e in res.errors])
                new_failures = {a: r for a, r in res.image_failures.items() if a not in image_failed}
                image_failed.update(new_failures)
                runlog.append("image_failures", [{"asin": a, "reason": r} for a, r in new_failures.items()])
                runlog.append("skipped", res.skipped)
                summary.errors += len(res.errors)
                summary.skipped_pairs += len(res.skipped)
                summary.image_failures = len(image_failed)

                rows = res.rows
                # another process may have written some of these keys meanwhile (e.g. overlapping shard specs)
                for part in _parts(out / INTENTIONS_DIR):
                    if part.name not in known_parts:
                        known_parts.add(part.name)
                        done |= keys_of(part, ("pair_id", "relation"), source)
                rows = [r for r in rows if (r["pair_id"], r["relation"]) not in done]
                if rows:
                    save_products([a for r in rows for a in (r["asin_a"], r["asin_b"])])
                    name = next_name()
                    write_part(rows, INTENTIONS_SCHEMA, out / INTENTIONS_DIR / name)
                    known_parts.add(name)
                    summary.parts.append(f"{INTENTIONS_DIR}/{name}")
                    done |= {(r["pair_id"], r["relation"]) for r in rows}
                    summary.written += len(rows)
                    summary.filter_unparsed += sum("filter_unparsed" in split_flags(r.get("flags")) for r in rows)
                    bar.update(len(rows))
            # rows another process wrote after this run's last chunk count as done, not remaining
            for part in _parts(out / INTENTIONS_DIR):
                if part.name not in known_parts:
                    known_parts.add(part.name)
                    done |= keys_of(part, ("pair_id", "relation"), source)
            mine_done = sum(1 for p in mine for r in relations if (p.pair_id, r) in done)
            summary.by_others = max(0, mine_done - summary.done_before - summary.written)
        finally:
            bar.close()
            summary.seconds = time.monotonic() - t0
            runlog.event(
                "end",
                shard=tag,
                written=summary.written,
                errors=summary.errors,
                calls=summary.calls,
                seconds=round(summary.seconds, 2),
            )
    return summary
