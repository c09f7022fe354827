"""Keyword search: exact words and ``"quoted phrases"``, ranked by BM25.

An inverted index over the *distinct* intention texts (:class:`KeywordIndex`): CSR posting lists of text ids with
term frequencies, built once per KB (tokenising only distinct texts) and kept as derived data
(:mod:`mind_core.query.derived`). A query is a list of words and ``"quoted phrases"``; a row matches when its
intention contains **every** word (case-insensitive, whole tokens ``[a-z0-9]+``) and every phrase (words adjacent,
in order; checked with a regular expression on the candidate texts). Matches are ranked by BM25 (k1 = 1.2,
b = 0.75; document = distinct intention text).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mind_core.kb.store import take_rows
from mind_core.query.derived import derived
from mind_core.query.facets import Facets, facet_mask
from mind_core.query.results import SearchResult, hits_frame, top_k

TOKEN_RE = re.compile(r"[a-z0-9]+")
BM25_K1, BM25_B = 1.2, 0.75
KEYWORD_INDEX_VERSION = 2
_ARRAYS = ("terms", "offsets", "postings", "tfs", "doc_len", "row_text", "first_row")


def tokenize(text: str) -> list[str]:
    return TOKEN_RE.findall(text.lower())


@dataclass(frozen=True)
class KeywordQuery:
    words: tuple[str, ...]  # every token that must occur (phrase tokens included), in query order
    phrases: tuple[tuple[str, ...], ...]  # multi-token phrases whose tokens must be adjacent

    @property
    def empty(self) -> bool:
        return not self.words


def parse_query(text: str) -> KeywordQuery:
    """``used for "winter hat" outdoor`` -> words (used, for, winter, hat, outdoor), phrases ((winter, hat),).
    An unbalanced quote is treated as a plain character."""
    phrases: list[tuple[str, ...]] = []
    words: list[str] = []
    rest = text or ""
    for m in re.finditer(r'"([^"]*)"', rest):
        toks = tuple(tokenize(m.group(1)))
        if len(toks) > 1:
            phrases.append(toks)
        words += toks
    words += tokenize(re.sub(r'"[^"]*"', " ", rest))
    return KeywordQuery(tuple(dict.fromkeys(words)), tuple(dict.fromkeys(phrases)))


def phrase_pattern(tokens: Sequence[str]) -> str:
    """RE2/Python regex for adjacent tokens (case-insensitive use): ``\\bwinter[^a-z0-9]+hat\\b``."""
    return r"\b" + r"[^a-z0-9]+".join(re.escape(t) for t in tokens) + r"\b"


@dataclass
class KeywordIndex:
    """Inverted index over distinct texts. ``row_text[r]`` = text id of KB row r."""

    terms: np.ndarray  # str [V], sorted
    offsets: np.ndarray  # int64 [V+1]
    postings: np.ndarray  # int32 [P] text ids, ascending within a term
    tfs: np.ndarray  # uint16 [P]
    doc_len: np.ndarray  # uint16 [T] tokens per text
    row_text: np.ndarray  # int32 [n]
    first_row: np.ndarray  # int32 [T] one KB row holding each text
    _vocab: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._vocab = {t: i for i, t in enumerate(self.terms.tolist())}
        self.avg_len = float(self.doc_len.mean()) if len(self.doc_len) else 0.0

    @property
    def n_texts(self) -> int:
        return len(self.doc_len)

    @classmethod
    def build(cls, texts: pd.Series) -> KeywordIndex:
        codes, uniques = pd.factorize(texts.astype(object).fillna(""), sort=False)
        vocab: dict[str, int] = {}
        term_ids: list[int] = []
        text_ids: list[int] = []
        freqs: list[int] = []
        doc_len = np.zeros(len(uniques), dtype=np.uint16)
        for tid, text in enumerate(uniques):
            toks = tokenize(text)
            doc_len[tid] = min(len(toks), 65535)
            counts: dict[str, int] = {}
            for t in toks:
                counts[t] = counts.get(t, 0) + 1
            for t, c in counts.items():
                term_ids.append(vocab.setdefault(t, len(vocab)))
                text_ids.append(tid)
                freqs.append(c)
        terms = np.array(list(vocab), dtype=str) if vocab else np.array([], dtype=str)
        order = np.argsort(terms, kind="stable")  # sorted vocabulary: stable layout on disk
        remap = np.empty(len(order), dtype=np.int64)
        remap[order] = np.arange(len(order))
        tids = remap[np.asarray(term_ids, dtype=np.int64)]
        perm = np.lexsort((np.asarray(text_ids), tids))
        offsets = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(np.bincount(tids, minlength=len(order)), out=offsets[1:])
        first_row = np.full(len(uniques), -1, dtype=np.int64)
        first_row[codes[::-1]] = np.arange(len(codes))[::-1]  # last write wins -> first occurrence
        return cls(
            terms[order],
            offsets,
            np.asarray(text_ids, dtype=np.int32)[perm],
            np.minimum(np.asarray(freqs, dtype=np.int64), 65535).astype(np.uint16)[perm],
            doc_len,
            codes.astype(np.int32),
            first_row.astype(np.int32),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in _ARRAYS}

    def postings_of(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        i = self._vocab.get(term)
        if i is None:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.uint16)
        s, e = self.offsets[i], self.offsets[i + 1]
        return self.postings[s:e], self.tfs[s:e]

    def text_scores(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(BM25 score per text, number of query words present per text)."""
        T = self.n_texts
        score = np.zeros(T, dtype=np.float32)
        present = np.zeros(T, dtype=np.int32)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * self.doc_len.astype(np.float32) / max(self.avg_len, 1e-9))
        for w in words:
            post, tf = self.postings_of(w)
            if not len(post):
                continue
            idf = math.log(1 + (T - len(post) + 0.5) / (len(post) + 0.5))
            tf = tf.astype(np.float32)
            score += np.bincount(post, weights=idf * tf * (BM25_K1 + 1) / (tf + norm[post]), minlength=T).astype(
                np.float32
            )
            present[post] += 1
        return score, present


def keyword_index(kb) -> KeywordIndex:
    """The KB's keyword index (built once per KB, then read from the cache)."""

    def load(arrays: dict[str, np.ndarray]) -> KeywordIndex | None:
        index = KeywordIndex(**{k: arrays[k] for k in _ARRAYS})
        return index if len(index.row_text) == len(kb.intentions) else None

    return derived(
        kb,
        f"keyword-v{KEYWORD_INDEX_VERSION}",
        lambda: KeywordIndex.build(kb.intentions["intention"]),
        KeywordIndex.arrays,
        load,
    )


def keyword_search(kb, query: str, k: int = 200, facets: Facets | None = None) -> SearchResult:
    t0 = time.perf_counter()
    q = parse_query(query)
    if q.empty:
        raise ValueError('empty query: type words or a "quoted phrase"')
    kw = keyword_index(kb)
    tscore, present = kw.text_scores(q.words)
    text_ok = present == len(q.words)
    if q.phrases and text_ok.any():
        cand = np.flatnonzero(text_ok)
        texts = take_rows(kb.intentions, kw.first_row[cand], ["intention"])["intention"]
        ok = np.ones(len(cand), dtype=bool)
        for ph in q.phrases:
            ok &= texts.str.contains(phrase_pattern(ph), case=False, regex=True).to_numpy(dtype=bool)
        text_ok[:] = False
        text_ok[cand[ok]] = True
    row_ok = text_ok[kw.row_text]
    mask = facet_mask(kb, facets)
    if mask is not None:
        row_ok &= mask
    rows = np.flatnonzero(row_ok)
    top_rows, top_scores = top_k(tscore[kw.row_text[rows]], rows, k)
    return SearchResult(hits_frame(kb, top_rows, top_scores), len(rows), "keyword", time.perf_counter() - t0)
