"""Build-time filter scores: ``grounding`` and ``typicality`` of every intention row (definitions in
:mod:`mind_core.scores`), written by ``build-kb`` into ``<kb>/scores.parquet``."""

from __future__ import annotations

import time
from collections.abc import Mapping
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


def _codes(relations) -> np.ndarray:
    if isinstance(relations, np.ndarray) and relations.dtype.kind in "iu":
        return relations
    codes, _ = pd.factorize(pd.Series(relations, dtype=object), sort=True)
    return codes


def typicality_scores(vecs: np.ndarray, relations, *, chunk: int = 65_536) -> np.ndarray:
    """Leave-one-out cosine similarity of each row to the mean of the normalised vectors of the *other* rows with
    the same relation: ``v_i · (S_r - v_i) / |S_r - v_i|`` with ``v_i`` normalised and ``S_r`` the relation's sum.
    NaN for a relation with one row (or when the others cancel out exactly).

    ``relations``: one key per row, or integer codes (negative = none). ``vecs`` may be a memory map: it is read
    twice in chunks (sums per relation, then the scores), never whole."""
    codes = _codes(relations)
    n = len(codes)
    out = np.full(n, np.nan, dtype=np.float32)
    if n == 0:
        return out
    n_codes = int(codes.max()) + 1 if (codes >= 0).any() else 0
    sums = np.zeros((max(n_codes, 1), vecs.shape[1]), dtype=np.float64)

    def normalised(start: int) -> tuple[np.ndarray, np.ndarray]:
        v = np.asarray(vecs[start : start + chunk], dtype=np.float64)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(norms > 0, norms, 1), codes[start : start + chunk]

    for start in range(0, n, chunk):
        v, c = normalised(start)
        for code in np.unique(c[c >= 0]):
            sums[code] += v[c == code].sum(axis=0)
    total_sq = np.einsum("ij,ij->i", sums, sums)
    for start in range(0, n, chunk):
        v, c = normalised(start)
        ok_code = c >= 0
        cc = np.where(ok_code, c, 0)
        dot = np.einsum("ij,ij->i", v, sums[cc])  # v_i · S
        self_sq = np.einsum("ij,ij->i", v, v)  # |v_i|^2 (1, or 0 for a zero vector)
        rest_norm_sq = total_sq[cc] - 2 * dot + self_sq  # |S - v_i|^2
        ok = ok_code & (rest_norm_sq > 1e-12)
        sim = np.full(len(v), np.nan)
        sim[ok] = (dot[ok] - self_sq[ok]) / np.sqrt(rest_norm_sq[ok])
        out[start : start + len(v)] = np.clip(sim, -1.0, 1.0)
    return out


def write_build_scores(
    path: Path,
    rows: pa.Table,
    products: Mapping[str, Mapping[str, Any]],
    vecs: np.ndarray,
    embedder,
    *,
    grounding: bool = True,
    batch_size: int = 64,
    progress: bool = False,
    chunk: int = 65_536,
) -> dict[str, Any]:
    """Compute ``grounding`` and ``typicality`` for every intention row and write them to ``path``
    (``<kb>/scores.parquet``) atomically; return what the manifest records under ``"scores"``.

    ``rows``: the KB's ``intention_id``, ``relation``, ``asin_a``, ``asin_b`` columns (Arrow); ``vecs``: the rows'
    normalised embeddings, same order (a memory map is fine: read in chunks). The text of each distinct pair is
    encoded once with ``embedder.encode_cached`` (and once per machine). ``grounding=False`` leaves it NaN (used
    with ``build-kb --vectors``)."""
    import pyarrow.compute as pc

    t0 = time.perf_counter()
    n = rows.num_rows
    info: dict[str, Any] = {
        "version": SCORES_VERSION,
        "file": Path(path).name,
        "pair_text": f"<title A>. <first {PAIR_DESCRIPTION_WORDS} words of description A>\\n"
        f"<title B>. <first {PAIR_DESCRIPTION_WORDS} words of description B>",
        "typicality": "leave-one-out cosine to the relation's mean normalised embedding",
    }
    ground = np.full(n, np.nan, dtype=np.float32)
    if grounding and n:
        key = pc.binary_join_element_wise(rows["asin_a"], rows["asin_b"], "\x1f").combine_chunks()
        enc = key.dictionary_encode()
        pair_codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        texts: list[str] = []
        text_of_pair = np.full(len(enc.dictionary), -1, dtype=np.int64)
        for j, k in enumerate(enc.dictionary.to_pylist()):
            a_asin, b_asin = k.split("\x1f")
            a, b = products.get(a_asin), products.get(b_asin)
            if a is None or b is None:
                continue
            text_of_pair[j] = len(texts)
            texts.append(pair_text(a.get("title"), a.get("description"), b.get("title"), b.get("description")))
        row_text = text_of_pair[pair_codes]
        have = row_text >= 0
        if texts:
            pair_vecs = embedder.encode_cached(texts, batch_size=batch_size, progress=progress)
            for s in range(0, n, chunk):
                sl = slice(s, s + chunk)
                ok = have[sl]
                part = np.full(int(ok.size), np.nan, dtype=np.float32)
                if ok.any():
                    part[ok] = rowwise_cosine(np.asarray(vecs[sl])[ok], pair_vecs[row_text[sl][ok]])
                ground[sl] = part
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
    rel = rows["relation"].combine_chunks().dictionary_encode()
    typ = typicality_scores(vecs, np.asarray(rel.indices.to_numpy(zero_copy_only=False), dtype=np.int64), chunk=chunk)
    table = pa.table(
        {
            "intention_id": rows["intention_id"].cast(pa.string()),
            "grounding": pa.array(ground, pa.float32()),
            "typicality": pa.array(typ, pa.float32()),
        },
        schema=SCORES_SCHEMA,
    )
    io.write_parquet(table, path)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return info
