"""Search over a KB's intentions: keyword (exact words / phrases, BM25), semantic (FAISS) and hybrid, with facets.

Keyword search uses an inverted index over the *distinct* intention texts (:class:`KeywordIndex`): CSR posting
lists of text ids with term frequencies, built once per KB (tokenising only distinct texts) and saved as ``.npz``
under ``<cache>/keyword/`` keyed by the intentions table's SHA-256 from the manifest. A query is a list of words
and ``"quoted phrases"``; a row matches when its intention contains **every** word (case-insensitive, whole
tokens ``[a-z0-9]+``) and every phrase (words adjacent, in order; checked with a regular expression on the
candidate texts). Matches are ranked by BM25 (k1 = 1.2, b = 0.75; document = distinct intention text).

Hybrid search ranks the union of the top semantic hits and the top keyword-scored hits (words need not all
match) by ``score = α · cosine + (1 − α) · bm25 / max_bm25`` (α = 0.5 by default), where both parts are computed
exactly for every candidate: the cosine from the stored embeddings, BM25 from the query's words, normalised by
the largest BM25 among the candidates so both parts lie in [0, 1].

Facets (:class:`Facets`): relation, intention category, verdict (``yes`` / ``no`` / ``none`` = unjudged) and a
P(yes) filter-score range; they are applied as a row mask before ranking in every mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import sys
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mind_core.kb.store import EMBEDDINGS_FILE, INTENTIONS_FILE, KnowledgeBase

log = logging.getLogger(__name__)

MODES = ("semantic", "keyword", "hybrid")
TOKEN_RE = re.compile(r"[a-z0-9]+")
BM25_K1, BM25_B = 1.2, 0.75
HYBRID_ALPHA = 0.5
EXACT_MAX = 50_000  # facet subsets up to this size are scored exactly; larger ones go through FAISS
KEYWORD_INDEX_VERSION = 1

#: derived indexes per loaded KB object (dropped with it)
_PER_KB: weakref.WeakKeyDictionary[KnowledgeBase, dict] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def one_thread():
    """Run a single-query step (encode one query, one FAISS probe, a small PCA) on one thread of torch, BLAS and
    FAISS/OpenMP, restoring the previous settings afterwards. For one short query one thread is the fastest
    anyway, and on a busy machine the multi-threaded runtimes were measured 10-40× slower here (MiniLM query
    encoding 1.5 s vs 40 ms with one thread: spinning threads fighting over oversubscribed cores)."""
    import faiss

    restore = []
    try:
        torch = sys.modules.get("torch")  # only if something loaded it (the embedder does)
        if torch is not None:
            before_torch = torch.get_num_threads()
            torch.set_num_threads(1)
            restore.append(lambda: torch.set_num_threads(before_torch))
        before_omp = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        restore.append(lambda: faiss.omp_set_num_threads(before_omp))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional (comes with scikit-learn)
            limits = contextlib.nullcontext()
        else:
            limits = threadpool_limits(1)
        with limits:
            yield
    finally:
        for undo in reversed(restore):
            undo()


def encode_query(kb: KnowledgeBase, text: str) -> np.ndarray:
    """The query's embedding; the last 256 per KB are remembered, so changing facets, mode or page does not
    re-encode (encoding is most of a semantic search: ~40-50 ms on a busy 2-core CPU; FAISS + rows ~35 ms)."""
    memo = _PER_KB.setdefault(kb, {}).setdefault("queries", {})
    if text not in memo:
        with one_thread():
            vec = kb.encode_query(text)
        vec.flags.writeable = False
        if len(memo) >= 256:
            memo.pop(next(iter(memo)))
        memo[text] = vec
    return memo[text]


def tokenize(text: str) -> list[str]:
    return TOKEN_RE.findall(text.lower())


# --- query parsing ---------------------------------------------------------------------------------------------


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


# --- facets ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facets:
    relations: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()  # "yes", "no", "none" (unjudged)
    p_yes_range: tuple[float, float] | None = None  # inclusive; rows without P(yes) are excluded when set

    @property
    def active(self) -> bool:
        return bool(self.relations or self.categories or self.verdicts or self.p_yes_range)


def facet_mask(kb: KnowledgeBase, facets: Facets | None) -> np.ndarray | None:
    """Boolean row mask for the facets, or None when no facet is set (= all rows). The last 16 masks per KB are
    kept (1.26 MB each at 1.26M rows; building one costs ~30 ms there)."""
    if facets is None or not facets.active:
        return None
    memo = _PER_KB.setdefault(kb, {}).setdefault("facet_masks", {})
    if facets in memo:
        return memo[facets]
    mask = _facet_mask(kb, facets)
    mask.flags.writeable = False  # shared between calls: callers combine it with & into new arrays
    if len(memo) >= 16:
        memo.pop(next(iter(memo)))
    memo[facets] = mask
    return mask


def _facet_mask(kb: KnowledgeBase, facets: Facets) -> np.ndarray:
    df = kb.intentions
    mask = np.ones(len(df), dtype=bool)
    for col, want in (("relation", facets.relations), ("category", facets.categories)):
        if want:
            mask &= _category_isin(df[col], want)
    if facets.verdicts:
        v = df["verdict"]
        m = _category_isin(v, [x for x in facets.verdicts if x != "none"])
        if "none" in facets.verdicts:
            m |= v.isna().to_numpy()
        mask &= m
    if facets.p_yes_range is not None:
        lo, hi = facets.p_yes_range
        p = df["p_yes"].to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            mask &= (p >= lo) & (p <= hi)
    return mask


def _category_isin(col: pd.Series, values: Sequence[str]) -> np.ndarray:
    if isinstance(col.dtype, pd.CategoricalDtype):
        wanted = [col.cat.categories.get_loc(v) for v in values if v in col.cat.categories]
        return np.isin(col.cat.codes.to_numpy(), np.asarray(wanted, dtype=np.int64))
    return col.isin(list(values)).to_numpy()


# --- keyword index ---------------------------------------------------------------------------------------------


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

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            terms=self.terms,
            offsets=self.offsets,
            postings=self.postings,
            tfs=self.tfs,
            doc_len=self.doc_len,
            row_text=self.row_text,
            first_row=self.first_row,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> KeywordIndex:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: z[k] for k in ("terms", "offsets", "postings", "tfs", "doc_len", "row_text", "first_row")})

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


def keyword_index_path(kb: KnowledgeBase) -> Path:
    from mind_core.config import cache_dir

    meta = kb.manifest.get("artifacts", {}).get(INTENTIONS_FILE, {})
    key = meta.get("sha256") or hashlib.sha256(str(kb.path.resolve()).encode()).hexdigest()
    return cache_dir() / "keyword" / f"v{KEYWORD_INDEX_VERSION}-{key[:32]}.npz"


def keyword_index(kb: KnowledgeBase) -> KeywordIndex:
    """The KB's keyword index: kept on the KB object, read from the cache, or built (and saved) once."""
    cached = _PER_KB.setdefault(kb, {}).get("keyword")
    if cached is not None:
        return cached
    path = keyword_index_path(kb)
    index = None
    if path.exists():
        try:
            index = KeywordIndex.load(path)
            if len(index.row_text) != len(kb.intentions):
                index = None
        except (OSError, ValueError, KeyError) as err:
            log.warning("keyword index %s unreadable (%s); rebuilding", path, err)
            index = None
    if index is None:
        t0 = time.perf_counter()
        index = KeywordIndex.build(kb.intentions["intention"])
        log.info("built keyword index over %d distinct texts in %.1f s", index.n_texts, time.perf_counter() - t0)
        try:
            index.save(path)
        except OSError as err:
            log.warning("cannot save keyword index to %s: %s", path, err)
    _PER_KB[kb]["keyword"] = index
    return index


# --- results ---------------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    hits: pd.DataFrame  # KB rows + row, score (+ cosine, bm25 for hybrid), best first
    total: int  # number of matching rows (keyword: all matches; semantic/hybrid: hits returned)
    mode: str
    seconds: float
    note: str = ""


def _hits(kb: KnowledgeBase, rows: np.ndarray, scores: np.ndarray, **extra) -> pd.DataFrame:
    hits = kb.intentions.iloc[rows].copy()
    for name, values in reversed(list(extra.items())):
        hits.insert(0, name, np.asarray(values, dtype=float))
    hits.insert(0, "score", np.asarray(scores, dtype=float))
    hits.insert(0, "row", np.asarray(rows, dtype=np.int64))
    return hits.reset_index(drop=True)


def _top(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (rows, scores) by score descending, ties by row ascending."""
    if len(rows) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[part], scores[part]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


def keyword_search(kb: KnowledgeBase, query: str, k: int = 200, facets: Facets | None = None) -> SearchResult:
    t0 = time.perf_counter()
    q = parse_query(query)
    if q.empty:
        raise ValueError('empty query: type words or a "quoted phrase"')
    kw = keyword_index(kb)
    tscore, present = kw.text_scores(q.words)
    text_ok = present == len(q.words)
    if q.phrases and text_ok.any():
        cand = np.flatnonzero(text_ok)
        texts = kb.intentions["intention"].iloc[kw.first_row[cand]]
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
    top_rows, top_scores = _top(tscore[kw.row_text[rows]], rows, k)
    return SearchResult(_hits(kb, top_rows, top_scores), len(rows), "keyword", time.perf_counter() - t0)


def _faiss_search(kb: KnowledgeBase, qvec: np.ndarray, k: int, mask: np.ndarray | None):
    """(rows, cosine scores): exact on small facet subsets, FAISS (bitmap id selector) otherwise."""
    import faiss

    from mind_core.kb.index import selector_params

    index = kb.index
    if mask is not None:
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if len(rows) <= EXACT_MAX:
            scores = np.asarray(kb.embeddings[rows], dtype=np.float32) @ qvec
            r, s = _top(scores, rows, k)
            return r, s
        bits = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        sp = selector_params(sel, kb.manifest.get("search_params"))
        scores, ids = index.search(np.array(qvec[None, :], dtype=np.float32), min(k, len(rows)), params=sp)
        del bits  # the selector points into it; keep it alive until the search returns
    else:
        scores, ids = index.search(np.array(qvec[None, :], dtype=np.float32), min(k, index.ntotal))
    keep = ids[0] >= 0
    return ids[0][keep].astype(np.int64), scores[0][keep]


def semantic_search(kb: KnowledgeBase, query: str, k: int = 200, facets: Facets | None = None) -> SearchResult:
    t0 = time.perf_counter()
    if not query or not query.strip():
        raise ValueError("empty query: describe an intention in your own words")
    qvec = encode_query(kb, query)
    with one_thread():
        rows, scores = _faiss_search(kb, qvec, k, facet_mask(kb, facets))
    return SearchResult(_hits(kb, rows, scores), len(rows), "semantic", time.perf_counter() - t0)


def hybrid_search(
    kb: KnowledgeBase, query: str, k: int = 200, facets: Facets | None = None, alpha: float = HYBRID_ALPHA
) -> SearchResult:
    """``alpha · cosine + (1 − alpha) · bm25 / max_bm25`` over the union of top semantic and top BM25 rows."""
    t0 = time.perf_counter()
    if not query or not query.strip():
        raise ValueError("empty query")
    q = parse_query(query)
    mask = facet_mask(kb, facets)
    qvec = encode_query(kb, query)
    n_cand = max(2 * k, 100)
    with one_thread():
        sem_rows, _ = _faiss_search(kb, qvec, n_cand, mask)
    kw = keyword_index(kb)
    tscore, _present = kw.text_scores(q.words)
    if q.words:
        row_score = tscore[kw.row_text]
        ok = row_score > 0
        if mask is not None:
            ok &= mask
        kw_rows = np.flatnonzero(ok)
        kw_rows, _ = _top(row_score[kw_rows], kw_rows, n_cand)
    else:
        kw_rows = np.empty(0, dtype=np.int64)
    cand = np.union1d(sem_rows, kw_rows).astype(np.int64)
    if len(cand) == 0:
        return SearchResult(_hits(kb, cand, np.empty(0)), 0, "hybrid", time.perf_counter() - t0)
    cos = np.asarray(kb.embeddings[cand], dtype=np.float32) @ qvec
    bm25 = tscore[kw.row_text[cand]].astype(np.float32)
    bm25_norm = bm25 / bm25.max() if bm25.max() > 0 else bm25
    combined = alpha * cos + (1 - alpha) * bm25_norm
    order = np.lexsort((cand, -combined))[:k]
    hits = _hits(kb, cand[order], combined[order], cosine=cos[order], bm25=bm25[order])
    return SearchResult(hits, len(hits), "hybrid", time.perf_counter() - t0)


def search(
    kb: KnowledgeBase, query: str, mode: str = "semantic", k: int = 200, facets: Facets | None = None
) -> SearchResult:
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
    return {"semantic": semantic_search, "keyword": keyword_search, "hybrid": hybrid_search}[mode](
        kb, query, k=k, facets=facets
    )


def index_available(kb: KnowledgeBase) -> str | None:
    """None when semantic search can run, else a message saying what is missing and how to fix it."""
    from mind_core.kb.store import INDEX_FILE

    for name in (INDEX_FILE, EMBEDDINGS_FILE):
        if not (kb.path / name).exists():
            return (
                f"{name} is missing in {kb.path}, so semantic and hybrid search are unavailable "
                f"(keyword search still works). Rebuild with: python -m mind_core build-kb --input <data> "
                f"--out {kb.path} --force"
            )
    return None


# --- products ----------------------------------------------------------------------------------------------------


@dataclass
class ProductIndex:
    """Rows of the intentions table per product (both sides), as CSR over the product table order, plus each
    row's product-A position (for product-category charts). Saved next to the keyword index."""

    asins: pd.Index
    offsets: np.ndarray
    rows: np.ndarray
    a_pos: np.ndarray  # int32 [n] position of asin_a in the products table (-1: not described)

    @classmethod
    def build(cls, kb: KnowledgeBase) -> ProductIndex:
        df = kb.intentions
        asins = pd.Index(kb.products["asin"].to_numpy())
        n = len(df)
        a_pos = asins.get_indexer(df["asin_a"])
        ids = np.concatenate([a_pos, asins.get_indexer(df["asin_b"])])
        rows = np.concatenate([np.arange(n), np.arange(n)])
        keep = ids >= 0
        ids, rows = ids[keep], rows[keep]
        order = np.lexsort((rows, ids))
        offsets = np.zeros(len(asins) + 1, dtype=np.int64)
        np.cumsum(np.bincount(ids, minlength=len(asins)), out=offsets[1:])
        return cls(asins, offsets, rows[order].astype(np.int64), a_pos.astype(np.int32))

    def rows_of(self, asin: str) -> np.ndarray:
        i = self.asins.get_indexer([asin])[0]
        if i < 0:
            return np.empty(0, dtype=np.int64)
        return self.rows[self.offsets[i] : self.offsets[i + 1]]


def product_index(kb: KnowledgeBase) -> ProductIndex:
    per_kb = _PER_KB.setdefault(kb, {})
    if "products" in per_kb:
        return per_kb["products"]
    path = keyword_index_path(kb).with_name(
        keyword_index_path(kb).stem.replace(f"v{KEYWORD_INDEX_VERSION}-", "products-v1-") + f"-{len(kb.products)}.npz"
    )
    asins = pd.Index(kb.products["asin"].to_numpy())
    index = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                index = ProductIndex(asins, z["offsets"], z["rows"], z["a_pos"])
            if len(index.offsets) != len(asins) + 1 or len(index.a_pos) != len(kb.intentions):
                index = None
        except (OSError, ValueError, KeyError):
            index = None
    if index is None:
        index = ProductIndex.build(kb)
        try:
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, offsets=index.offsets, rows=index.rows, a_pos=index.a_pos)
            tmp.replace(path)
        except OSError as err:
            log.warning("cannot save product index to %s: %s", path, err)
    per_kb["products"] = index
    return index


def titles_of(kb: KnowledgeBase, asins) -> np.ndarray:
    """Product titles for ``asins`` (None where unknown), via the product index's cached hash table (a plain
    ``Series.map`` rebuilds a 200k-entry hash table on every call)."""
    idx = product_index(kb)
    pos = idx.asins.get_indexer(np.asarray(asins, dtype=object))
    if not len(pos) or not len(kb.products):
        return np.full(len(pos), None, dtype=object)
    titles = kb.products["title"].iloc[np.maximum(pos, 0)].to_numpy(dtype=object)
    return np.where(pos >= 0, titles, None)


def product_intentions(kb: KnowledgeBase, asin: str, kept_only: bool = False) -> pd.DataFrame:
    """Intentions of ``asin`` with a ``partner`` column (the other product) and partner titles."""
    rows = product_index(kb).rows_of(asin)
    df = kb.intentions.iloc[rows]
    if kept_only:
        df = df[(df["verdict"] == "yes").to_numpy(dtype=bool, na_value=False)]
    partner = np.where(df["asin_a"].to_numpy() == asin, df["asin_b"].to_numpy(), df["asin_a"].to_numpy())
    return df.assign(partner=partner, partner_title=titles_of(kb, partner))


def product_partners(kb: KnowledgeBase, asin: str, kept_only: bool = False) -> pd.DataFrame:
    """One row per co-buy partner: asin, title, intentions, kept (sorted by intentions desc, then asin)."""
    df = product_intentions(kb, asin, kept_only=kept_only)
    codes, partners = pd.factorize(df["partner"].to_numpy(), sort=True)
    kept = (df["verdict"] == "yes").to_numpy(dtype=bool, na_value=False)
    out = pd.DataFrame(
        {
            "asin": np.asarray(partners, dtype=object),
            "intentions": np.bincount(codes, minlength=len(partners)),
            "kept": np.bincount(codes, weights=kept, minlength=len(partners)).astype(int),
        }
    )
    out["title"] = titles_of(kb, out["asin"])
    return out.sort_values(["intentions", "asin"], ascending=[False, True], kind="stable").reset_index(drop=True)


def find_products(kb: KnowledgeBase, text: str, limit: int = 50) -> pd.DataFrame:
    """Products whose ASIN equals ``text`` (case-insensitive) or whose title contains every word of it."""
    text = (text or "").strip()
    prods = kb.products
    if not text:
        return prods.iloc[0:0][["asin", "title", "category"]]
    exact = prods[prods["asin"].str.upper() == text.upper()] if len(text) <= 20 else prods.iloc[0:0]
    mask = np.ones(len(prods), dtype=bool)
    for word in tokenize(text):
        mask &= prods["title"].str.contains(word, case=False, regex=False).to_numpy(dtype=bool, na_value=False)
    hits = prods[mask & ~prods["asin"].isin(exact["asin"]).to_numpy()]
    return pd.concat([exact, hits.head(limit)])[["asin", "title", "category"]].head(limit).reset_index(drop=True)
