"""A built knowledge base on disk, and opening it: :class:`KnowledgeBase`.

```
<kb>/intentions.parquet   one row per intention (schema.INTENTION_COLUMNS); row number = FAISS id
<kb>/products.parquet     asin, title, description, image_urls, category
<kb>/embeddings.npy       float16 [n, dim] normalised intention embeddings (exact facet search, maps, scores)
<kb>/index.faiss          FAISS index (factory string in the manifest)
<kb>/scores.parquet       filter scores per intention row: grounding, typicality (mind_core.scores) and, when a
                          critic scored the KB, critic (mind_core.kb.critic)
<kb>/labels/human.parquet human keep / drop labels a critic can learn from (optional; mind_core.scores.critic.labels)
<kb>/rescore/<source>/    the filter asked again by `rescore` (mind_core.distill.rescore)
<kb>/manifest.json        model, dim, index string, counts, input + artifact checksums
```

:mod:`mind_core.kb.build` writes the folder; everything that reads rows (facets, search, product lookups,
aggregations) is in :mod:`mind_core.query`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mind_core import config, io
from mind_core.schema import CRITIC_COLUMN, PRODUCT_COLUMNS, RESCORE_COLUMNS, RESCORE_DIR

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
INTENTIONS_FILE = "intentions.parquet"
PRODUCTS_FILE = "products.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"
SCORES_FILE = "scores.parquet"


class KBError(RuntimeError):
    """The KB folder is missing, not a KB, or its index is stale; the message says what to run."""


class StaleIndexError(KBError):
    pass


# --- the manifest ----------------------------------------------------------------------------------------------


#: what every reader of a KB folder relies on (JSON Schema; extra keys are allowed: manifests grow)
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["embed_model", "embed_dim", "counts", "artifacts"],
    "properties": {
        "embed_model": {"type": "string", "minLength": 1},
        "embed_backend": {"type": "string"},
        "embed_dim": {"type": "integer", "minimum": 1},
        "counts": {
            "type": "object",
            "required": ["intentions"],
            "properties": {"intentions": {"type": "integer", "minimum": 0}},
        },
        "artifacts": {
            "type": "object",
            "required": [INTENTIONS_FILE, PRODUCTS_FILE],
            "additionalProperties": {
                "type": "object",
                "required": ["bytes"],
                "properties": {
                    "bytes": {"type": "integer", "minimum": 0},
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                },
            },
        },
        "search_params": {"type": "object"},
        "inputs": {"type": "array", "items": {"type": "object"}},
        "scores": {"type": "object"},
    },
}


def manifest_problem(manifest: Any) -> str | None:
    """None for a manifest every reader can use, else the first problem in words (``counts.intentions: ...``)."""
    import jsonschema

    errors = sorted(
        jsonschema.Draft202012Validator(MANIFEST_SCHEMA).iter_errors(manifest), key=lambda e: list(e.absolute_path)
    )
    if not errors:
        return None
    err = errors[0]
    where = ".".join(str(p) for p in err.absolute_path)
    return f"{where}: {err.message}" if where else err.message


def read_manifest(kb_dir: str | Path) -> dict[str, Any]:
    """The manifest of a built KB, checked against :data:`MANIFEST_SCHEMA`; :class:`KBError` saying what to run
    when the folder, the file or a key the readers need is missing or malformed."""
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
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise KBError(f"{mpath} is not valid JSON ({err}); rebuild the KB with build-kb --force") from None
    problem = manifest_problem(manifest)
    if problem:
        raise KBError(
            f"{mpath} is not a KB manifest ({problem[:200]}); rebuild the KB with: python -m mind_core build-kb "
            f"--input <data> --out {kb_dir} --force"
        )
    return manifest


def _rebuild_hint(kb_dir: Path, manifest: dict[str, Any]) -> str:
    inputs = " ".join(sorted({str(Path(i["path"]).parent) for i in manifest.get("inputs", [])})) or "<data>"
    return f"rebuild it with: python -m mind_core build-kb --input {inputs} --out {kb_dir} --force"


#: what reading a damaged artifact raises: pyarrow (ArrowException subclasses OSError / ValueError), numpy
#: (ValueError, EOFError), FAISS (RuntimeError)
_READ_ERRORS = (OSError, ValueError, EOFError, RuntimeError, pa.ArrowException)
NPY_MAGIC = b"\x93NUMPY"


def damaged(kb_dir: Path, manifest: dict[str, Any], name: str, detail: object) -> KBError:
    """``<name> is damaged: <what the reader said, one line, without the folder>; rebuild it with: build-kb …``."""
    text = str(detail).strip().splitlines()[0] if str(detail).strip() else type(detail).__name__
    text = text.replace(str(kb_dir / name), name).replace(str(kb_dir), "<kb>")[:200]
    return KBError(f"{name} is damaged: {text}; {_rebuild_hint(kb_dir, manifest)}")


def artifact_problem(kb_dir: Path, manifest: dict[str, Any]) -> str | None:
    """Cheap consistency check of the files against the manifest (presence and sizes); readers also check row
    counts, the index size and the array shapes when they load a file."""
    for name, meta in manifest.get("artifacts", {}).items():
        p = kb_dir / name
        if not p.exists():
            return f"{name} is missing"
        if p.stat().st_size != meta["bytes"]:
            return f"{name} changed since the index was built ({p.stat().st_size} bytes, manifest says {meta['bytes']})"
    return None


def content_problem(kb_dir: Path, manifest: dict[str, Any]) -> str | None:
    """:func:`artifact_problem` plus the SHA-256 of every artifact against the manifest: what ``build-kb`` decides
    "up to date" by (a same-size damaged file is caught here). Reads every file once (1.4 GB/s here: ~2.4 s for the
    3.4 GB of a 1.26M-row KB). An artifact without a recorded checksum (a KB built before they were) is a
    problem too, so such a KB is rebuilt once."""
    problem = artifact_problem(kb_dir, manifest)
    if problem:
        return problem
    for name, meta in manifest.get("artifacts", {}).items():
        want = meta.get("sha256")
        if not want:
            return f"no checksum of {name} recorded (built by an older version)"
        if io.sha256_file(kb_dir / name) != want:
            return f"{name} is damaged: its content does not match the manifest's SHA-256 (same size)"
    return None


# --- fast open: a memory-mapped Arrow copy of the intentions table --------------------------------------------------
# Decoding intentions.parquet takes ~15 s at 1.26M rows (1.4 GB of text) and leaves 10 chunks, which makes every
# row lookup (``iloc``) concatenate whole columns (~0.4 s); products.parquet (200k rows) takes ~2 s. The first open
# therefore also writes uncompressed, single-batch Arrow IPC copies under ``<cache>/kb-arrow/`` (keyed by the
# file's SHA-256, verified when the copy is written, and the file's identity); later opens memory-map them
# (milliseconds; the OS page cache does the rest) with zero-copy pandas string columns.

CATEGORY_COLUMNS = ("relation", "verdict", "category", "source")
ARROW_CACHE_VERSION = 2


def _arrow_cache_path(kb_dir: Path, manifest: dict[str, Any], name: str = INTENTIONS_FILE) -> Path | None:
    """``<cache>/kb-arrow/v2-<sha256 of the file>-<stem>-<identity of the file>.arrow``, or None when the manifest
    records no checksum of ``name`` (no cache then). The identity (device, inode, size, mtime) means a file changed
    or replaced since the copy was made never hits it; the checksum is verified before a copy is written
    (:func:`read_intentions_table`), so a crafted folder that claims another KB's checksum cannot seed its rows
    into that KB's cache."""
    sha = manifest.get("artifacts", {}).get(name, {}).get("sha256")
    if not sha:
        return None
    try:
        st = (kb_dir / name).stat()
    except OSError:
        return None
    ident = hashlib.sha256(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return config.cache_dir("kb-arrow") / f"v{ARROW_CACHE_VERSION}-{sha[:32]}-{Path(name).stem}-{ident}.arrow"


def read_intentions_table(kb_dir: Path, manifest: dict[str, Any], name: str = INTENTIONS_FILE) -> pa.Table:
    """The intentions (or ``name``: products) table as one contiguous Arrow batch, categorical columns
    dictionary-encoded; memory-mapped from the Arrow copy when there is one, else read and the copy written
    (after the file's SHA-256 is checked against the manifest). A file that is not what the manifest describes
    raises :class:`ValueError` (pyarrow's errors pass through): :class:`KnowledgeBase` reports it as damaged."""
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
    if want_rows is not None and table.num_rows != want_rows:
        raise ValueError(f"{table.num_rows} rows, the manifest says {want_rows}")  # the caller names the file
    # large_string: one contiguous column may exceed the 2 GiB limit of 32-bit string offsets at scale
    table = table.cast(
        pa.schema([pa.field(f.name, pa.large_string()) if f.type == pa.string() else f for f in table.schema])
    ).combine_chunks()
    if cache is not None and table.num_rows:
        if io.sha256_file(kb_dir / name) != manifest["artifacts"][name]["sha256"]:
            raise ValueError("its content does not match the manifest's SHA-256")  # the caller names the file
        try:
            with (
                io.atomic_path(cache, durable=False) as tmp,
                pa.OSFile(str(tmp), "wb") as sink,
                pa.ipc.new_file(sink, table.schema) as writer,
            ):
                writer.write_table(table, max_chunksize=table.num_rows)
        except OSError as err:
            log.warning("cannot write Arrow cache %s: %s", cache, err)
    return table


def prefetch_rows(frame: pd.DataFrame, rows: Any, columns: Any = None) -> int:
    """Read ahead the pages that hold ``rows`` (positions) of ``frame``'s Arrow string columns (all, or
    ``columns``), all together (:func:`mind_core.io.will_need`): first the offsets of those rows, then their text.

    The tables are memory-mapped Arrow copies, so taking a few hundred scattered rows from a cold page cache costs
    one blocking page fault per page (each reading the device's read-ahead around it) one after the other: 0.7-1.0
    s for 200 search hits of a 1.26M-row KB here, ~10-20 ms after this (docs/measurements.md, "Dashboard").
    Columns held in memory (not mapped) cost nothing here. Returns the number of ranges asked for."""
    idx = np.asarray(rows, dtype=np.int64).ravel()
    if not len(idx) or not len(frame):
        return 0
    strings = []
    for name in frame.columns if columns is None else columns:
        chunked = getattr(frame[name].array, "_pa_array", None)  # pandas' Arrow-backed string arrays
        if chunked is None or chunked.num_chunks != 1:
            continue
        arr = chunked.chunk(0)
        if pa.types.is_large_string(arr.type):
            width, dtype = 8, np.int64
        elif pa.types.is_string(arr.type):
            width, dtype = 4, np.int32
        else:
            continue
        _, offsets, data = arr.buffers()
        if offsets is None or data is None:
            continue
        at = arr.offset + idx
        strings.append((offsets, data, at, dtype))
        io.will_need(offsets.address + at * width, offsets.address + (at + 2) * width)
    calls = 0
    for offsets, data, at, dtype in strings:
        bounds = np.frombuffer(offsets, dtype=dtype)  # zero-copy: reads only the pages asked for above
        calls += io.will_need(data.address + bounds[at], data.address + bounds[at + 1])
    return calls


def take_rows(frame: pd.DataFrame, rows: Any, columns: Any = None) -> pd.DataFrame:
    """``frame.iloc[rows]`` (only ``columns`` when given), the rows' pages read ahead together first
    (:func:`prefetch_rows`): scattered rows of a memory-mapped table in about one disk round trip."""
    prefetch_rows(frame, rows, columns)
    return (frame if columns is None else frame[list(columns)]).iloc[rows]


def _pin(kb_dir: Path, names) -> dict[str, int]:
    """Open ``names`` of ``kb_dir`` read-only and keep the descriptors (where ``/proc/self/fd`` exists)."""
    if not Path("/proc/self/fd").is_dir():
        return {}
    fds: dict[str, int] = {}
    for name in names:
        with contextlib.suppress(OSError):
            fds[name] = os.open(kb_dir / name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return fds


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
        try:
            self.intentions: pd.DataFrame = read_intentions_table(self.path, self.manifest).to_pandas()
        except _READ_ERRORS as err:
            raise damaged(self.path, self.manifest, INTENTIONS_FILE, err) from None
        try:
            products = read_intentions_table(self.path, self.manifest, PRODUCTS_FILE).to_pandas()
        except _READ_ERRORS as err:
            raise damaged(self.path, self.manifest, PRODUCTS_FILE, err) from None
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
        self._pinned = _pin(self.path, (INDEX_FILE, EMBEDDINGS_FILE, SCORES_FILE))

    def __del__(self):
        for fd in getattr(self, "_pinned", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def take(self, rows: Any) -> pd.DataFrame:
        """The intention rows at positions ``rows`` (a view: ``.copy()`` to modify), their pages read ahead
        together first (:func:`take_rows`): a search's hits from a cold page cache in one disk round trip."""
        return take_rows(self.intentions, rows)

    def vectors(self, rows: Any) -> np.ndarray:
        """float32 copies of the embeddings at positions ``rows``, their pages of the memory-mapped file read ahead
        together first (as :meth:`take` does for rows)."""
        idx = np.asarray(rows, dtype=np.int64).ravel()
        emb = self.embeddings
        if len(idx):
            at, row_bytes = emb.ctypes.data, emb.strides[0]
            io.will_need(at + idx * row_bytes, at + (idx + 1) * row_bytes)
        return np.asarray(emb[idx], dtype=np.float32)

    def artifact(self, name: str) -> Path:
        """The path to read a lazily loaded file of this KB from. The files are opened when the KB is, so a KB
        rebuilt (swapped) while this object is alive keeps serving its own files (Linux: ``/proc/self/fd``)."""
        fd = self._pinned.get(name)
        if fd is not None:
            return Path(f"/proc/self/fd/{fd}")
        return self.path / name

    # -- lazily loaded heavy parts
    @property
    def index(self):
        if self._index is None:
            from mind_core.kb.index import apply_search_params, load_index

            try:
                index = load_index(self.artifact(INDEX_FILE))
            except _READ_ERRORS as err:
                raise damaged(self.path, self.manifest, INDEX_FILE, err) from None
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
        """float16 [n, dim], memory-mapped. A file that is not the array the manifest describes is a
        :class:`KBError` naming it as damaged (numpy alone would talk about pickled data)."""
        if self._embeddings is None:
            path = self.artifact(EMBEDDINGS_FILE)
            try:
                with open(path, "rb") as f:
                    head = f.read(len(NPY_MAGIC))
                if head != NPY_MAGIC:
                    raise damaged(self.path, self.manifest, EMBEDDINGS_FILE, "no NumPy header (overwritten or cut)")
                emb = np.load(path, mmap_mode="r", allow_pickle=False)
            except _READ_ERRORS as err:
                raise damaged(self.path, self.manifest, EMBEDDINGS_FILE, err) from None
            dim = self.manifest.get("embed_dim")
            if emb.ndim != 2 or emb.dtype.kind != "f" or (dim and emb.shape[1] != dim):
                raise damaged(
                    self.path,
                    self.manifest,
                    EMBEDDINGS_FILE,
                    f"a {emb.dtype} array of shape {emb.shape}, not [n, {dim}]",
                )
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
        see :func:`load_scores`. Loaded on first use."""
        if self._scores is None:
            self._scores = load_scores(self)
        return self._scores

    @property
    def embed_model(self) -> str:
        return self.manifest["embed_model"]

    @property
    def embed_backend(self) -> str:
        """How the KB's vectors were encoded: ``torch``, ``onnx`` or ``onnx-int8`` (KBs built before the field
        existed: ``torch``)."""
        return self.manifest.get("embed_backend") or "torch"

    @property
    def encoder(self):
        """The encoder for queries against this KB's vectors (loaded on first use, shared per process): the KB's
        model, through :func:`mind_core.kb.embed.query_backend` (fp32 ONNX for the default model: no torch)."""
        from mind_core.kb.embed import get_embedder, query_backend

        return get_embedder(self.embed_model, query_backend(self.embed_model, self.embed_backend))

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

    def product(self, asin: str) -> dict[str, Any] | None:
        if asin not in self.products.index:
            return None
        row = self.products.loc[asin]
        return {c: (list(row[c]) if c == "image_urls" and row[c] is not None else row[c]) for c in PRODUCT_COLUMNS}


# --- filter scores stored next to the tables -------------------------------------------------------------------


def rescore_parts(kb_dir: str | Path) -> list[Path]:
    root = Path(kb_dir) / RESCORE_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/part-*.parquet") if p.is_file())


def rescore_signature(kb_dir: str | Path) -> tuple:
    """Changes whenever a rescore part is added or replaced (a cache key for the dashboard)."""
    return tuple((p.parent.name, p.name, p.stat().st_size) for p in rescore_parts(kb_dir))


def read_rescored(kb_dir: str | Path) -> pd.DataFrame:
    """All rescored rows of a KB folder, the latest per intention (``created_at``, then part order)."""
    frames = []
    for part in rescore_parts(kb_dir):
        try:
            frames.append(pq.read_table(part, columns=list(RESCORE_COLUMNS)).to_pandas())
        except Exception as err:  # pyarrow raises several types for damaged files
            log.warning("ignoring unreadable rescore part %s (%s)", part, err)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float if c == "p_yes" else object) for c in RESCORE_COLUMNS})
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values("created_at", kind="stable")
    return df.drop_duplicates("intention_id", keep="last").reset_index(drop=True)


def load_scores(kb) -> pd.DataFrame:
    """Every score aligned with ``kb.intentions`` (same index): ``p_yes, p_yes_rescored, grounding, typicality,
    critic`` (float, NaN = no value; ``critic`` once ``critic score`` or ``build-kb`` with a critic wrote it)
    plus ``verdict_rescored`` and ``rescore_source``. ``attrs["missing_file"]`` is True when the KB was built
    before scores existed (grounding/typicality all NaN: rebuild with ``build-kb --force``)."""
    df = kb.intentions
    ids = df["intention_id"]
    out = pd.DataFrame(index=df.index)
    out["p_yes"] = df["p_yes"].astype(float).to_numpy()
    out["p_yes_rescored"] = np.nan
    out["grounding"] = np.nan
    out["typicality"] = np.nan
    out["critic"] = np.nan
    out["verdict_rescored"] = pd.Series([None] * len(df), index=df.index, dtype=object)
    out["rescore_source"] = pd.Series([None] * len(df), index=df.index, dtype=object)
    path = kb.artifact(SCORES_FILE)
    listed = SCORES_FILE in kb.manifest.get("artifacts", {})
    out.attrs["missing_file"] = not (listed and path.exists())
    if not out.attrs["missing_file"]:
        try:
            table = pq.read_table(path)
        except _READ_ERRORS as err:
            raise damaged(Path(kb.path), kb.manifest, SCORES_FILE, err) from None
        if table.num_rows != len(df):
            raise StaleIndexError(
                f"{path} has {table.num_rows} rows, the KB has {len(df)}; rebuild it with build-kb --force"
            )
        stored_ids = table.column("intention_id").to_numpy(zero_copy_only=False)
        if not np.array_equal(stored_ids, ids.to_numpy(dtype=object)):
            raise StaleIndexError(f"{path} rows are not aligned with intentions.parquet; rebuild with build-kb --force")
        out["grounding"] = table.column("grounding").to_numpy(zero_copy_only=False).astype(float)
        out["typicality"] = table.column("typicality").to_numpy(zero_copy_only=False).astype(float)
        if CRITIC_COLUMN in table.column_names:
            out["critic"] = table.column(CRITIC_COLUMN).to_numpy(zero_copy_only=False).astype(float)
    rescored = read_rescored(kb.path)
    if len(rescored):
        pos = pd.Index(ids.astype(object)).get_indexer(rescored["intention_id"])
        ok = pos >= 0
        rows = pos[ok]
        out.iloc[rows, out.columns.get_loc("p_yes_rescored")] = rescored["p_yes"].astype(float).to_numpy()[ok]
        out.iloc[rows, out.columns.get_loc("verdict_rescored")] = rescored["verdict"].to_numpy()[ok]
        out.iloc[rows, out.columns.get_loc("rescore_source")] = rescored["source"].to_numpy()[ok]
    return out
