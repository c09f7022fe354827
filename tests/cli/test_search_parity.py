"""One query layer: ``search --json`` ranks exactly as :func:`mind_core.query.search`, the function the Search page
calls, for every mode, with and without facets, on both semantic paths (exact subset scoring and FAISS restricted
to the subset). Issue 11: the CLI and the dashboard once had two semantic searches with different rules."""

from __future__ import annotations

import json

import pytest

from mind_core import query
from mind_core.cli.main import main
from mind_core.kb.store import KnowledgeBase
from mind_core.query import semantic
from mind_core.query.facets import Facets

QUERY = "warm hat"  # keyword mode needs every word: this finds rows under each facet set
FACETS = {
    "none": ({}, []),
    "relation+verdict": (
        {"relation": ["isA", "usedFor"], "verdict": ["yes"]},
        ["--relation", "isA", "--relation", "usedFor", "--verdict", "yes"],
    ),
    "no-or-unjudged": ({"verdict": ["no", "none"]}, ["--verdict", "no", "--verdict", "none"]),
}


def _cli(capsys, kb_dir, mode, flags, k):
    capsys.readouterr()
    assert main(["search", "--kb", str(kb_dir), "--query", QUERY, "--mode", mode, "-k", str(k), "--json", *flags]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize(
    ("mode", "path"),
    [(m, p) for m in query.MODES for p in ("exact", "faiss") if not (m == "keyword" and p == "faiss")],
)
@pytest.mark.parametrize("facet", list(FACETS))
def test_cli_json_equals_the_query_layer(sample_kb_dir, capsys, monkeypatch, mode, facet, path):
    if path == "faiss":  # keyword search has one path
        monkeypatch.setattr(semantic, "EXACT_MAX", 10)  # every facet subset of the sample is larger: FAISS path
    columns, flags = FACETS[facet]
    k = 15
    got = _cli(capsys, sample_kb_dir, mode, flags, k)
    want = query.search(KnowledgeBase(sample_kb_dir), QUERY, mode=mode, k=k, facets=Facets.of(**columns)).hits
    assert [r["intention_id"] for r in got] == list(want["intention_id"])
    assert [r["score"] for r in got] == pytest.approx(list(want["score"]), abs=1e-6)
    assert got, "the query must find something for the comparison to mean anything"
    kb = KnowledgeBase(sample_kb_dir)
    rows = kb.intentions.set_index("intention_id").loc[[r["intention_id"] for r in got]]
    if "relation" in columns:
        assert set(rows["relation"]) <= set(columns["relation"])


def test_the_two_semantic_paths_agree_on_a_flat_index(sample_kb_dir, monkeypatch):
    kb = KnowledgeBase(sample_kb_dir)
    assert kb.manifest["index_factory"].startswith("Flat")  # exact index: both paths must give the same ranking
    facets = Facets.of(relation=["isA"])
    exact = query.search(kb, QUERY, mode="semantic", k=20, facets=facets).hits
    monkeypatch.setattr(semantic, "EXACT_MAX", 10)
    faiss_path = query.search(kb, QUERY, mode="semantic", k=20, facets=facets).hits
    assert list(exact["intention_id"]) == list(faiss_path["intention_id"])
    assert list(exact["score"]) == pytest.approx(list(faiss_path["score"]), abs=1e-3)  # float16 copy vs index


@pytest.mark.parametrize("mode", query.MODES)
def test_queries_file_gives_each_querys_hits_tagged(sample_kb_dir, capsys, tmp_path, mode):
    queries = ["warm hat", "watch", "hiking"]
    (tmp_path / "q.txt").write_text("\n".join([queries[0], "", *queries[1:]]) + "\n", encoding="utf-8")
    flags = ["--relation", "isA", "--relation", "usedFor"]
    capsys.readouterr()
    args = ["search", "--kb", str(sample_kb_dir), "--queries", str(tmp_path / "q.txt"), "--mode", mode, "-k", "5"]
    assert main([*args, *flags]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kb = KnowledgeBase(sample_kb_dir)
    for i, q in enumerate(queries):
        mine = [r for r in lines if r["query_index"] == i]
        assert mine and all(r["query"] == q for r in mine)
        assert [r["rank"] for r in mine] == list(range(1, len(mine) + 1))
        want = query.search(kb, q, mode=mode, k=5, facets=Facets.of(relation=["isA", "usedFor"])).hits
        assert [r["intention_id"] for r in mine] == list(want["intention_id"])
    assert {r["relation"] for r in lines} <= {"isA", "usedFor"}


def test_queries_file_errors(sample_kb_dir, capsys, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    assert main(["search", "--kb", str(sample_kb_dir), "--queries", str(tmp_path / "empty.txt")]) == 2
    assert "no queries" in capsys.readouterr().err
    assert main(["search", "--kb", str(sample_kb_dir), "--queries", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("k", ["-5", "0"])
@pytest.mark.parametrize("facets", ["none", "relation+verdict"])
def test_k_below_one_is_refused_the_same_way_with_and_without_facets(sample_kb_dir, capsys, k, facets):
    """Issue 16 case 13: ``-k -5`` returned a slice of the results and ``-k 0`` differed with and without facets."""
    with pytest.raises(SystemExit) as exc:
        main(["search", "--kb", str(sample_kb_dir), "--query", QUERY, "-k", k, *FACETS[facets][1]])
    assert exc.value.code == 2 and f"argument -k: must be > 0, got {k}" in capsys.readouterr().err
    kb = KnowledgeBase(sample_kb_dir)
    for mode in query.MODES:  # the library refuses it too (the pages pass k through it)
        with pytest.raises(ValueError, match="k must be a whole number >= 1"):
            query.search(kb, QUERY, mode=mode, k=int(k), facets=Facets.of(**FACETS[facets][0]))
