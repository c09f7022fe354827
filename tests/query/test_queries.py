"""Queries over the vendored sample KB: facets, product lookups, counts, semantic search quality."""

from __future__ import annotations

import numpy as np
import pytest

from mind_core.query import semantic_search
from mind_core.query.aggregate import verdict_counts
from mind_core.query.facets import Facets, filter_rows
from mind_core.query.products import pair_intentions, product_intentions, product_partners
from mind_core.query.semantic import similar_intentions


def test_stats_per_relation_match_readme(sample_kb):
    rel = verdict_counts(sample_kb.intentions, "relation").set_index("relation")
    assert rel.loc["partOf", "intentions"] == 267 and rel.loc["partOf", "kept"] == 138
    assert rel.loc["propertyOf", "kept_rate"] == pytest.approx(0.714, abs=1e-3)
    assert rel["intentions"].sum() == 3397
    cat = verdict_counts(sample_kb.intentions, "category").set_index("category")
    assert cat.loc["clothing", "intentions"] == 2073 and cat.loc["electronics", "intentions"] == 1324


def test_queries_by_product_pair_and_facets(sample_kb):
    rows = product_intentions(sample_kb, "B004I41M6K")
    assert len(rows) >= 1 and ((rows.asin_a == "B004I41M6K") | (rows.asin_b == "B004I41M6K")).all()
    partners = product_partners(sample_kb, "B004I41M6K")
    assert "B00DGBVAOK" in set(partners["asin"])
    pair = pair_intentions(sample_kb, "B00DGBVAOK", "B004I41M6K")  # order does not matter
    assert len(pair) >= 1 and set(pair["pair_id"]) == {"B004I41M6K|B00DGBVAOK"}
    sub = filter_rows(sample_kb, Facets.of(relation="usedFor", verdict="yes", category="clothing"))
    direct = sample_kb.intentions.query("relation == 'usedFor' and verdict == 'yes' and category == 'clothing'")
    assert len(sub) == len(direct) > 0


def test_exact_text_search_returns_that_intention_first(sample_kb):
    rng = np.random.default_rng(7)
    picks = rng.choice(len(sample_kb.intentions), size=50, replace=False)
    recs = sample_kb.intentions.iloc[picks]
    results = similar_intentions(sample_kb, list(recs["intention"]), k=3)
    for (_, rec), res in zip(recs.iterrows(), results):
        hits = res.hits
        assert hits.iloc[0]["intention_id"] == rec["intention_id"], rec["intention"][:80]
        assert hits.iloc[0]["score"] == pytest.approx(1.0, abs=1e-3)
    # the single-query path agrees
    one = semantic_search(sample_kb, recs.iloc[0]["intention"], k=1).hits
    assert one.iloc[0]["intention_id"] == recs.iloc[0]["intention_id"]


@pytest.mark.parametrize(
    "query, relation, min_relation_hits, word",
    [
        # MiniLM retrieves by topic first; relation wording pulls the relation in when the topic carries it
        ("the two products are both made of leather", "madeOf", 3, "leather"),
        ("both are symbols of love and romance", "symbolOf", 2, "valentine"),
        ("shoppers want to stay warm when it is cold outside", None, 0, "warm"),
    ],
)
def test_paraphrased_queries_find_relevant_intentions(sample_kb, query, relation, min_relation_hits, word):
    hits = semantic_search(sample_kb, query, k=10).hits
    texts = " ".join(hits["intention"]).lower()
    assert word in texts
    if relation:
        assert (hits["relation"] == relation).sum() >= min_relation_hits, hits["relation"].tolist()


def test_search_with_facets_is_exact_within_the_subset(sample_kb):
    facets = Facets.of(relation=["usedFor"], verdict="yes")
    hits = semantic_search(sample_kb, "keeping warm in winter", k=5, facets=facets).hits
    assert len(hits) == 5 and set(hits["relation"]) == {"usedFor"} and set(hits["verdict"]) == {"yes"}
    assert list(hits["score"]) == sorted(hits["score"], reverse=True)
    assert semantic_search(sample_kb, "anything", k=5, facets=Facets.of(relation="effect", category="nope")).hits.empty
    with pytest.raises(ValueError, match="empty query"):
        semantic_search(sample_kb, "   ")
