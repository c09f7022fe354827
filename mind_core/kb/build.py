"""Build (or verify) a KB folder from intention / product rows: tables, embeddings, FAISS index, filter scores,
manifest (layout: :mod:`mind_core.kb.store`).

``build_kb`` is idempotent: re-running on unchanged input with the same options is a no-op; a changed input,
model or index kind, or a missing/mismatched artifact, triggers a rebuild and says why.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mind_core import __version__, io
from mind_core.kb.store import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    INTENTIONS_FILE,
    MANIFEST_FILE,
    MANIFEST_VERSION,
    PRODUCTS_FILE,
    SCORES_FILE,
    KBError,
    content_problem,
    manifest_problem,
)
from mind_core.schema import INTENTION_COLUMNS, INTENTIONS_SCHEMA, PRODUCT_COLUMNS, PRODUCTS_SCHEMA, intention_body

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    status: str  # "built" | "unchanged"
    reason: str  # why it was (re)built, or why nothing was done
    manifest: dict[str, Any]
    seconds: float = 0.0


#: ``--embed-text``: what of an intention is embedded (the KB keeps and shows the full text either way)
EMBED_TEXTS = ("full", "body")
DEFAULT_EMBED_TEXT = "full"
#: KB-folder entries a rebuild makes; everything else in the folder (``rescore/`` answers ...) is carried over
BUILD_ARTIFACTS = (INTENTIONS_FILE, PRODUCTS_FILE, EMBEDDINGS_FILE, INDEX_FILE, SCORES_FILE, MANIFEST_FILE)
STAGING_PREFIX = ".building-"
ROW_BATCH = 16_384  # rows per Parquet batch and per embedding chunk


def _input_fingerprint(files: Sequence[Path]) -> list[dict[str, Any]]:
    return [{"path": str(f), "bytes": f.stat().st_size, "sha256": io.sha256_file(f)} for f in files]


def _why_rebuild(out: Path, wanted: dict[str, Any]) -> str | None:
    """None if the existing KB at ``out`` matches ``wanted`` exactly; else the reason to rebuild."""
    mpath = out / MANIFEST_FILE
    if not mpath.exists():
        return "no KB here yet"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"manifest unreadable ({err})"
    if not isinstance(manifest, dict):
        return "manifest is not a JSON object"
    for key in (
        "manifest_version",
        "embed_model",
        "embed_backend",
        "embed_text",
        "index_request",
        "skip_bad",
        "vectors",
        "metadata",
        "max_field_chars",
    ):
        if manifest.get(key, _LEGACY.get(key)) != wanted[key]:
            return f"{key} changed ({manifest.get(key, _LEGACY.get(key))!r} -> {wanted[key]!r})"
    legacy_recipe = "int8-all-matmul-v1" if manifest.get("embed_backend") == "onnx-int8" else None
    recipe = manifest.get("embed_recipe", legacy_recipe)
    if recipe != wanted["embed_recipe"]:
        return f"embed_recipe changed ({recipe!r} -> {wanted['embed_recipe']!r})"
    old = {(i.get("sha256"), i.get("bytes")) for i in manifest.get("inputs", []) if isinstance(i, dict)}
    new = {(i["sha256"], i["bytes"]) for i in wanted["inputs"]}
    if old != new:
        return "input files changed"
    if SCORES_FILE not in manifest.get("artifacts", {}):
        return f"no {SCORES_FILE} yet (built before filter scores existed)"
    if problem := manifest_problem(manifest):
        return f"manifest is not a KB manifest ({problem})"
    return content_problem(out, manifest)


def _recipe(backend: str) -> str | None:
    """The quantisation recipe of ``onnx-int8`` (None for the exact backends)."""
    if backend != "onnx-int8":
        return None
    from mind_core.kb.embed_cache import INT8_RECIPE

    return INT8_RECIPE


#: what a manifest written before a key existed meant by its absence
_LEGACY: dict[str, Any] = {"embed_text": "full", "metadata": None, "max_field_chars": 100_000}


def _peak_rss_mb() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def embed_input(text: str, embed_text: str) -> str:
    """What is embedded for an intention: the full text, or its informative part (``body``)."""
    return intention_body(text) if embed_text == "body" else text


def build_kb(
    inputs: Iterable[str | Path],
    out: str | Path,
    *,
    embed_model: str | None = None,
    index_kind: str = "auto",
    skip_bad: bool = False,
    force: bool = False,
    progress: bool = True,
    batch_size: int = 64,
    vectors: str | Path | None = None,
    embed_backend: str = "auto",
    device: str | None = None,
    threads: int | None = None,
    metadata: str | Path | None = None,
    max_field_chars: int | None = None,
    embed_text: str = DEFAULT_EMBED_TEXT,
    ray_options=None,
) -> BuildResult:
    """Build (or verify) the KB folder ``out`` from ``inputs`` (any layout :mod:`mind_core.data.kb_files`
    reads: our JSONL / Parquet, MIND's official CSV, FolkScope's packed batches).

    The new KB is built in a hidden folder next to ``out`` and swapped in at the end
    (:func:`mind_core.io.swap_dir`): a build that fails or is killed leaves the previous KB as it was, and a
    reader sees the old KB or the new one, never a mix. Input rows are streamed (Parquet written in batches,
    embeddings chunk by chunk, the index added to in chunks), so memory stays bounded at 1.26M rows.

    ``vectors``: optional ``.npy`` file of precomputed intention embeddings (float16/32, one row per intention
    row in input order, same dimension as ``embed_model``, which still encodes queries) — e.g. computed on a GPU
    elsewhere. Loaded with ``allow_pickle=False``.

    ``embed_backend``: ``auto`` / ``torch`` / ``onnx`` / ``onnx-int8`` (:func:`mind_core.kb.embed.resolve_backend`);
    the manifest records the concrete one and a change rebuilds. ``device`` (torch only): ``auto`` / ``cpu`` /
    ``cuda``. Before encoding, the embedding cache is seeded from the vectors an input folder ships
    (:func:`seed_from_inputs`), so the vendored sample is built without encoding anything.

    ``metadata``: Amazon Review 2018 metadata (``.json[.gz]``) joined by ASIN to fill image URLs, categories and
    missing titles / descriptions. ``max_field_chars``: longest accepted text field (default: settings).
    ``embed_text``: ``full`` or ``body`` (:data:`EMBED_TEXTS`). New KBs get the default critic's column
    (:func:`mind_core.kb.critic.build_hook`). ``ray_options``
    (:class:`~mind_core.distill.ray_engine.RayOptions`): the intention embeddings are encoded on Ray
    (:mod:`mind_core.kb.ray_embed`), the same vectors in the same file."""
    from mind_core import config
    from mind_core.data.kb_files import InputReader
    from mind_core.kb.embed import canonical_model_name, default_model_name, get_embedder, resolve_backend
    from mind_core.kb.index import INDEX_KINDS

    t0 = time.perf_counter()
    out = Path(out)
    if embed_text not in EMBED_TEXTS:
        raise KBError(f"unknown embed_text {embed_text!r}; choose one of {', '.join(EMBED_TEXTS)}")
    max_field_chars = max_field_chars or config.settings().max_field_chars
    reader = InputReader(inputs, skip_bad=skip_bad, max_field_chars=max_field_chars, metadata=metadata)
    embed_model = canonical_model_name(embed_model) if embed_model else default_model_name()
    try:
        backend = resolve_backend(embed_model, embed_backend)
    except ValueError as err:
        raise KBError(str(err)) from None
    if metadata is not None and not Path(metadata).is_file():
        raise KBError(f"--metadata {metadata}: no such file")
    wanted = {
        "manifest_version": MANIFEST_VERSION,
        "embed_model": embed_model,
        "embed_backend": backend,
        "embed_recipe": _recipe(backend),
        "embed_text": embed_text,
        "index_request": index_kind,
        "skip_bad": skip_bad,
        "max_field_chars": max_field_chars,
        "inputs": _input_fingerprint(reader.files),
        "vectors": _input_fingerprint([Path(vectors)])[0] if vectors else None,
        "metadata": _input_fingerprint([Path(metadata)])[0] if metadata else None,
    }
    reason = "--force" if force else _why_rebuild(out, wanted)
    if reason is None:
        manifest = json.loads((out / MANIFEST_FILE).read_text())
        return BuildResult(
            "unchanged", "inputs, options and artifacts match the manifest", manifest, time.perf_counter() - t0
        )
    log.info("building KB in %s: %s", out, reason)
    if index_kind not in INDEX_KINDS:  # fail now, before any work
        raise ValueError(f"unknown index kind {index_kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    try:  # a bad --embed-model fails here, before the input is read
        embedder = get_embedder(embed_model, backend, device=device, threads=threads)
    except ValueError as err:
        raise KBError(str(err)) from None

    out.parent.mkdir(parents=True, exist_ok=True)
    # one build per target at a time (a second one waits); under the lock, staging folders left by a build that
    # was killed are removed
    with io.file_lock(out.parent / f".{out.name}.build.lock"):
        for stale in out.parent.glob(f"{STAGING_PREFIX}{out.name}-*"):
            log.info("removing %s, left by an interrupted build", stale)
            shutil.rmtree(stale, ignore_errors=True)
        stage = out.parent / f"{STAGING_PREFIX}{out.name}-{secrets.token_hex(4)}"
        stage.mkdir()
        try:
            manifest = _build_into(
                stage,
                reader,
                embedder,
                wanted,
                index_kind=index_kind,
                vectors=Path(vectors) if vectors else None,
                embed_text=embed_text,
                batch_size=batch_size,
                progress=progress,
                ray_options=ray_options,
                encoder_args=(device, threads),
            )
            _carry_over(out, stage)
            io.swap_dir(stage, out)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return BuildResult("built", reason, manifest, time.perf_counter() - t0)


def _carry_over(old: Path, new: Path) -> None:
    """Hard-link (or copy) what the old KB folder holds besides the build's own files into the new one."""
    if not old.is_dir():
        return
    for entry in old.iterdir():
        if entry.name in BUILD_ARTIFACTS or entry.name.startswith("."):
            continue
        target = new / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _build_into(
    stage: Path,
    reader,
    embedder,
    wanted: dict[str, Any],
    *,
    index_kind: str,
    vectors: Path | None,
    embed_text: str,
    batch_size: int,
    progress: bool,
    ray_options=None,
    encoder_args: tuple = (None, None),
) -> dict[str, Any]:
    """Write every artifact and the manifest into the empty folder ``stage``; returns the manifest."""
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from mind_core.kb.critic import build_hook as critic_build_hook
    from mind_core.kb.index import build_index, choose_spec, save_index
    from mind_core.scores.build import write_build_scores

    timings: dict[str, float] = {}
    peak: dict[str, float] = {}

    # 1. parse + validate, streamed into intentions.parquet
    t = time.perf_counter()
    ipath = stage / INTENTIONS_FILE
    n = 0
    with pq.ParquetWriter(ipath, INTENTIONS_SCHEMA, compression="zstd") as writer:
        bar = tqdm(desc="reading rows", unit=" rows", disable=not progress)
        for batch in reader.batches(ROW_BATCH):
            writer.write_table(
                pa.Table.from_pylist(
                    [{c: r.get(c) for c in INTENTION_COLUMNS} for r in batch], schema=INTENTIONS_SCHEMA
                )
            )
            n += len(batch)
            bar.update(len(batch))
        bar.close()
    report = reader.report
    if n == 0:
        raise KBError(
            f"no intention rows found in {', '.join(map(str, reader.inputs))}"
            + (f" ({report.skipped} bad rows skipped)" if report.skipped else "")
        )
    if report.stub_products:
        log.warning(
            "%d products are referenced by intentions but described in no input file: kept with empty titles "
            "(add a products file or --metadata)",
            report.stub_products,
        )
    ptab = pa.Table.from_pylist(
        [{c: p.get(c) for c in PRODUCT_COLUMNS} for p in sorted(reader.products.values(), key=lambda p: p["asin"])],
        schema=PRODUCTS_SCHEMA,
    )
    pq.write_table(ptab, stage / PRODUCTS_FILE, compression="zstd")
    timings["parse"] = round(time.perf_counter() - t, 2)
    peak["parse"] = _peak_rss_mb()

    # 2. embeddings, chunk by chunk into embeddings.npy (float16)
    t = time.perf_counter()
    spec = choose_spec(index_kind, n)  # IVF on too few rows fails here, before the encoding
    seeded = 0 if vectors else seed_from_inputs(reader.files, embedder)
    encoded = 0
    with io.NpyWriter(stage / EMBEDDINGS_FILE, (n, embedder.dim), np.float16) as emb:
        if vectors is not None:
            for chunk in _vector_chunks(vectors, n, embedder.dim, report.skipped):
                emb.write(chunk)
        else:
            if ray_options is not None:  # the texts the cache lacks, encoded on Ray; the loop below reads them
                encoded += _encode_on_ray(ipath, embedder, embed_text, ray_options, encoder_args, batch_size, progress)
            bar = tqdm(total=n, desc="embedding intentions", unit=" texts", disable=not progress)
            for texts in _column_chunks(ipath, "intention"):
                vecs = embedder.encode_cached([embed_input(x, embed_text) for x in texts], batch_size=batch_size)
                encoded += embedder.last_encoded
                emb.write(vecs.astype(np.float16))
                bar.update(len(texts))
            bar.close()
    timings["embed"] = round(time.perf_counter() - t, 2)
    peak["embed"] = _peak_rss_mb()

    # 3. index, from the embeddings file in chunks
    t = time.perf_counter()
    vecs = io.NpyChunks(stage / EMBEDDINGS_FILE)  # read in chunks, not mapped: keeps the peak memory down
    index = build_index(vecs, spec)
    save_index(index, stage / INDEX_FILE)
    del index
    timings["index"] = round(time.perf_counter() - t, 2)
    peak["index"] = _peak_rss_mb()

    # 4. filter scores
    t = time.perf_counter()
    embedder.last_encoded = 0
    rows = pq.read_table(ipath, columns=["intention_id", "relation", "asin_a", "asin_b"])
    scores_info = write_build_scores(
        stage / SCORES_FILE,
        rows,
        reader.products,
        vecs,
        embedder,
        grounding=vectors is None,
        batch_size=batch_size,
        progress=progress,
    )
    encoded_pairs = embedder.last_encoded if vectors is None else 0
    del rows
    timings["scores"] = round(time.perf_counter() - t, 2)
    peak["scores"] = _peak_rss_mb()

    # 5. the default critic's P(keep), chunk by chunk
    t = time.perf_counter()
    scores_info["critic"] = critic_build_hook(stage / SCORES_FILE, ipath, reader.products, vecs, embedder)
    del vecs
    timings["critic"] = round(time.perf_counter() - t, 2)
    peak["critic"] = _peak_rss_mb()

    t = time.perf_counter()
    artifacts = {
        name: {"bytes": (stage / name).stat().st_size, "sha256": io.sha256_file(stage / name)}
        for name in (INTENTIONS_FILE, PRODUCTS_FILE, EMBEDDINGS_FILE, INDEX_FILE, SCORES_FILE)
    }
    timings["checksums"] = round(time.perf_counter() - t, 2)
    manifest = {
        **wanted,
        "built_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "build_id": secrets.token_hex(8),
        "mind_core_version": __version__,
        "embed_dim": int(embedder.dim),
        "index_kind": spec.kind,
        "index_factory": spec.factory,
        "metric": "inner_product (cosine on L2-normalised vectors)",
        "search_params": spec.search_params,
        "counts": {
            "intentions": n,
            "products": ptab.num_rows,
            "skipped_rows": report.skipped,
            "pairs": report.pairs,
            "repeated_pair_relations": report.repeated_pair_relations,
            "stub_products": report.stub_products,
            "empty_slots": report.empty_slots,
        },
        "input_layouts": report.layouts,
        "metadata_join": report.metadata,
        "skipped_examples": report.errors,
        "artifacts": artifacts,
        "timings_s": timings,
        "peak_rss_mb": peak,
        "embedding_cache": {"seeded": seeded, "encoded_intentions": encoded, "encoded_pair_texts": encoded_pairs},
        "embed_engine": "local" if ray_options is None else ray_options.describe(),
        "scores": scores_info,
    }
    io.write_json(stage / MANIFEST_FILE, manifest, ensure_ascii=True)
    return manifest


def _encode_on_ray(ipath, embedder, embed_text, ray_options, encoder_args, batch_size, progress) -> int:
    from mind_core.distill.runs import JobError
    from mind_core.kb.ray_embed import encode_on_ray

    texts = ([embed_input(x, embed_text) for x in chunk] for chunk in _column_chunks(ipath, "intention"))
    device, threads = encoder_args
    try:
        return encode_on_ray(
            texts, embedder, ray_options, device=device, threads=threads, batch_size=batch_size, progress=progress
        )
    except JobError as err:
        raise KBError(str(err)) from None


def _column_chunks(path: Path, column: str, rows: int = ROW_BATCH):
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=[column]):
        yield batch.column(0).to_pylist()


SEED_DIR = "embedding_seed"


def seed_paths(folder: Path, model_name: str, backend: str) -> tuple[Path, Path]:
    """``<folder>/embedding_seed/<model>.<backend>.keys.npy`` (N x 20 uint8: SHA-1 of each text) and
    ``….f16.npy`` (N x dim float16 vectors): precomputed embeddings an input folder may ship."""
    stem = Path(folder) / SEED_DIR / f"{model_name}.{backend}"
    return stem.with_name(stem.name + ".keys.npy"), stem.with_name(stem.name + ".f16.npy")


def seed_from_inputs(files: Sequence[Path], embedder) -> int:
    """Add the vectors shipped next to the input files (see :func:`seed_paths`) to the embedding cache of the
    encoder's model and backend; returns how many were new. A seed of another model or backend is not used."""
    from mind_core.kb.embed_cache import EmbeddingCache

    added = 0
    for folder in dict.fromkeys(Path(f).parent for f in files):
        keys_path, vecs_path = seed_paths(folder, embedder.model_name, embedder.backend)
        if not (keys_path.is_file() and vecs_path.is_file()):
            continue
        keys = np.load(keys_path, allow_pickle=False)
        vecs = np.load(vecs_path, mmap_mode="r", allow_pickle=False)
        if keys.ndim != 2 or keys.shape[1] != 20 or vecs.shape != (len(keys), embedder.dim):
            log.warning("ignoring embedding seed %s: shapes %s / %s", vecs_path, keys.shape, vecs.shape)
            continue
        added += EmbeddingCache.for_model(embedder.model_name, embedder.backend).seed(keys, vecs)
    if added:
        log.info("embedding cache: %d vectors added from shipped seeds", added)
    return added


def write_seed(folder: Path, texts: Sequence[str], embedder) -> tuple[Path, Path]:
    """Write the seed of ``texts`` (all must be in the encoder's cache) into ``folder``; used to ship the
    vendored sample's embeddings."""
    from mind_core.kb.embed_cache import EmbeddingCache

    keys, vecs = EmbeddingCache.for_model(embedder.model_name, embedder.backend).export_keys(texts)
    keys_path, vecs_path = seed_paths(folder, embedder.model_name, embedder.backend)
    io.write_npy(keys_path, keys)
    io.write_npy(vecs_path, vecs.astype(np.float16))
    return keys_path, vecs_path


def _vector_chunks(path: Path, n_rows: int, dim: int, skipped: int, rows: int = 65_536):
    """The rows of a ``--vectors`` file, checked and L2-normalised, ``rows`` at a time (float32)."""
    if skipped:
        raise KBError(
            f"--vectors needs every input row: {skipped} rows were skipped, so rows and vectors no "
            "longer line up; fix the input instead of using --skip-bad"
        )
    try:
        arr = io.NpyChunks(path)
    except (OSError, ValueError) as err:
        raise KBError(f"{path}: not a readable .npy array ({err})") from None
    if arr.shape != (n_rows, dim):
        raise KBError(f"{path}: shape {arr.shape}, expected ({n_rows}, {dim}) = (intention rows, embedding dim)")
    if arr.dtype.kind != "f":
        raise KBError(f"{path}: dtype {arr.dtype}, expected float16 or float32")
    for start in range(0, n_rows, rows):
        vecs = np.asarray(arr[start : start + rows], dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        if not np.isfinite(vecs).all() or (norms == 0).any():
            raise KBError(f"{path}: vectors contain NaN/inf or all-zero rows (first chunk at row {start})")
        yield vecs / norms
