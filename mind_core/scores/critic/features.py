"""What the critic reads of a KB row, and how it becomes a feature matrix.

:class:`CriticData` is the critic's view of a set of rows: ids, pair ids, relations, intention texts, and (loaded
only when a feature needs them) the stored intention embeddings, the pair-text embeddings and the build-time scores.
It is made from an opened KB (:meth:`CriticData.from_kb`, duck-typed: ``intentions``, ``products``, ``embeddings``,
``scores``, ``encoder``) or from rows that have no KB yet (:meth:`CriticData.from_rows`: a distill run, the try
page).

Feature blocks (:data:`FEATURE_BLOCKS`; a model lists the ones it uses):

``tfidf``
    The intention text as word uni- and bigrams (lower case, tokens of two or more word characters), TF-IDF with
    sublinear term frequency ``1 + ln(tf)``, smoothed idf ``ln((1 + n) / (1 + df)) + 1`` and unit-length rows; the
    vocabulary is every n-gram in at least :data:`MIN_DF` training documents. (The recipe of scikit-learn's
    ``TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)``, written out here.)
``relation``
    One-hot of the relation key (the training rows' relations; an unknown one is all zeros).
``intention_emb``
    The stored, normalised intention embedding (``<kb>/embeddings.npy``).
``pair_emb``
    The embedding of the pair text the ``grounding`` score uses (:func:`mind_core.scores.build.pair_text`), encoded
    by the KB's encoder (cached: the build already encoded every pair text), and ``emb_product`` = the elementwise
    product of the two embeddings.
``scores``
    ``grounding`` and ``typicality`` (NaN -> 0).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

FEATURE_BLOCKS: tuple[str, ...] = ("tfidf", "relation", "intention_emb", "pair_emb", "emb_product", "scores")
#: the blocks that read embeddings (a critic with one of them needs the KB's embedding model)
EMBEDDING_BLOCKS: tuple[str, ...] = ("intention_emb", "pair_emb", "emb_product")
NGRAMS = (1, 2)
MIN_DF = 2
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


class CriticError(ValueError):
    """A critic cannot be trained / loaded / applied as asked; the message says why and what to do."""


# --- the rows ----------------------------------------------------------------------------------------------------


@dataclass
class CriticData:
    """The rows a critic trains on or scores (same order as the KB's intentions table or the given rows)."""

    intention_id: np.ndarray
    pair_id: np.ndarray
    relation: np.ndarray
    text: np.ndarray
    #: lazily loaded blocks: name -> function returning the array (called at most once)
    loaders: dict[str, Callable[[], np.ndarray]] = field(default_factory=dict, repr=False)
    _loaded: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: embedding model of ``intention_emb`` / ``pair_emb`` (None: no embeddings available)
    embed_model: str | None = None

    def __len__(self) -> int:
        return len(self.intention_id)

    def block(self, name: str) -> np.ndarray:
        if name not in self._loaded:
            if name not in self.loaders:
                raise CriticError(f"these rows have no {name!r} (needed by the critic's features)")
            self._loaded[name] = np.asarray(self.loaders[name]())
        return self._loaded[name]

    @classmethod
    def from_kb(cls, kb) -> CriticData:
        """The rows of an opened KB (``kb.intentions`` order). Embeddings, pair-text embeddings and scores are read
        only when a feature needs them."""
        df = kb.intentions

        def pair_embeddings() -> np.ndarray:
            from mind_core.scores.build import pair_text

            prods = kb.products
            known = set(prods.index)
            titles, descs = prods["title"].to_dict(), prods["description"].to_dict()
            texts = []
            for a, b in zip(df["asin_a"].astype(str), df["asin_b"].astype(str)):
                if a in known and b in known:
                    texts.append(pair_text(titles[a], descs[a], titles[b], descs[b]))
                else:
                    texts.append("")
            return kb.encoder.encode_cached(texts)

        return cls(
            intention_id=df["intention_id"].astype(str).to_numpy(dtype=object),
            pair_id=df["pair_id"].astype(str).to_numpy(dtype=object),
            relation=df["relation"].astype(str).to_numpy(dtype=object),
            text=df["intention"].astype(str).to_numpy(dtype=object),
            loaders={
                "intention_emb": lambda: np.asarray(kb.embeddings, dtype=np.float32),
                "pair_emb": pair_embeddings,
                "grounding": lambda: kb.scores["grounding"].to_numpy(dtype=float),
                "typicality": lambda: kb.scores["typicality"].to_numpy(dtype=float),
            },
            embed_model=kb.embed_model,
        )

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, Any]],
        *,
        vectors: np.ndarray | None = None,
        products: Mapping[str, Any] | None = None,
        encoder=None,
        grounding: np.ndarray | None = None,
        typicality: np.ndarray | None = None,
    ) -> CriticData:
        """Rows that are not (yet) a KB: ``intention_id, pair_id, relation, intention`` per row. ``vectors`` (their
        normalised embeddings), ``encoder`` (encodes what is missing: intention texts without ``vectors``, pair
        texts from ``products``) and the two scores are optional; a feature that needs a missing one fails with
        :class:`CriticError`."""
        from mind_core.schema import pair_id as make_pair_id

        def pid(r: Mapping[str, Any]) -> str:
            return str(r.get("pair_id") or make_pair_id(str(r["asin_a"]), str(r["asin_b"])))

        loaders: dict[str, Callable[[], np.ndarray]] = {}
        texts = np.array([str(r.get("intention") or "") for r in rows], dtype=object)
        if vectors is not None:
            loaders["intention_emb"] = lambda: np.asarray(vectors, dtype=np.float32)
        elif encoder is not None:
            loaders["intention_emb"] = lambda: encoder.encode_cached(list(texts))
        if encoder is not None and products is not None:

            def pair_embeddings() -> np.ndarray:
                from mind_core.scores.build import pair_text

                out = []
                for r in rows:
                    a, b = _fields(products.get(str(r["asin_a"]))), _fields(products.get(str(r["asin_b"])))
                    out.append(pair_text(a["title"], a["description"], b["title"], b["description"]) if a and b else "")
                return encoder.encode_cached(out)

            loaders["pair_emb"] = pair_embeddings
        if grounding is not None:
            loaders["grounding"] = lambda: np.asarray(grounding, dtype=float)
        if typicality is not None:
            loaders["typicality"] = lambda: np.asarray(typicality, dtype=float)
        return cls(
            intention_id=np.array([str(r.get("intention_id") or i) for i, r in enumerate(rows)], dtype=object),
            pair_id=np.array([pid(r) for r in rows], dtype=object),
            relation=np.array([str(r.get("relation") or "") for r in rows], dtype=object),
            text=texts,
            loaders=loaders,
            embed_model=getattr(encoder, "model_name", None),
        )


def _fields(p: Any) -> dict[str, Any] | None:
    """Title and description of a product given as a dict or as an object with those attributes."""
    if p is None:
        return None
    if isinstance(p, Mapping):
        return {"title": p.get("title"), "description": p.get("description")}
    return {"title": getattr(p, "title", ""), "description": getattr(p, "description", "")}


# --- text -> n-gram counts ------------------------------------------------------------------------------------


def ngrams(text: str) -> list[str]:
    """The word n-grams (:data:`NGRAMS`) of one text, in order, repeats kept."""
    tokens = _TOKEN.findall(text.lower())
    out = list(tokens) if NGRAMS[0] <= 1 else []
    for n in range(max(2, NGRAMS[0]), NGRAMS[1] + 1):
        out.extend(map(" ".join, zip(*(tokens[i:] for i in range(n)))))
    return out


def build_vocabulary(texts: Sequence[str], min_df: int = MIN_DF) -> list[str]:
    """The n-grams occurring in at least ``min_df`` of ``texts``, sorted (index = feature column)."""
    df: dict[str, int] = {}
    for t in texts:
        for g in set(ngrams(t)):
            df[g] = df.get(g, 0) + 1
    return sorted(g for g, n in df.items() if n >= min_df)


class _GramIndex:
    """A vocabulary of word n-grams (:data:`NGRAMS` up to bigrams) as integer tables, so counting needs one dict
    lookup per token instead of one string per n-gram: tokens map to ids of the words the vocabulary uses, a
    unigram's column comes from a per-word table and a bigram's from its key ``id_a * words + id_b`` found with
    ``searchsorted`` in the sorted keys."""

    def __init__(self, index: Mapping[str, int]):
        words: dict[str, int] = {}
        for g in index:
            for w in g.split(" "):
                words.setdefault(w, len(words))
        self.words = words
        self.unigram = np.full(len(words) + 1, -1, dtype=np.int64)  # last slot: unknown word
        keys, cols = [], []
        for g, j in index.items():
            parts = g.split(" ")
            if len(parts) == 1:
                self.unigram[words[parts[0]]] = j
            elif len(parts) == 2:
                keys.append(words[parts[0]] * len(words) + words[parts[1]])
                cols.append(j)
            else:
                raise ValueError(f"vocabulary entry {g!r}: only unigrams and bigrams are counted")
        order = np.argsort(keys)
        self.bigram_keys = np.asarray(keys, dtype=np.int64)[order]
        self.bigram_cols = np.asarray(cols, dtype=np.int64)[order]


def count_matrix(
    texts: Sequence[str], vocabulary: Mapping[str, int] | Sequence[str], *, batch: int = 4096
) -> sp.csr_matrix:
    """Term counts (docs x vocabulary) of the n-grams (:func:`ngrams`) in ``vocabulary``; others are ignored.
    Vectorised per ``batch`` texts (:class:`_GramIndex`); duplicates of a (row, column) add up in SciPy."""
    from itertools import repeat

    if NGRAMS[0] > 1 or NGRAMS[1] > 2:
        raise ValueError(f"count_matrix counts unigrams and bigrams, not n-grams {NGRAMS}")
    index = vocabulary if isinstance(vocabulary, Mapping) else {g: i for i, g in enumerate(vocabulary)}
    width = len(index)
    gi = _GramIndex(index)
    unknown, nwords = len(gi.words), len(gi.words)
    blocks = []
    for start in range(0, len(texts), batch):
        tokens = [_TOKEN.findall(t.lower()) for t in texts[start : start + batch]]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        flat = [w for ts in tokens for w in ts]
        ids = np.fromiter(map(gi.words.get, flat, repeat(unknown)), dtype=np.int64, count=len(flat))
        doc = np.repeat(np.arange(len(tokens), dtype=np.int64), lengths)
        uni = gi.unigram[ids]
        # bigrams: consecutive tokens of the same text, both words known
        pair = (doc[1:] == doc[:-1]) & (ids[1:] != unknown) & (ids[:-1] != unknown)
        keys = ids[:-1][pair] * nwords + ids[1:][pair]
        pos = np.searchsorted(gi.bigram_keys, keys)
        pos = np.minimum(pos, max(len(gi.bigram_keys) - 1, 0))
        hit = gi.bigram_keys[pos] == keys if len(gi.bigram_keys) else np.zeros(len(keys), dtype=bool)
        rows = np.concatenate([doc[uni >= 0], doc[:-1][pair][hit]])
        cols = np.concatenate([uni[uni >= 0], gi.bigram_cols[pos[hit]]])
        m = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(tokens), width))
        m.sum_duplicates()
        blocks.append(m)
    if not blocks:
        return sp.csr_matrix((0, width), dtype=np.float64)
    m = sp.vstack(blocks, format="csr")
    m.sort_indices()
    return m


def doc_freq(counts: sp.csr_matrix, rows: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(documents containing each vocabulary column, number of documents) over ``rows`` (all when None)."""
    sub = counts if rows is None else counts[rows]
    return np.bincount(sub.indices, minlength=sub.shape[1]).astype(np.uint32), int(sub.shape[0])


def idf_from_df(df: np.ndarray, n: int, min_df: int = MIN_DF) -> np.ndarray:
    """Smoothed idf ``ln((1 + n) / (1 + df)) + 1``; 0 for a column in fewer than ``min_df`` documents (it is not
    in that model's vocabulary; a real idf is always >= 1)."""
    df = np.asarray(df, dtype=np.float64)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    return np.where(df >= min_df, idf, 0.0).astype(np.float32)


def tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear TF-IDF with unit-length rows (a row with no known n-gram stays all zeros)."""
    x = counts.copy().astype(np.float64)
    x.data = 1.0 + np.log(x.data)
    x = x.multiply(idf.astype(np.float64)[None, :]).tocsr()
    x.eliminate_zeros()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    return sp.csr_matrix(sp.diags(scale) @ x)


def relation_onehot(relations: Sequence[str], known: Sequence[str]) -> np.ndarray:
    pos = {r: i for i, r in enumerate(known)}
    out = np.zeros((len(relations), len(known)), dtype=np.float32)
    for i, r in enumerate(relations):
        j = pos.get(r)
        if j is not None:
            out[i, j] = 1.0
    return out


@dataclass
class FeatureSource:
    """Everything a feature matrix is made of for one set of rows, computed once and shared by every fold model:
    n-gram counts over the critic's vocabulary and the dense blocks."""

    counts: sp.csr_matrix | None
    dense: np.ndarray  # rows x (dense feature columns), float32

    @classmethod
    def build(
        cls, data: CriticData, features: Sequence[str], vocabulary: Sequence[str], relations: Sequence[str]
    ) -> FeatureSource:
        unknown = [f for f in features if f not in FEATURE_BLOCKS]
        if unknown:
            raise CriticError(f"unknown feature block(s) {unknown}; known: {', '.join(FEATURE_BLOCKS)}")
        counts = count_matrix(list(data.text), vocabulary) if "tfidf" in features else None
        parts: list[np.ndarray] = []
        if "relation" in features:
            parts.append(relation_onehot(list(data.relation), relations))
        if "intention_emb" in features or "emb_product" in features:
            emb = np.asarray(data.block("intention_emb"), dtype=np.float32)
            if "intention_emb" in features:
                parts.append(emb)
        if "pair_emb" in features or "emb_product" in features:
            pair = np.asarray(data.block("pair_emb"), dtype=np.float32)
            if "pair_emb" in features:
                parts.append(pair)
            if "emb_product" in features:
                parts.append(emb * pair)
        if "scores" in features:
            parts.append(
                np.nan_to_num(np.stack([data.block("grounding"), data.block("typicality")], axis=1)).astype(np.float32)
            )
        dense = np.hstack(parts).astype(np.float32) if parts else np.zeros((len(data), 0), np.float32)
        return cls(counts, dense)

    def matrix(self, idf: np.ndarray | None, rows: np.ndarray | None = None):
        """The feature matrix of ``rows`` (all when None) with the given idf: CSR when there is text, else dense."""
        dense = self.dense if rows is None else self.dense[rows]
        if self.counts is None:
            return dense
        counts = self.counts if rows is None else self.counts[rows]
        text = tfidf(counts, idf if idf is not None else np.ones(counts.shape[1], np.float32))
        return sp.hstack([text, sp.csr_matrix(dense)], format="csr") if dense.shape[1] else text
