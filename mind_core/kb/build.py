"""Build (or verify) a KB folder from intention / product rows: tables, embeddings, FAISS index, filter scores,
manifest (layout: :mod:`mind_core.kb.store`).

``build_kb`` is idempotent: re-running on unchanged input with the same options is a no-op; a changed input,
model or index kind, or a missing/mismatched artifact, triggers a rebuild and says why.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
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
    artifact_problem,
)
from mind_core.schema import INTENTION_COLUMNS, INTENTIONS_SCHEMA, PRODUCT_COLUMNS, PRODUCTS_SCHEMA

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    status: str  # "built" | "unchanged"
    reason: str  # why it was (re)built, or why nothing was done
    manifest: dict[str, Any]
    seconds: float = 0.0


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
    for key in ("manifest_version", "embed_model", "embed_backend", "index_request", "skip_bad", "vectors"):
        if manifest.get(key) != wanted[key]:
            return f"{key} changed ({manifest.get(key)!r} -> {wanted[key]!r})"
    old = {(i["sha256"], i["bytes"]) for i in manifest.get("inputs", [])}
    new = {(i["sha256"], i["bytes"]) for i in wanted["inputs"]}
    if old != new:
        return "input files changed"
    if SCORES_FILE not in manifest.get("artifacts", {}):
        return f"no {SCORES_FILE} yet (built before filter scores existed)"
    return artifact_problem(out, manifest)


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
) -> BuildResult:
    """Build (or verify) the KB folder ``out`` from ``inputs``.

    ``vectors``: optional ``.npy`` file of precomputed intention embeddings (float16/32, one row per intention
    row in input order, same dimension as ``embed_model``, which still encodes queries) — e.g. computed on a GPU
    elsewhere. Loaded with ``allow_pickle=False``.

    ``embed_backend``: ``auto`` / ``torch`` / ``onnx`` / ``onnx-int8`` (:func:`mind_core.kb.embed.resolve_backend`);
    the manifest records the concrete one and a change rebuilds. ``device`` (torch only): ``auto`` / ``cpu`` /
    ``cuda``. Before encoding, the embedding cache is seeded from the vectors an input folder ships
    (:func:`seed_from_inputs`), so the vendored sample is built without encoding anything."""
    from mind_core.data.kb_files import expand_inputs, load_inputs
    from mind_core.kb.critic import build_hook as critic_build_hook
    from mind_core.kb.embed import canonical_model_name, default_model_name, get_embedder, resolve_backend
    from mind_core.kb.index import build_index, choose_spec, save_index
    from mind_core.scores.build import write_build_scores

    t0 = time.perf_counter()
    out = Path(out)
    inputs = list(inputs)
    files = expand_inputs(inputs)
    embed_model = canonical_model_name(embed_model) if embed_model else default_model_name()
    try:
        backend = resolve_backend(embed_model, embed_backend)
    except ValueError as err:
        raise KBError(str(err)) from None
    wanted = {
        "manifest_version": MANIFEST_VERSION,
        "embed_model": embed_model,
        "embed_backend": backend,
        "index_request": index_kind,
        "skip_bad": skip_bad,
        "inputs": _input_fingerprint(files),
        "vectors": _input_fingerprint([Path(vectors)])[0] if vectors else None,
    }
    reason = "--force" if force else _why_rebuild(out, wanted)
    if reason is None:
        manifest = json.loads((out / MANIFEST_FILE).read_text())
        return BuildResult(
            "unchanged", "inputs, options and artifacts match the manifest", manifest, time.perf_counter() - t0
        )
    log.info("building KB in %s: %s", out, reason)

    loaded = load_inputs(inputs, skip_bad=skip_bad)
    if not loaded.intentions:
        raise KBError(f"no intention rows found in {', '.join(map(str, inputs))}")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # a half-built folder must never look complete

    itab = pa.Table.from_pylist(
        [{c: r.get(c) for c in INTENTION_COLUMNS} for r in loaded.intentions], schema=INTENTIONS_SCHEMA
    )
    ptab = pa.Table.from_pylist(
        [{c: p.get(c) for c in PRODUCT_COLUMNS} for p in sorted(loaded.products.values(), key=lambda p: p["asin"])],
        schema=PRODUCTS_SCHEMA,
    )
    io.write_parquet(itab, out / INTENTIONS_FILE)
    io.write_parquet(ptab, out / PRODUCTS_FILE)

    try:
        embedder = get_embedder(embed_model, backend, device=device, threads=threads)
    except ValueError as err:
        raise KBError(str(err)) from None
    seeded = 0 if vectors else seed_from_inputs(files, embedder)
    t_embed = time.perf_counter()
    encoded = 0
    if vectors:
        vecs = _load_vectors(Path(vectors), len(loaded.intentions), embedder.dim, loaded.report.skipped)
    else:
        texts = [r["intention"] for r in loaded.intentions]
        vecs = embedder.encode_cached(texts, batch_size=batch_size, progress=progress)
        encoded = embedder.last_encoded
    embed_s = time.perf_counter() - t_embed
    io.write_npy(out / EMBEDDINGS_FILE, vecs.astype(np.float16))

    spec = choose_spec(index_kind, len(vecs))
    t_index = time.perf_counter()
    index = build_index(vecs, spec)
    index_s = time.perf_counter() - t_index
    save_index(index, out / INDEX_FILE)
    embedder.last_encoded = 0
    scores_info = write_build_scores(
        out / SCORES_FILE,
        loaded.intentions,
        loaded.products,
        vecs,
        embedder,
        grounding=not vectors,
        batch_size=batch_size,
        progress=progress,
    )
    encoded_pairs = embedder.last_encoded if not vectors else 0
    scores_info["critic"] = critic_build_hook(out / SCORES_FILE, loaded.intentions, loaded.products, vecs, embedder)

    artifacts = {
        name: {"bytes": (out / name).stat().st_size}
        for name in (INTENTIONS_FILE, PRODUCTS_FILE, EMBEDDINGS_FILE, INDEX_FILE, SCORES_FILE)
    }
    artifacts[INTENTIONS_FILE]["sha256"] = io.sha256_file(out / INTENTIONS_FILE)
    manifest = {
        **wanted,
        "built_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "mind_core_version": __version__,
        "embed_dim": int(vecs.shape[1]),
        "index_kind": spec.kind,
        "index_factory": spec.factory,
        "metric": "inner_product (cosine on L2-normalised vectors)",
        "search_params": spec.search_params,
        "counts": {
            "intentions": itab.num_rows,
            "products": ptab.num_rows,
            "skipped_rows": loaded.report.skipped,
            "pairs": len({r["pair_id"] for r in loaded.intentions}),
        },
        "skipped_examples": loaded.report.errors,
        "artifacts": artifacts,
        "timings_s": {"embed": round(embed_s, 2), "index": round(index_s, 2)},
        "embedding_cache": {"seeded": seeded, "encoded_intentions": encoded, "encoded_pair_texts": encoded_pairs},
        "scores": scores_info,
    }
    io.write_json(out / MANIFEST_FILE, manifest, ensure_ascii=True)
    return BuildResult("built", reason, manifest, time.perf_counter() - t0)


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


def _load_vectors(path: Path, n_rows: int, dim: int, skipped: int) -> np.ndarray:
    if skipped:
        raise KBError(
            f"--vectors needs every input row: {skipped} rows were skipped, so rows and vectors no "
            "longer line up; fix the input instead of using --skip-bad"
        )
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise KBError(f"{path}: not a readable .npy array ({err})") from None
    if arr.ndim != 2 or arr.shape != (n_rows, dim):
        raise KBError(f"{path}: shape {arr.shape}, expected ({n_rows}, {dim}) = (intention rows, embedding dim)")
    vecs = np.asarray(arr, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    if not np.isfinite(vecs).all() or (norms == 0).any():
        raise KBError(f"{path}: vectors contain NaN/inf or all-zero rows")
    return vecs / norms
