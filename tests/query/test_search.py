"""Keyword / semantic / hybrid search and product lookups, checked against direct pandas / numpy computations
on the real sample KB."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from mind_core import query
from mind_core.kb.store import KnowledgeBase
from mind_core.query import hybrid as H
from mind_core.query import keyword as K
from mind_core.query import products as P
from mind_core.query import semantic as Sem
from mind_core.query.facets import Facets


def _all_words_mask(df: pd.DataFrame, words) -> np.ndarray:
    text = df["intention"].str.lower()
    mask = np.ones(len(df), dtype=bool)
    for w in words:
        mask &= text.str.contains(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", regex=True).to_numpy()
    return mask


def test_parse_query_words_and_phrases():
    q = K.parse_query('Winter "warm HAT" usb-c "single"')
    assert q.words == ("warm", "hat", "single", "winter", "usb", "c")
    assert q.phrases == (("warm", "hat"),)
    assert K.parse_query('  "" ').empty
    assert K.parse_query('a "b').words == ("a", "b")


@pytest.mark.parametrize("query", ["winter hat", "usb cable", "wireless charging", "Halloween costume"])
def test_keyword_matches_equal_pandas(sample_kb, query):
    df = sample_kb.intentions
    res = K.keyword_search(sample_kb, query, k=100_000)
    expected = np.flatnonzero(_all_words_mask(df, K.tokenize(query)))
    assert res.total == len(expected) > 0
    assert sorted(res.hits["row"]) == expected.tolist()
    assert (np.diff(res.hits["score"]) <= 1e-6).all()  # best first


def test_keyword_phrase_is_stricter_than_words(sample_kb):
    df = sample_kb.intentions
    words = K.keyword_search(sample_kb, "winter hat", k=100_000)
    phrase = K.keyword_search(sample_kb, '"winter hat"', k=100_000)
    expected = np.flatnonzero(df["intention"].str.contains(r"\bwinter[^a-z0-9]+hat\b", case=False, regex=True))
    assert sorted(phrase.hits["row"]) == expected.tolist()
    assert 0 < phrase.total < words.total
    assert set(phrase.hits["row"]) <= set(words.hits["row"])


def test_keyword_bm25_scores_match_a_direct_computation(sample_kb):
    df = sample_kb.intentions
    res = K.keyword_search(sample_kb, "leather wallet", k=20)
    texts = pd.unique(df["intention"])
    toks = [K.tokenize(t) for t in texts]
    avg = np.mean([len(t) for t in toks])
    N = len(texts)

    def bm25(doc, words):
        score = 0.0
        for w in words:
            n = sum(1 for t in toks if w in t)
            tf = doc.count(w)
            if tf:
                idf = math.log(1 + (N - n + 0.5) / (n + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(doc) / avg))
        return score

    direct = sorted(
        (
            bm25(K.tokenize(t), ["leather", "wallet"])
            for t, ok in zip(df["intention"], _all_words_mask(df, ["leather", "wallet"]))
            if ok
        ),
        reverse=True,
    )[:20]
    assert np.allclose(res.hits["score"].to_numpy(), direct, rtol=1e-4)


def test_keyword_facets_narrow_to_the_intersection(sample_kb):
    df = sample_kb.intentions
    all_hits = K.keyword_search(sample_kb, "gift", k=100_000)
    f = Facets(relations=("usedFor", "isA"), verdicts=("yes",))
    narrowed = K.keyword_search(sample_kb, "gift", k=100_000, facets=f)
    expected = (
        _all_words_mask(df, ["gift"])
        & df["relation"].isin(["usedFor", "isA"]).to_numpy()
        & (df["verdict"] == "yes").to_numpy()
    )
    assert narrowed.total == expected.sum() and 0 < narrowed.total < all_hits.total
    assert K.keyword_search(sample_kb, "gift", facets=Facets(verdicts=("none",))).total == 0  # sample: all judged
    assert K.keyword_search(sample_kb, "gift", facets=Facets(p_yes_range=(0.0, 1.0))).total == 0  # no P(yes)


def test_keyword_no_hits_and_empty_query(sample_kb):
    assert K.keyword_search(sample_kb, "xyzzyplugh").hits.empty
    with pytest.raises(ValueError, match="empty query"):
        K.keyword_search(sample_kb, ' "" ')
    with pytest.raises(ValueError, match="empty query"):
        Sem.semantic_search(sample_kb, "   ")


def test_keyword_index_saved_and_reloaded(sample_kb, sample_kb_dir, monkeypatch):
    kw = K.keyword_index(sample_kb)
    fresh = KnowledgeBase(sample_kb_dir)  # a new process would see only the cache file
    monkeypatch.setattr(K.KeywordIndex, "build", classmethod(lambda cls, texts: pytest.fail("rebuilt")))
    again = K.keyword_index(fresh)
    for name in ("terms", "offsets", "postings", "tfs", "doc_len", "row_text", "first_row"):
        assert np.array_equal(getattr(kw, name), getattr(again, name)), name
    assert len(kw.row_text) == len(sample_kb.intentions)
    assert kw.n_texts == sample_kb.intentions["intention"].nunique()


def test_semantic_is_exact_cosine_and_respects_facets(sample_kb):
    q = sample_kb.encoder.encode_one("keep warm in winter")
    emb = np.asarray(sample_kb.embeddings, dtype=np.float32)
    res = Sem.semantic_search(sample_kb, "keep warm in winter", k=10)
    assert res.hits["row"].tolist() == np.argsort(-(emb @ q), kind="stable")[:10].tolist()
    assert np.allclose(res.hits["score"], emb[res.hits["row"]] @ q, atol=2e-3)
    f = Facets(relations=("usedFor",), categories=("electronics",))
    hits = Sem.semantic_search(sample_kb, "keep warm in winter", k=10, facets=f).hits
    assert len(hits) == 10 and set(hits["relation"]) == {"usedFor"} and set(hits["category"]) == {"electronics"}


def test_semantic_faiss_path_with_bitmap_selector_equals_exact(sample_kb, monkeypatch):
    f = Facets(verdicts=("yes",))
    exact = Sem.semantic_search(sample_kb, "phone accessories", k=15, facets=f).hits
    monkeypatch.setattr(Sem, "EXACT_MAX", 10)  # force the FAISS + IDSelectorBitmap path (Flat index: exact too)
    via_faiss = Sem.semantic_search(sample_kb, "phone accessories", k=15, facets=f).hits
    assert via_faiss["row"].tolist() == exact["row"].tolist()
    assert set(via_faiss["verdict"]) == {"yes"}


def test_hybrid_score_rule(sample_kb):
    res = H.hybrid_search(sample_kb, "invicta watch gift", k=30)
    h = res.hits
    q = sample_kb.encoder.encode_one("invicta watch gift")
    emb = np.asarray(sample_kb.embeddings, dtype=np.float32)
    assert np.allclose(h["cosine"], emb[h["row"]] @ q, atol=2e-3)
    # one normaliser M for all candidates: score = 0.5·cos + 0.5·bm25/M, and M >= every shown bm25
    top = h.iloc[h["bm25"].idxmax()]
    M = 0.5 * top["bm25"] / (top["score"] - 0.5 * top["cosine"])
    assert np.allclose(h["score"], 0.5 * h["cosine"] + 0.5 * h["bm25"] / M, atol=1e-4)
    assert h["bm25"].max() - 1e-4 <= M
    assert (np.diff(h["score"]) <= 1e-9).all()
    # the rare word pulls keyword matches up: all top hits mention it
    assert h.head(5)["intention"].str.contains("invicta", case=False).all()


def test_query_embedding_is_remembered(sample_kb, monkeypatch):
    Sem.encode_query(sample_kb, "remember this query")
    monkeypatch.setattr(sample_kb.encoder, "encode_one", lambda text: pytest.fail("re-encoded"))
    hits = Sem.semantic_search(sample_kb, "remember this query", k=5, facets=Facets(relations=("isA",))).hits
    assert set(hits["relation"]) == {"isA"}


def test_search_dispatch_rejects_unknown_mode(sample_kb):
    with pytest.raises(ValueError, match="unknown search mode"):
        query.search(sample_kb, "x", mode="fuzzy")


def test_product_partners_match_the_kb(sample_kb):
    df = sample_kb.intentions
    asin = pd.concat([df["asin_a"], df["asin_b"]]).value_counts().index[0]
    mine = P.product_partners(sample_kb, asin).set_index("asin")
    rows = df[((df["asin_a"] == asin) | (df["asin_b"] == asin)).to_numpy()]
    partner = np.where(rows["asin_a"] == asin, rows["asin_b"], rows["asin_a"])
    theirs = (
        rows.assign(partner=partner, kept=(rows["verdict"] == "yes").to_numpy())
        .groupby("partner")
        .agg(intentions=("kept", "size"), kept=("kept", "sum"))
    )
    assert mine.index.sort_values().tolist() == theirs.index.sort_values().tolist()
    assert (mine["intentions"] == theirs.loc[mine.index, "intentions"]).all()
    assert (mine["kept"] == theirs.loc[mine.index, "kept"]).all()
    rows = P.product_intentions(sample_kb, asin, kept_only=True)
    assert set(rows["verdict"]) <= {"yes"} and len(rows) == mine["kept"].sum()


def test_find_products_by_asin_and_title_words(sample_kb):
    assert P.find_products(sample_kb, "b004i41m6k")["asin"].iloc[0] == "B004I41M6K"
    found = P.find_products(sample_kb, "aviator hat")
    assert len(found) >= 2 and found["title"].str.lower().str.contains("aviator").all()
    assert P.find_products(sample_kb, "").empty
