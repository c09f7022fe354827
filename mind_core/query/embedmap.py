"""A 2-D map of intention embeddings with topic clusters, for the Categories page.

At most ``max_points`` rows are drawn (a seeded uniform sample; all rows when the KB is smaller), so the map costs
the same at 3k and at 1.26M intentions. Projection: PCA (SVD of the centred sample embeddings) to 2-D. Topics:
FAISS k-means (spherical, on the normalised embeddings) over the sample; each cluster is labelled by its top
words by class-based TF-IDF: ``tf(word, cluster) · log(1 + mean words per cluster / total frequency of word)``
over the cluster's intention texts, ignoring English stop words and the template words every intention shares
("potential", "co-buy", "intention", ...).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mind_core.query.derived import derived
from mind_core.query.keyword import keyword_index, tokenize
from mind_core.query.semantic import one_thread

STOP_WORDS = frozenset(
    """
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each even few for from further get had has have having he her
here hers him his how i if in into is it its itself just like likely may me might more most my no nor not of off
on once one only or other our out over own same she should so some such than that the their theirs them then there
these they this those through to too under until up very was we well were what when where which while who whom why
will with would you your s t can will don designed image features
potential co buy cobuy intention intentions product products item items consumer consumers person customer
customers purchase purchasing purchased buying bought want wants wanted someone together two these reason
could be would they both use used using uses need needs looking look provide provides one another
""".split()
)


@dataclass
class EmbeddingMap:
    rows: np.ndarray  # KB row numbers of the drawn points
    xy: np.ndarray  # [m, 2]
    cluster: np.ndarray  # [m] cluster id
    labels: list[str]  # per cluster: "k: word, word, word"
    explained: tuple[float, float]  # variance ratio of the 2 PCA axes


def sample_rows(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False)).astype(np.int64)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Project on the top-2 principal axes (eigenvectors of the d×d covariance; cheaper than an SVD of x)."""
    x = np.asarray(x, dtype=np.float32)
    xc = x - x.mean(axis=0, keepdims=True)
    evals, evecs = np.linalg.eigh(xc.T @ xc)
    order = np.argsort(evals)[::-1][:2]
    total = float(evals.clip(min=0).sum()) or 1.0
    axes = evecs[:, order]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), range(axes.shape[1])])  # deterministic sign
    ratio = tuple(float(max(e, 0.0) / total) for e in evals[order]) + (0.0,) * (2 - len(order))
    return (xc @ axes).astype(np.float32), ratio[:2]


def kmeans(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    import faiss

    k = max(1, min(k, len(x)))
    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    _d, assign = km.index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return assign[:, 0].astype(np.int64)


def top_words(texts: pd.Series | list[str], cluster: np.ndarray, n_words: int = 4) -> dict[int, list[str]]:
    """Class-based TF-IDF top words per cluster (see module docstring)."""
    per: dict[int, Counter] = {}
    for text, c in zip(texts, cluster):
        per.setdefault(int(c), Counter()).update(
            w for w in tokenize(text or "") if w not in STOP_WORDS and len(w) > 2 and not w.isdigit()
        )
    total = Counter()
    for cnt in per.values():
        total.update(cnt)
    avg = np.mean([sum(c.values()) for c in per.values()]) if per else 1.0
    out = {}
    for c, cnt in per.items():
        scored = sorted(((tf * np.log(1 + avg / total[w]), w) for w, tf in cnt.items()), key=lambda t: (-t[0], t[1]))
        out[c] = [w for _s, w in scored[:n_words]]
    return out


def top_words_indexed(kw, rows: np.ndarray, cluster: np.ndarray, n_words: int = 4) -> dict[int, list[str]]:
    """Same rule as :func:`top_words`, from a :class:`mind_core.query.keyword.KeywordIndex`'s postings (no
    re-tokenising):
    term × cluster counts = (term × text tf matrix) @ (text × cluster counts of the sampled rows)."""
    from scipy import sparse

    n_terms, n_texts = len(kw.terms), kw.n_texts
    term_of = np.repeat(np.arange(n_terms), np.diff(kw.offsets))
    tf = sparse.csr_matrix((kw.tfs.astype(np.float64), (term_of, kw.postings)), shape=(n_terms, n_texts))
    k = int(cluster.max()) + 1 if len(cluster) else 0
    onehot = sparse.csr_matrix((np.ones(len(rows)), (kw.row_text[rows], cluster)), shape=(n_texts, k))
    counts = np.asarray((tf @ onehot).todense())  # [terms, clusters]
    terms = kw.terms
    ok = np.array([len(t) > 2 and not t.isdigit() and t not in STOP_WORDS for t in terms.tolist()], dtype=bool)
    counts[~ok] = 0
    total = counts.sum(axis=1)
    avg = counts.sum() / max(k, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(counts > 0, counts * np.log(1 + avg / np.maximum(total, 1))[:, None], 0.0)
    out = {}
    for c in range(k):
        cand = np.flatnonzero(score[:, c] > 0)
        order = np.lexsort((terms[cand], -score[cand, c]))[:n_words]
        out[c] = [str(terms[cand[i]]) for i in order]
    return out


def build_map(
    embeddings: np.ndarray,
    texts: pd.Series,
    *,
    max_points: int = 4000,
    n_clusters: int = 12,
    seed: int = 0,
    keyword_index=None,
) -> EmbeddingMap:
    """``embeddings``: [n, d] (may be a float16 memmap); ``texts``: the intention column (aligned, n rows);
    ``keyword_index``: optional, makes the top-words step a sparse product instead of re-tokenising."""
    rows = sample_rows(len(texts), max_points, seed)
    x = np.asarray(embeddings[rows], dtype=np.float32)
    with one_thread():  # small matrices: see mind_core.query.semantic.one_thread
        xy, explained = pca_2d(x)
        cluster = kmeans(x, n_clusters, seed)
    words = (
        top_words(texts.iloc[rows].tolist(), cluster)
        if keyword_index is None
        else top_words_indexed(keyword_index, rows, cluster)
    )
    labels = [f"{c}: {', '.join(words.get(c, []))}" for c in range(int(cluster.max()) + 1)]
    return EmbeddingMap(rows, xy, cluster, labels, explained)


def kb_map(kb, *, max_points: int = 4000, n_clusters: int = 12, seed: int = 0) -> EmbeddingMap:
    """:func:`build_map` for a loaded KB, kept as derived data (:mod:`mind_core.query.derived`), so a restarted
    dashboard draws the map without recomputing it."""

    def load(z: dict[str, np.ndarray]) -> EmbeddingMap | None:
        m = EmbeddingMap(
            z["rows"],
            z["xy"],
            z["cluster"],
            [str(x) for x in z["labels"]],
            (float(z["explained"][0]), float(z["explained"][1])),
        )
        fits = len(m.rows) == min(max_points, len(kb.intentions)) and (
            len(m.rows) == 0 or m.rows.max() < len(kb.intentions)
        )
        return m if fits else None

    def arrays(m: EmbeddingMap) -> dict[str, np.ndarray]:
        return {
            "rows": m.rows,
            "xy": m.xy,
            "cluster": m.cluster,
            "labels": np.array(m.labels, dtype=str),
            "explained": np.array(m.explained),
        }

    def build() -> EmbeddingMap:
        return build_map(
            kb.embeddings,
            kb.intentions["intention"],
            max_points=max_points,
            n_clusters=n_clusters,
            seed=seed,
            keyword_index=keyword_index(kb),
        )

    return derived(kb, f"embedmap-v1-{max_points}-{n_clusters}-{seed}", build, arrays, load)
