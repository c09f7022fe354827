"""The knowledge base: a folder of Parquet tables + intention embeddings + a FAISS index + a manifest.

```
<kb>/intentions.parquet   one row per intention (schema.INTENTION_COLUMNS); row number = FAISS id
<kb>/products.parquet     asin, title, description, image_urls, category
<kb>/embeddings.npy       float16 [n, dim] normalised intention embeddings (exact facet search, maps, scores)
<kb>/index.faiss          FAISS index (factory string in the manifest)
<kb>/scores.parquet       filter scores per intention row: grounding, typicality (mind_core.scores.metrics)
<kb>/manifest.json        model, dim, index string, counts, input + artifact checksums
```

``build_kb`` is idempotent: re-running on unchanged input with the same options is a no-op; a changed input,
model or index kind, or a missing/mismatched artifact, triggers a rebuild and says why.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mind_core import __version__
from mind_core.schema import INTENTION_COLUMNS, PRODUCT_COLUMNS, RELATIONS

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
INTENTIONS_FILE = "intentions.parquet"
PRODUCTS_FILE = "products.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"
SCORES_FILE = "scores.parquet"
EXPORT_FORMATS = ("csv", "jsonl", "parquet")
EXACT_SUBSET_MAX = 200_000  # facet subsets up to this size are searched exactly on the stored embeddings


class KBError(RuntimeError):
    """The KB folder is missing, not a KB, or its index is stale; the message says what to run."""


class StaleIndexError(KBError):
    pass


# --- schema of the Parquet tables ------------------------------------------------------------------------------

INTENTIONS_SCHEMA = pa.schema(
    [
        ("intention_id", pa.string()),
        ("pair_id", pa.string()),
        ("asin_a", pa.string()),
        ("asin_b", pa.string()),
        ("relation", pa.string()),
        ("intention", pa.string()),
        ("verdict", pa.string()),
        ("reason", pa.string()),
        ("p_yes", pa.float64()),
        ("category", pa.string()),
        ("source", pa.string()),
        ("created_at", pa.string()),
        ("tail", pa.string()),
        ("flags", pa.string()),
    ]
)
PRODUCTS_SCHEMA = pa.schema(
    [
        ("asin", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("image_urls", pa.list_(pa.string())),
        ("category", pa.string()),
    ]
)
assert tuple(INTENTIONS_SCHEMA.names) == INTENTION_COLUMNS and tuple(PRODUCTS_SCHEMA.names) == PRODUCT_COLUMNS


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_parquet(table: pa.Table, path: Path) -> None:
    _atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


# --- build -----------------------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    status: str  # "built" | "unchanged"
    reason: str  # why it was (re)built, or why nothing was done
    manifest: dict[str, Any]
    seconds: float = 0.0


def _input_fingerprint(files: Sequence[Path]) -> list[dict[str, Any]]:
    return [{"path": str(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in files]


def _why_rebuild(out: Path, wanted: dict[str, Any]) -> str | None:
    """None if the existing KB at ``out`` matches ``wanted`` exactly; else the reason to rebuild."""
    mpath = out / MANIFEST_FILE
    if not mpath.exists():
        return "no KB here yet"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"manifest unreadable ({err})"
    for key in ("manifest_version", "embed_model", "index_request", "skip_bad", "vectors"):
        if manifest.get(key) != wanted[key]:
            return f"{key} changed ({manifest.get(key)!r} -> {wanted[key]!r})"
    old = {(i["sha256"], i["bytes"]) for i in manifest.get("inputs", [])}
    new = {(i["sha256"], i["bytes"]) for i in wanted["inputs"]}
    if old != new:
        return "input files changed"
    if SCORES_FILE not in manifest.get("artifacts", {}):
        return f"no {SCORES_FILE} yet (built before filter scores existed)"
    return artifact_problem(out, manifest)


def artifact_problem(kb_dir: Path, manifest: dict[str, Any]) -> str | None:
    """Cheap consistency check of the files against the manifest (sizes, row counts, index size)."""
    for name, meta in manifest.get("artifacts", {}).items():
        p = kb_dir / name
        if not p.exists():
            return f"{name} is missing"
        if p.stat().st_size != meta["bytes"]:
            return f"{name} changed since the index was built ({p.stat().st_size} bytes, manifest says {meta['bytes']})"
    return None


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
) -> BuildResult:
    """Build (or verify) the KB folder ``out`` from ``inputs``.

    ``vectors``: optional ``.npy`` file of precomputed intention embeddings (float16/32, one row per intention
    row in input order, same dimension as ``embed_model``, which still encodes queries) — e.g. computed on a GPU
    elsewhere. Loaded with ``allow_pickle=False``."""
    from mind_core.data.kb_files import expand_inputs, load_inputs
    from mind_core.kb.embed import default_model_name, get_embedder
    from mind_core.kb.index import build_index, choose_spec, save_index

    t0 = time.perf_counter()
    out = Path(out)
    inputs = list(inputs)
    files = expand_inputs(inputs)
    embed_model = embed_model or default_model_name()
    wanted = {
        "manifest_version": MANIFEST_VERSION,
        "embed_model": embed_model,
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
    _write_parquet(itab, out / INTENTIONS_FILE)
    _write_parquet(ptab, out / PRODUCTS_FILE)

    embedder = get_embedder(embed_model)
    t_embed = time.perf_counter()
    if vectors:
        vecs = _load_vectors(Path(vectors), len(loaded.intentions), embedder.dim, loaded.report.skipped)
    else:
        texts = [r["intention"] for r in loaded.intentions]
        vecs = embedder.encode_cached(texts, batch_size=batch_size, progress=progress)
    embed_s = time.perf_counter() - t_embed
    _atomic_write_bytes(out / EMBEDDINGS_FILE, lambda tmp: np.save(open(tmp, "wb"), vecs.astype(np.float16)))  # noqa: SIM115 (replaced by mind_core.io)

    spec = choose_spec(index_kind, len(vecs))
    t_index = time.perf_counter()
    index = build_index(vecs, spec)
    index_s = time.perf_counter() - t_index
    save_index(index, out / INDEX_FILE)
    from mind_core.scores.metrics import write_build_scores

    scores_info = write_build_scores(
        out,
        loaded.intentions,
        loaded.products,
        vecs,
        embedder,
        grounding=not vectors,
        batch_size=batch_size,
        progress=progress,
    )

    artifacts = {
        name: {"bytes": (out / name).stat().st_size}
        for name in (INTENTIONS_FILE, PRODUCTS_FILE, EMBEDDINGS_FILE, INDEX_FILE, SCORES_FILE)
    }
    artifacts[INTENTIONS_FILE]["sha256"] = sha256_file(out / INTENTIONS_FILE)
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
        "scores": scores_info,
    }
    _atomic_write_bytes(out / MANIFEST_FILE, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    return BuildResult("built", reason, manifest, time.perf_counter() - t0)


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


# --- open / query ----------------------------------------------------------------------------------------------


def read_manifest(kb_dir: str | Path) -> dict[str, Any]:
    kb_dir = Path(kb_dir)
    mpath = kb_dir / MANIFEST_FILE
    if not kb_dir.exists():
        raise KBError(
            f"KB folder {kb_dir} does not exist. Build one with: "
            f"python -m mind_core build-kb --input data/mind_sample --out {kb_dir}"
        )
    if not mpath.exists():
        raise KBError(
            f"{kb_dir} is not a built KB (no {MANIFEST_FILE}); its build may have been interrupted. "
            f"Build it with: python -m mind_core build-kb --input <data> --out {kb_dir}"
        )
    try:
        return json.loads(mpath.read_text())
    except json.JSONDecodeError as err:
        raise KBError(f"{mpath} is not valid JSON ({err}); rebuild the KB with build-kb --force") from None


def _rebuild_hint(kb_dir: Path, manifest: dict[str, Any]) -> str:
    inputs = " ".join(sorted({str(Path(i["path"]).parent) for i in manifest.get("inputs", [])})) or "<data>"
    return f"rebuild it with: python -m mind_core build-kb --input {inputs} --out {kb_dir} --force"


# --- fast open: a memory-mapped Arrow copy of the intentions table --------------------------------------------------
# Decoding intentions.parquet takes ~15 s at 1.26M rows (1.4 GB of text) and leaves 10 chunks, which makes every
# row lookup (``iloc``) concatenate whole columns (~0.4 s); products.parquet (200k rows) takes ~2 s. The first open
# therefore also writes uncompressed, single-batch Arrow IPC copies under ``<cache>/kb-arrow/`` (keyed by the
# intentions' SHA-256 from the manifest and the file size); later opens memory-map them (milliseconds; the OS page
# cache does the rest) with zero-copy pandas string columns.

CATEGORY_COLUMNS = ("relation", "verdict", "category", "source")
ARROW_CACHE_VERSION = 1


def _arrow_cache_path(kb_dir: Path, manifest: dict[str, Any], name: str = INTENTIONS_FILE) -> Path | None:
    from mind_core.config import cache_dir

    meta = manifest.get("artifacts", {})
    sha, size = meta.get(INTENTIONS_FILE, {}).get("sha256"), meta.get(name, {}).get("bytes")
    if not sha or not size:
        return None
    stem = Path(name).stem
    return cache_dir() / "kb-arrow" / f"v{ARROW_CACHE_VERSION}-{sha[:32]}-{stem}-{size}.arrow"


def read_intentions_table(kb_dir: Path, manifest: dict[str, Any], name: str = INTENTIONS_FILE) -> pa.Table:
    """The intentions (or ``name``: products) table as one contiguous Arrow batch, categorical columns
    dictionary-encoded; memory-mapped from the Arrow copy when there is one, else read and the copy written."""
    cache = _arrow_cache_path(kb_dir, manifest, name)
    want_rows = manifest.get("counts", {}).get(Path(name).stem)
    if cache is not None and cache.exists():
        try:
            with pa.memory_map(str(cache)) as src:
                table = pa.ipc.open_file(src).read_all()
            if want_rows is None or table.num_rows == want_rows:
                return table
        except (OSError, pa.ArrowInvalid) as err:
            log.warning("ignoring unreadable Arrow cache %s (%s)", cache, err)
    dict_cols = list(CATEGORY_COLUMNS) if name == INTENTIONS_FILE else []
    table = pq.read_table(kb_dir / name, read_dictionary=dict_cols)
    # large_string: one contiguous column may exceed the 2 GiB limit of 32-bit string offsets at scale
    table = table.cast(
        pa.schema([pa.field(f.name, pa.large_string()) if f.type == pa.string() else f for f in table.schema])
    ).combine_chunks()
    if cache is not None and table.num_rows:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=table.num_rows)
            os.replace(tmp, cache)
        except OSError as err:
            log.warning("cannot write Arrow cache %s: %s", cache, err)
    return table


class KnowledgeBase:
    """A loaded KB: pandas frames for the tables, lazily loaded embeddings/index/encoder."""

    def __init__(self, kb_dir: str | Path, *, check: bool = True):
        self.path = Path(kb_dir)
        self.manifest = read_manifest(self.path)
        if check:
            problem = artifact_problem(self.path, self.manifest)
            if problem:
                raise StaleIndexError(
                    f"KB at {self.path} is stale: {problem}; {_rebuild_hint(self.path, self.manifest)}"
                )
        self.intentions: pd.DataFrame = read_intentions_table(self.path, self.manifest).to_pandas()
        products = read_intentions_table(self.path, self.manifest, PRODUCTS_FILE).to_pandas()
        self.products: pd.DataFrame = products.set_index("asin", drop=False)
        for col in CATEGORY_COLUMNS:  # categories sorted, as astype("category") would give
            values = self.intentions[col]
            if not isinstance(values.dtype, pd.CategoricalDtype):
                self.intentions[col] = values.astype("category")
            elif list(values.cat.categories) != sorted(values.cat.categories):
                self.intentions[col] = values.cat.reorder_categories(sorted(values.cat.categories))
        self._index = None
        self._embeddings = None
        self._counts: dict[str, int] | None = None
        self._scores: pd.DataFrame | None = None

    # -- lazily loaded heavy parts
    @property
    def index(self):
        if self._index is None:
            from mind_core.kb.index import apply_search_params, load_index

            index = load_index(self.path / INDEX_FILE)
            if index.ntotal != len(self.intentions):
                raise StaleIndexError(
                    f"index at {self.path} has {index.ntotal} vectors but the KB has {len(self.intentions)} "
                    f"intentions; {_rebuild_hint(self.path, self.manifest)}"
                )
            if index.d != self.manifest["embed_dim"]:
                raise StaleIndexError(
                    f"index dimension {index.d} != manifest {self.manifest['embed_dim']}; "
                    f"{_rebuild_hint(self.path, self.manifest)}"
                )
            apply_search_params(index, self.manifest.get("search_params", {}))
            self._index = index
        return self._index

    @property
    def embeddings(self) -> np.ndarray:
        """float16 [n, dim], memory-mapped."""
        if self._embeddings is None:
            emb = np.load(self.path / EMBEDDINGS_FILE, mmap_mode="r")
            if emb.shape[0] != len(self.intentions):
                raise StaleIndexError(
                    f"embeddings have {emb.shape[0]} rows, KB has {len(self.intentions)}; "
                    f"{_rebuild_hint(self.path, self.manifest)}"
                )
            self._embeddings = emb
        return self._embeddings

    @property
    def scores(self) -> pd.DataFrame:
        """Filter scores aligned with ``intentions`` (p_yes, p_yes_rescored, grounding, typicality, ...);
        see :func:`mind_core.scores.metrics.load_scores`. Loaded on first use."""
        if self._scores is None:
            from mind_core.scores.metrics import load_scores

            self._scores = load_scores(self)
        return self._scores

    @property
    def embed_model(self) -> str:
        return self.manifest["embed_model"]

    def encode_query(self, text: str) -> np.ndarray:
        from mind_core.kb.embed import get_embedder

        return get_embedder(self.embed_model).encode_one(text)

    # -- counts and stats
    def counts(self) -> dict[str, int]:
        if self._counts is None:  # tables never change once loaded; pairs from the manifest (nunique: ~1 s at 1.26M)
            df = self.intentions
            self._counts = {
                "intentions": len(df),
                "products": len(self.products),
                "pairs": int(self.manifest.get("counts", {}).get("pairs") or df["pair_id"].nunique()),
                "kept": int((df["verdict"] == "yes").sum()),
                "filtered": int((df["verdict"] == "no").sum()),
                "relations": int(df["relation"].nunique()),
            }
        return dict(self._counts)

    def _stats(self, by: str) -> pd.DataFrame:
        df = self.intentions
        g = df.groupby(by, observed=True)["verdict"]
        out = pd.DataFrame(
            {
                "intentions": g.size(),
                "kept": g.apply(lambda s: int((s == "yes").sum())),
                "filtered": g.apply(lambda s: int((s == "no").sum())),
            }
        )
        out["unjudged"] = out["intentions"] - out["kept"] - out["filtered"]
        judged = (out["kept"] + out["filtered"]).replace(0, np.nan)
        out["kept_rate"] = (out["kept"] / judged).round(3)
        return out.sort_values("intentions", ascending=False).reset_index()

    def stats_by_relation(self) -> pd.DataFrame:
        return self._stats("relation")

    def stats_by_category(self) -> pd.DataFrame:
        return self._stats("category")

    # -- row queries
    def filter(
        self,
        *,
        relation: str | Sequence[str] | None = None,
        verdict: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        source: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        df = self.intentions
        mask = np.ones(len(df), dtype=bool)
        for col, want in (("relation", relation), ("verdict", verdict), ("category", category), ("source", source)):
            if want is None:
                continue
            values = [want] if isinstance(want, str) else list(want)
            mask &= df[col].isin(values).to_numpy()
        return df[mask]

    def by_product(self, asin: str) -> pd.DataFrame:
        df = self.intentions
        return df[(df["asin_a"] == asin) | (df["asin_b"] == asin)]

    def by_pair(self, asin_a: str, asin_b: str) -> pd.DataFrame:
        from mind_core.schema import pair_id

        return self.intentions[self.intentions["pair_id"] == pair_id(asin_a, asin_b)]

    def product(self, asin: str) -> dict[str, Any] | None:
        if asin not in self.products.index:
            return None
        row = self.products.loc[asin]
        return {c: (list(row[c]) if c == "image_urls" and row[c] is not None else row[c]) for c in PRODUCT_COLUMNS}

    def partners(self, asin: str) -> pd.DataFrame:
        """Co-buy partners of ``asin`` with their titles and intention counts."""
        rows = self.by_product(asin)
        partner = np.where(rows["asin_a"] == asin, rows["asin_b"], rows["asin_a"])
        g = rows.assign(partner=partner).groupby("partner", observed=True)["verdict"]
        out = pd.DataFrame({"intentions": g.size(), "kept": g.apply(lambda s: int((s == "yes").sum()))}).reset_index()
        out["title"] = out["partner"].map(self.products["title"])
        return out.rename(columns={"partner": "asin"}).sort_values("intentions", ascending=False)

    def with_titles(self, df: pd.DataFrame) -> pd.DataFrame:
        titles = self.products["title"]
        return df.assign(title_a=df["asin_a"].map(titles), title_b=df["asin_b"].map(titles))

    # -- semantic search
    def search(self, query: str, k: int = 10, **filters) -> pd.DataFrame:
        """Top-k intentions by cosine similarity to ``query``, optionally within facet filters
        (relation / verdict / category / source). Returns KB rows + ``score`` + ``row`` (FAISS id)."""
        from mind_core.kb.index import search as faiss_search

        if not query or not query.strip():
            raise ValueError("empty query")
        q = self.encode_query(query)
        active = {k_: v for k_, v in filters.items() if v not in (None, [], ())}
        if active:
            subset = self.filter(**active)
            rows = subset.index.to_numpy()
            if len(rows) == 0:
                return self._hits(np.array([], dtype=np.int64), np.array([], dtype=np.float32))
            if len(rows) <= EXACT_SUBSET_MAX:  # exact: score the subset directly
                scores = np.asarray(self.embeddings[rows], dtype=np.float32) @ q
                top = np.argsort(-scores, kind="stable")[:k]
                return self._hits(rows[top], scores[top])
            scores, ids = faiss_search(self.index, q, k, allowed_ids=rows, params=self.manifest.get("search_params"))
        else:
            scores, ids = faiss_search(self.index, q, k)
        keep = ids[0] >= 0
        return self._hits(ids[0][keep], scores[0][keep])

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[pd.DataFrame]:
        """Unfiltered top-k for many queries at once (one batched encode + one FAISS call)."""
        from mind_core.kb.embed import get_embedder
        from mind_core.kb.index import search as faiss_search

        if not len(queries):
            return []
        vecs = get_embedder(self.embed_model).encode(list(queries))
        scores, ids = faiss_search(self.index, vecs, k)
        return [self._hits(i[i >= 0], s[i >= 0]) for s, i in zip(scores, ids)]

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        hits = self.intentions.iloc[rows].copy()
        hits.insert(0, "score", scores.astype(float))
        hits.insert(0, "row", rows)
        return hits.reset_index(drop=True)


# --- export ----------------------------------------------------------------------------------------------------


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def export_frame(df: pd.DataFrame, fmt: str) -> bytes:
    """Serialise rows as CSV, JSON Lines or Parquet bytes (for files and download buttons)."""
    import io

    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    df = _plain(df)
    if fmt == "csv":
        return df.to_csv(index=False).encode("utf-8")
    if fmt == "jsonl":
        return df.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def export(df: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    data = export_frame(df, fmt)
    _atomic_write_bytes(path, lambda tmp: tmp.write_bytes(data))
    return path


def relation_order() -> list[str]:
    return list(RELATIONS)
