"""The persistent embedding cache (text -> vector, one SQLite file per model and backend) and the
``encode_cached`` every encoder shares."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mind_core import config

#: what the ``onnx-int8`` variant is (:func:`mind_core.kb.onnx_encoder._export` builds it): the manifest's
#: ``embed_recipe`` and the name of its embedding cache; a change rebuilds KBs of the old recipe
INT8_RECIPE = "attention-int8-v4"


class CachedEncoding:
    """``encode_cached`` for any encoder with ``model_name``, ``backend``, ``dim`` and ``encode``."""

    model_name: str
    backend: str
    dim: int
    #: how many texts the last :meth:`encode_cached` call had to encode (the rest came from the cache)
    last_encoded: int = 0

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        raise NotImplementedError

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
        cache (per model and backend), so rebuilding a KB (or growing it, or resuming a killed build) never
        re-encodes a text seen before."""
        cache = cache or EmbeddingCache.for_model(self.model_name, self.backend)
        unique = list(dict.fromkeys(texts))
        found = cache.get_many(unique)
        todo = [t for t in unique if t not in found]
        self.last_encoded = len(todo)
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
    def for_model(cls, model_name: str, backend: str = "torch") -> EmbeddingCache:
        """The cache of one model and backend (torch keeps the original file name ``<model>.sqlite``)."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name).strip("_")[-80:]
        suffix = "" if backend == "torch" else f".{backend}"
        if backend == "onnx-int8":  # a new quantisation recipe never reuses the old one's vectors
            suffix = f".{INT8_RECIPE}"
        return cls(config.cache_dir("embeddings") / f"{slug}{suffix}.sqlite")

    def seed(self, keys: np.ndarray, vecs: np.ndarray) -> int:
        """Add precomputed vectors by text key (``keys``: N x 20 uint8 SHA-1 digests) where missing; returns how
        many were added."""
        rows = [(bytes(k), np.asarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vecs)]
        with self.conn:
            before = self.conn.total_changes
            self.conn.executemany("INSERT OR IGNORE INTO emb (key, vec) VALUES (?, ?)", rows)
            return self.conn.total_changes - before

    def export_keys(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(keys, vectors) of ``texts`` found here, for :meth:`seed` elsewhere."""
        found = self.get_many(texts)
        ordered = [t for t in dict.fromkeys(texts) if t in found]
        keys = np.frombuffer(b"".join(_text_key(t) for t in ordered), dtype=np.uint8).reshape(-1, 20)
        vecs = np.stack([found[t] for t in ordered]) if ordered else np.zeros((0, 0), np.float32)
        return keys, vecs

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
