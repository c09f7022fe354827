"""``distill --engine ray``: the same stages, backend and output folder as the local engine, with the chunks
computed by a pool of Ray Data actors (on a local Ray instance, or on a cluster with ``--ray-address``).

How it runs:

* The driver (this process) opens the shard's run exactly as the local engine does
  (:class:`mind_core.distill.batch.DistillRun`: the lock, what is done, the stage-1 descriptions written
  earlier), and makes a Ray Dataset of the pairs still to do, one row per pair with its two products.
* ``map_batches`` hands ``chunk_pairs`` pairs at a time to a pool of ``workers`` actors
  (:class:`ChunkWorker`). Each actor builds the backend once from the same
  :class:`~mind_core.lvlm.registry.BackendConfig` the local engine would use and runs
  :func:`mind_core.distill.pipeline.run_pairs` on each batch: the stage code is the same. ``openai`` and
  ``offline`` actors take one CPU each; ``transformers`` actors take one GPU each when the cluster has GPUs.
* The driver writes each finished chunk as it arrives (``iter_rows`` streams results as tasks finish), as the
  same Parquet parts, through :meth:`DistillRun.record`. So only the driver needs the ``--out`` folder (the
  workers need no shared file system), resume, dedup and ``build-kb --input`` work unchanged, and a driver killed
  at any moment (even ``kill -9``) and started again redoes nothing written and writes nothing twice: a chunk is
  on disk completely or not at all, and a chunk in flight when the driver died is computed again.
* Failures: a batch whose code raised (e.g. :class:`~mind_core.lvlm.base.BackendError` when a model server became
  unreachable or answered 404 during a restart) is retried by Ray Data up to ``max_retries`` times
  (``DataContext.retried_map_errors`` / ``max_map_retries``); an actor that died (OOM, a lost node) is restarted and
  its task retried by Ray (actor ``max_restarts`` / ``max_task_retries``, Ray Data's defaults). Calls that failed
  inside a chunk after the backend's own retries are logged in ``_state/errors.jsonl`` and redone by the next
  run, as with the local engine. A batch that still fails stops the run with its message; what finished is kept.

Ray is an optional dependency (``requirements-ray.txt``, ``pip install mind-explorer[ray]``) and is imported only
when this engine runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mind_core.distill.batch import DistillRun, DistillSummary, default_chunk_pairs, product_record
from mind_core.distill.pipeline import ChunkResult, DistillOptions, run_pairs
from mind_core.distill.runs import JobError
from mind_core.lvlm.base import BackendError, source_label
from mind_core.schema import CoBuyPair, Product

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
RAY_INSTALL = "pip install -r requirements-ray.txt (or pip install 'mind-explorer[ray]')"


# --- the Ray session -------------------------------------------------------------------------------------------


def import_ray():
    """``ray`` with Ray Data, or :class:`JobError` saying how to install it."""
    try:
        import ray
        import ray.data  # Ray Data must be there too
    except ImportError as err:
        raise JobError(f"--engine ray needs Ray Data, which is not installed ({err}): {RAY_INSTALL}") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None, min_cpus: int = 1, max_retries: int = 3):
    """Ray for one run: connect to ``address`` (``auto``, ``HOST:PORT``, ``ray://...``) or, with none, start a
    local instance with ``num_cpus`` (default: this machine's, at least ``min_cpus``); a Ray already initialised
    in this process (a notebook, the tests) is used as it is. Ray Data's context is set for the run (no progress
    bars, ``max_retries`` retries of a batch whose code raised) and restored after it."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(
                address="local",
                num_cpus=max(int(num_cpus or os.cpu_count() or 1), int(min_cpus)),
                include_dashboard=False,
            )
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            hint = " (is `ray start --head` running there? `--ray-address auto` finds this machine's cluster)"
            raise JobError(f"could not start or reach {where}: {first}" + (hint if address else "")) from None
        started = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": we know
    ctx = ray.data.DataContext.get_current()
    changes = {"enable_progress_bars": False, "retried_map_errors": True, "max_map_retries": int(max_retries)}
    saved = {k: getattr(ctx, k) for k in changes}
    for k, v in changes.items():
        setattr(ctx, k, v)
    try:
        yield ray
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide ``--engine ray`` runs: the cluster ``address`` (None: a local instance with
    ``num_cpus``), ``workers`` actors at once, ``max_retries`` retries of a batch whose code raised."""

    address: str | None = None
    workers: int = 2
    num_cpus: int | None = None
    max_retries: int = 3

    def session(self):
        return ray_session(self.address, num_cpus=self.num_cpus, min_cpus=self.workers, max_retries=self.max_retries)

    def describe(self) -> str:
        return f"ray ({self.address or 'a local Ray instance'}), {self.workers} workers"


def actor_resources(ray, kind: str) -> dict[str, float]:
    """What one worker actor asks of the cluster: a GPU for the transformers backend when the cluster has one,
    else a CPU."""
    if kind == "transformers" and ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_gpus": 1}
    return {"num_cpus": 1}


def root_cause(err: BaseException) -> BaseException:
    """The exception a Ray error wraps (``RayTaskError.cause``, ``__cause__``), innermost first: what the user's
    message should quote."""
    seen: set[int] = set()
    cur: BaseException = err
    while id(cur) not in seen:
        seen.add(id(cur))
        nxt = getattr(cur, "cause", None) or cur.__cause__
        if not isinstance(nxt, BaseException):
            break
        cur = nxt
    return cur


_RAISED = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit))(?:: (?P<msg>.*))?$")


def failure_message(err: BaseException, what: str, max_retries: int) -> str:
    """One line for a task that failed on Ray: the exception the worker's code raised (Ray hands the driver a
    wrapper whose text holds the worker's traceback; its first non-Ray ``Type: message`` line is the cause)."""
    cause = root_cause(err)
    name, message = type(cause).__name__, next((x for x in str(cause).splitlines() if x.strip()), "")
    for line in str(err).splitlines():
        m = _RAISED.match(line.strip())
        if m and not m.group("type").startswith("ray."):
            name, message = m.group("type").rsplit(".", 1)[-1], m.group("msg") or ""
            break
    return f"{what} failed on Ray after {max_retries} retries: {name}: {message}".rstrip(": ")


# --- the workers -----------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars (the critic's P(keep))
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class ChunkWorker:
    """A Ray Data actor: builds the backend once, then runs the three stages on each batch of pairs (the same
    :func:`~mind_core.distill.pipeline.run_pairs` as the local engine). A batch comes back as one row holding the
    chunk's :class:`~mind_core.distill.pipeline.ChunkResult` as JSON."""

    def __init__(self, config, options: DistillOptions, source: str):
        from mind_core.lvlm.registry import make_backend

        self.backend = make_backend(config)
        got = source_label(self.backend)
        if got != source:
            raise BackendError(f"a Ray worker's backend labels its rows {got!r}, the driver expected {source!r}")
        self.options = options

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        pairs = [(Product(**json.loads(a)), Product(**json.loads(b))) for a, b in zip(batch["a"], batch["b"])]
        done = {(pid, r) for pid, rels in zip(batch["pair_id"], batch["done"]) for r in json.loads(rels)}
        res = run_pairs(pairs, self.backend, self.options, done=done)
        return {"result": [json.dumps(dataclasses.asdict(res), default=_json_default)]}

    def __del__(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            with contextlib.suppress(Exception):
                backend.close()


def _chunk_result(text: str) -> ChunkResult:
    data = json.loads(text)
    return ChunkResult(**{f.name: data[f.name] for f in dataclasses.fields(ChunkResult) if f.name in data})


# --- the driver ------------------------------------------------------------------------------------------------


def _driver_view(config) -> tuple[str, Any, Any]:
    """(source label, the config the workers get, an object with the backend's parallelism) without loading a
    model here: a client backend (openai) or the lazy offline fallback is built and closed (the openai one
    checks the server and names its model, which the workers then use); a model loaded in-process
    (transformers) is only named."""
    from mind_core.lvlm.registry import make_backend

    info = config.info
    if not info.in_process or info.text_only:
        backend = make_backend(config)
        try:
            source = source_label(backend)
            if not info.in_process and config.get("model") is None:
                config = config.with_options(model=backend.model)
            shape = SimpleNamespace(
                concurrency=getattr(backend, "concurrency", None), batch_size=getattr(backend, "batch_size", None)
            )
        finally:
            backend.close()
        return source, config, shape
    named = SimpleNamespace(name=info.name, model=str(config.get("model")))
    return source_label(named), config, SimpleNamespace(batch_size=config.get("batch_size"))


def pair_rows(run: DistillRun) -> list[dict[str, str]]:
    """The dataset rows: one per pair still to do, with its products as this run sees them and the relations
    of it already done."""
    rows = []
    for pair, (a, b) in zip(run.todo, run.pair_products(run.todo)):
        rows.append(
            {
                "pair_id": pair.pair_id,
                "a": json.dumps(product_record(a)),
                "b": json.dumps(product_record(b)),
                "done": json.dumps([r for r in run.relations if (pair.pair_id, r) in run.done]),
            }
        )
    return rows


def run_distill_ray(
    products: dict[str, Product],
    pairs: Sequence[CoBuyPair],
    out_dir: str | Path,
    config,
    options: DistillOptions,
    *,
    ray_options: RayOptions | None = None,
    shard: tuple[int, int] = (0, 1),
    max_pairs: int | None = None,
    chunk_pairs: int | None = None,
    progress: bool = True,
    run_info: dict | None = None,
) -> DistillSummary:
    """:func:`mind_core.distill.batch.run_distill` with the chunks computed by ``workers`` Ray actors, each with
    its own backend built from ``config`` (a :class:`~mind_core.lvlm.registry.BackendConfig`). Same output
    folder, same guarantees (module docstring)."""
    opts = ray_options or RayOptions()
    workers = max(1, int(opts.workers))
    source, config, shape = _driver_view(config)
    chunk_pairs = chunk_pairs or default_chunk_pairs(shape, len(options.relations))
    with (
        opts.session() as ray,
        DistillRun(
            products, pairs, out_dir, source, options, shard=shard, max_pairs=max_pairs, progress=progress
        ) as run,
    ):
        where = {"ray_address": opts.address or "local", "workers": workers, "chunk_pairs": chunk_pairs}
        run.start("ray", {**(run_info or {}), **where})
        rows = pair_rows(run)
        if not rows:
            return run.summary
        n_chunks = -(-len(rows) // chunk_pairs)
        ds = ray.data.from_items(rows, override_num_blocks=n_chunks)
        results = ds.map_batches(
            ChunkWorker,
            fn_constructor_kwargs={"config": config, "options": run.options, "source": source},
            batch_size=chunk_pairs,
            compute=ray.data.ActorPoolStrategy(size=min(workers, n_chunks)),
            **actor_resources(ray, config.kind),
        )
        try:
            for row in results.iter_rows():
                run.record(_chunk_result(row["result"]), descriptions_saved=False)
        except Exception as err:
            if isinstance(err, JobError | BackendError):
                raise
            raise JobError(
                failure_message(err, "a chunk", opts.max_retries)
                + f"; the {run.summary.written} rows written by this run are kept, re-run the same command to resume"
            ) from None
    return run.summary
