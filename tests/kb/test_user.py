"""mind_core.kb.user: "Save into my KB" merges distilled rows into the user's Parquet parts and builds a KB the
sidebar lists; mind_core.kb.export.export_rows writes a run's rows."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from mind_core.distill.stages import make_row
from mind_core.kb.export import export_rows
from mind_core.kb.store import KnowledgeBase
from mind_core.kb.user import USER_KB_NAME, save_run
from mind_core.query import semantic_search
from mind_core.schema import Product

RELS = ["usedFor", "capableOf", "isA"]
HAT = Product("UHAT000001", "Wool winter hat", "A warm knitted wool hat.", category="uploaded")
GLOVES = Product("UGLOVES001", "Leather gloves", "Warm lined leather gloves.", category="uploaded")
SOURCE = "distilled:openai:fake-vlm"
ROWS = [
    make_row(
        HAT,
        GLOVES,
        "usedFor",
        "The potential co-buy intention could be they are both used for keeping warm.",
        source=SOURCE,
        verdict="yes",
        reason="Yes, both keep you warm.",
        p_yes=0.8,
    ),
    make_row(
        HAT,
        GLOVES,
        "capableOf",
        "The potential co-buy intention could be they both are capable of warming.",
        source=SOURCE,
        verdict="no",
        reason="No, too generic.",
        p_yes=0.2,
    ),
]


def test_save_into_the_user_kb_and_export(tmp_path, monkeypatch):
    rows, products = ROWS, [HAT, GLOVES]
    monkeypatch.setenv("MIND_USER_DATA", str(tmp_path / "user"))
    rep = save_run(rows, products)
    assert rep.kb_dir == tmp_path / "user" / USER_KB_NAME and (rep.added, rep.replaced, rep.total) == (2, 0, 2)
    from dashboard.ui import kb_candidates

    assert str(rep.kb_dir) in kb_candidates()
    kb = KnowledgeBase(rep.kb_dir)
    assert set(kb.intentions["intention_id"]) == {r["intention_id"] for r in rows}
    assert kb.products.loc[HAT.asin, "description"] == products[0].description != ""
    assert set(kb.intentions["source"].astype(str)) == {"distilled:openai:fake-vlm"}
    hit = semantic_search(kb, rows[0]["intention"], k=1).hits
    assert hit.iloc[0]["intention_id"] == rows[0]["intention_id"]
    # saving the same run again replaces; a row of another pair is added
    other = dict(rows[0], intention_id="d-other", asin_b="UOTHER0001", pair_id="UHAT000001|UOTHER0001")
    rep2 = save_run(rows + [other], products + [Product("UOTHER0001", "Scarf")])
    assert (rep2.added, rep2.replaced, rep2.total) == (1, 2, 3)
    assert len(KnowledgeBase(rep2.kb_dir).intentions) == 3
    with pytest.raises(ValueError, match="nothing to save"):
        save_run([], products)

    csv = pd.read_csv(io.BytesIO(export_rows(rows, "csv", products)))
    assert list(csv["relation"]) == RELS[:2] and (csv["title_a"] == HAT.title).all()
    jl = pd.read_json(io.BytesIO(export_rows(rows, "jsonl", products)), lines=True)
    pq_ = pd.read_parquet(io.BytesIO(export_rows(rows, "parquet", products)))
    assert len(jl) == len(pq_) == 2 and list(pq_["intention_id"]) == [r["intention_id"] for r in rows]


def test_annotator_folders_are_sanitised(tmp_path):
    # issue 16 (14): on a shared dashboard each name gets its own saved runs
    from mind_core.kb.user import annotator_folder, annotator_root, user_kb_path

    assert annotator_folder("  Anna Müller ") == "anna-muller"
    assert annotator_folder("../../etc/passwd") == "etc-passwd"
    assert annotator_folder("x" * 200) == "x" * 40
    for bad in ("", "   ", "../..", "///"):
        with pytest.raises(ValueError, match="name"):
            annotator_folder(bad)
    root = annotator_root("Anna", tmp_path)
    assert root == tmp_path / "annotators" / "anna" and root.resolve().is_relative_to(tmp_path.resolve())
    assert user_kb_path(root) == tmp_path / "annotators" / "anna" / USER_KB_NAME
