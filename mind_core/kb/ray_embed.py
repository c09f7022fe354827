"""``build-kb --engine ray``: the intention embeddings encoded by a pool of Ray Data actors.

The build's embedding step stays what it is (:func:`mind_core.kb.build.build_kb`: the texts of the staged
``intentions.parquet`` chunk by chunk, each through ``encode_cached``, written in row order into the staged
``embeddings.npy``). Before it, :func:`encode_on_ray` computes every text the embedding cache does not hold yet
on Ray:

1. the driver reads the texts in row order and looks them up in the cache (per model and backend,
   :class:`~mind_core.kb.embed_cache.EmbeddingCache`); the distinct missing ones become a Ray Dataset;
2. ``map_batches`` sends :data:`SHARD_ROWS` texts at a time to ``workers`` actors (:class:`EncodeWorker`), each
   holding the same encoder the local build uses (:func:`mind_core.kb.embed.get_embedder`: ONNX or torch; torch
   actors take a GPU each when the cluster has GPUs, CPU actors the cluster's CPUs split between them);
3. each shard of vectors is committed to the cache by the driver as it arrives (so a killed build keeps every
   finished shard and resumes from there); the unchanged local loop then merges them into ``embeddings.npy`` in
   row order, finding every text in the cache.

The vectors are those of the local engine: the same encoder, in float32, rounded to float16 in the same place
(the batch composition differs, which moves a float32 value by ~1e-7 at most; tested equal after the float16
rounding).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mind_core.distill.ray_engine import JobError, RayOptions, failure_message
from mind_core.kb.embed_cache import EmbeddingCache

log = logging.getLogger(__name__)

#: texts per Ray task and per cache commit
SHARD_ROWS = 4096


class EncodeWorker:
    """A Ray Data actor holding one encoder; a batch of texts comes back with its float32 vectors."""

    def __init__(self, model_name: str, backend: str, device: str | None, threads: int | None, batch_size: int):
        from mind_core.kb.embed import get_embedder

        self.encoder = get_embedder(model_name, backend, device=device, threads=threads)
        self.batch_size = batch_size

    def __call__(self, batch) -> dict[str, Any]:
        texts = batch.column("text").to_pylist()
        vecs = self.encoder.encode(texts, batch_size=self.batch_size)
        return {"text": np.array(texts, dtype=object), "vec": np.ascontiguousarray(vecs, dtype=np.float32)}


def missing_texts(chunks: Iterable[Sequence[str]], cache: EmbeddingCache) -> list[str]:
    """The distinct texts of ``chunks`` the cache lacks, in first-seen order."""
    todo: dict[str, None] = {}
    for texts in chunks:
        fresh = [t for t in dict.fromkeys(texts) if t not in todo]
        found = cache.get_many(fresh)
        todo.update((t, None) for t in fresh if t not in found)
    return list(todo)


def encode_on_ray(
    chunks: Iterable[Sequence[str]],
    encoder,
    ray_options: RayOptions,
    *,
    device: str | None = None,
    threads: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> int:
    """Put the vectors of every text of ``chunks`` (the texts to embed, in row order) that ``encoder``'s cache
    lacks into that cache, computed by Ray actors with the same model and backend; returns how many texts were
    encoded. See the module docstring."""
    from tqdm.auto import tqdm

    cache = EmbeddingCache.for_model(encoder.model_name, encoder.backend)
    todo = missing_texts(chunks, cache)
    if not todo:
        return 0
    import pyarrow as pa

    workers = max(1, int(ray_options.workers))
    done = 0
    with ray_options.session() as ray:
        resources, device, threads = _placement(ray, encoder.backend, workers, device, threads)
        log.info("encoding %d texts on Ray: %d workers, %s each", len(todo), workers, resources)
        shards = [pa.table({"text": todo[i : i + SHARD_ROWS]}) for i in range(0, len(todo), SHARD_ROWS)]
        ds = ray.data.from_arrow(shards)
        out = ds.map_batches(
            EncodeWorker,
            fn_constructor_kwargs={
                "model_name": encoder.model_name,
                "backend": encoder.backend,
                "device": device,
                "threads": threads,
                "batch_size": batch_size,
            },
            batch_size=SHARD_ROWS,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(shards))),
            **resources,
        )
        bar = tqdm(total=len(todo), desc="embedding intentions on Ray", unit=" texts", disable=not progress)
        try:
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                texts = [str(t) for t in batch["text"]]
                vecs = np.asarray(batch["vec"], dtype=np.float32)
                if vecs.shape != (len(texts), encoder.dim):
                    raise JobError(f"a Ray worker returned vectors of shape {vecs.shape} for {len(texts)} texts")
                cache.put_many(texts, vecs)
                done += len(texts)
                bar.update(len(texts))
        except JobError:
            raise
        except Exception as err:
            raise JobError(
                failure_message(err, "an embedding batch", ray_options.max_retries)
                + f"; the {done} vectors computed so far are in the embedding cache, re-run to resume"
            ) from None
        finally:
            bar.close()
    return done


def _placement(ray, backend: str, workers: int, device: str | None, threads: int | None):
    """(actor resources, device, threads) for the encoder actors: a GPU each for torch when the cluster has
    GPUs (and ``device`` is not cpu), else the cluster's CPUs split between the actors (``threads`` each, default
    that share)."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if backend == "torch" and gpus >= 1 and device in (None, "auto", "cuda"):
        return {"num_gpus": 1}, "cuda", threads
    cpus = int(ray.cluster_resources().get("CPU", 1))
    share = max(1, cpus // workers)
    return {"num_cpus": share}, ("cpu" if backend == "torch" else device), threads or share
