"""Build-time filter scores: ``grounding`` and ``typicality`` of every intention row (definitions in
:mod:`mind_core.scores`), written by ``build-kb`` into ``<kb>/scores.parquet``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mind_core import io
from mind_core.schema import SCORES_SCHEMA

SCORES_VERSION = 1
PAIR_DESCRIPTION_WORDS = 60


def _words(text: object, limit: int | None = None) -> str:
    words = str(text or "").split()
    return " ".join(words if limit is None else words[:limit])


def pair_text(
    title_a: object,
    description_a: object,
    title_b: object,
    description_b: object,
    *,
    words: int = PAIR_DESCRIPTION_WORDS,
) -> str:
    """The text an intention is grounded against: both titles and the first ``words`` words of both
    descriptions, ``"<title A>. <description A>\\n<title B>. <description B>"`` with whitespace collapsed."""
    return f"{_words(title_a)}. {_words(description_a, words)}\n{_words(title_b)}. {_words(description_b, words)}"


def rowwise_cosine(a: np.ndarray, b: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Cosine similarity of matching rows of ``a`` and ``b`` (float32; NaN where a row has zero norm)."""
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), chunk):
        x = np.asarray(a[s : s + chunk], dtype=np.float32)
        y = np.asarray(b[s : s + chunk], dtype=np.float32)
        num = np.einsum("ij,ij->i", x, y)
        den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + chunk] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return np.clip(out, -1.0, 1.0)


def typicality_scores(vecs: np.ndarray, relations: Sequence[str] | np.ndarray) -> np.ndarray:
    """Leave-one-out cosine similarity of each row to the mean of the normalised vectors of the *other* rows with
    the same relation: ``v_i · (S_r - v_i) / |S_r - v_i|`` with ``v_i`` normalised and ``S_r`` the relation's sum.
    NaN for a relation with one row (or when the others cancel out exactly)."""
    codes, _ = pd.factorize(pd.Series(relations, dtype=object), sort=True)
    n = len(codes)
    out = np.full(n, np.nan, dtype=np.float32)
    for code in np.unique(codes[codes >= 0]):
        rows = np.flatnonzero(codes == code)
        v = np.asarray(vecs[rows], dtype=np.float64)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        v = v / np.where(norms > 0, norms, 1)
        total = v.sum(axis=0)
        dot = v @ total  # v_i · S
        self_sq = np.einsum("ij,ij->i", v, v)  # |v_i|^2 (1, or 0 for a zero vector)
        rest_norm_sq = total @ total - 2 * dot + self_sq  # |S - v_i|^2
        ok = rest_norm_sq > 1e-12
        sim = np.full(len(rows), np.nan)
        sim[ok] = (dot[ok] - self_sq[ok]) / np.sqrt(rest_norm_sq[ok])
        out[rows] = np.clip(sim, -1.0, 1.0)
    return out


def write_build_scores(
    path: Path,
    intentions: Sequence[Mapping[str, Any]],
    products: Mapping[str, Mapping[str, Any]],
    vecs: np.ndarray,
    embedder,
    *,
    grounding: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """Compute ``grounding`` and ``typicality`` for every intention row (``vecs``: its normalised embeddings, same
    order), write them to ``path`` (``<kb>/scores.parquet``) atomically, and return what the manifest records
    under ``"scores"``.

    Pair texts are encoded with ``embedder.encode_cached`` (each distinct text once per machine). ``grounding=False``
    leaves it NaN (used with ``build-kb --vectors``)."""
    t0 = time.perf_counter()
    n = len(intentions)
    info: dict[str, Any] = {
        "version": SCORES_VERSION,
        "file": Path(path).name,
        "pair_text": f"<title A>. <first {PAIR_DESCRIPTION_WORDS} words of description A>\\n"
        f"<title B>. <first {PAIR_DESCRIPTION_WORDS} words of description B>",
        "typicality": "leave-one-out cosine to the relation's mean normalised embedding",
    }
    ground = np.full(n, np.nan, dtype=np.float32)
    if grounding and n:
        texts: list[str] = []
        have = np.zeros(n, dtype=bool)
        for i, r in enumerate(intentions):
            a, b = products.get(r["asin_a"]), products.get(r["asin_b"])
            if a is None or b is None:
                continue
            have[i] = True
            texts.append(pair_text(a.get("title"), a.get("description"), b.get("title"), b.get("description")))
        if texts:
            pair_vecs = embedder.encode_cached(texts, batch_size=batch_size, progress=progress)
            ground[have] = rowwise_cosine(vecs[have], pair_vecs)
        info["grounding"] = {
            "computed": True,
            "rows_without_products": int(n - have.sum()),
            "distinct_pair_texts": len(set(texts)),
        }
    else:
        info["grounding"] = {
            "computed": False,
            "why": "built with --vectors: pair texts were not encoded" if not grounding else "empty",
        }
    typ = typicality_scores(vecs, [r["relation"] for r in intentions])
    table = pa.table(
        {
            "intention_id": pa.array([r["intention_id"] for r in intentions], pa.string()),
            "grounding": pa.array(ground, pa.float32()),
            "typicality": pa.array(typ, pa.float32()),
        },
        schema=SCORES_SCHEMA,
    )
    io.write_parquet(table, path)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return info
