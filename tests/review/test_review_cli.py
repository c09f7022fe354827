"""``review import | export | stats`` as the README shows them: files round-trip exactly through the database, bad
rows get ``file:line`` and exit 2 with nothing written, re-importing replaces, the stats JSON recomputes from the
database, and ``review export --labels`` feeds ``critic train --labels human``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mind_core.cli.main import main
from mind_core.kb.build import build_kb
from mind_core.kb.store import KnowledgeBase, load_scores
from mind_core.review.analysis import review_report
from mind_core.review.store import ReviewStore
from mind_core.scores.critic import load_critic


@pytest.fixture(scope="module")
def small_kb_master(small_input_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("review_kb") / "small"
    build_kb([small_input_dir], out, progress=False)
    return out


@pytest.fixture()
def env(small_kb_master, tmp_path, monkeypatch):
    """A private copy of the 120-row KB (export --labels writes into it) and a fresh review database."""
    import shutil

    kb = tmp_path / "small"
    shutil.copytree(small_kb_master, kb)
    db = tmp_path / "review.sqlite"
    monkeypatch.setenv("MIND_REVIEW_DB", str(db))
    return kb, f"sqlite:///{db}"


def _ratings(kb_dir, annotators=("ann", "bob"), n=None, seed=0) -> pd.DataFrame:
    """Answers that follow the filter's verdict with some noise (so a critic can learn them)."""
    kb = KnowledgeBase(kb_dir)
    df = kb.intentions.iloc[: n or len(kb.intentions)]
    rng = np.random.default_rng(seed)
    rows = []
    for who in annotators:
        for k, (iid, verdict) in enumerate(zip(df["intention_id"], df["verdict"])):
            p = int((verdict == "yes") if rng.random() < 0.85 else rng.random() < 0.5)
            rows.append(
                {
                    "intention_id": iid,
                    "annotator": who,
                    "plausibility": p,
                    "typicality": int(rng.integers(1, 6)) if p else None,
                    "comment": 'a "quoted", multi\nline comment' if k == 3 else None,
                    "created_at": f"2026-01-02T03:04:{k % 60:02d}.{k:03d}Z",
                }
            )
    out = pd.DataFrame(rows)
    out["typicality"] = pd.array(out["typicality"].tolist(), dtype="Int64")
    return out


def test_import_export_round_trip_exactly(env, tmp_path, capsys):
    kb, url = env
    src = tmp_path / "ratings.csv"
    _ratings(kb).to_csv(src, index=False)
    assert main(["review", "import", "--kb", str(kb), "--file", str(src)]) == 0
    assert "imported 240 answers" in capsys.readouterr().out
    first = {}
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"export.{fmt}"
        assert main(["review", "export", "--kb", str(kb), "--out", str(out)]) == 0
        first[fmt] = out.read_bytes()
    stored = ReviewStore(url).answers("small")
    # each exported file, imported into an empty database, gives the same rows and exports byte-identically
    for fmt in ("csv", "jsonl", "parquet"):
        other = tmp_path / f"other-{fmt}.sqlite"
        path = tmp_path / f"export.{fmt}"
        assert main(["review", "import", "--kb", str(kb), "--file", str(path), "--db", str(other)]) == 0
        again = tmp_path / f"again.{fmt}"
        assert main(["review", "export", "--kb", str(kb), "--out", str(again), "--db", str(other)]) == 0
        assert again.read_bytes() == first[fmt], fmt
        pd.testing.assert_frame_equal(ReviewStore(f"sqlite:///{other}").answers("small"), stored)
    assert stored.loc[stored["comment"].notna(), "comment"].unique().tolist() == ['a "quoted", multi\nline comment']
    assert stored["typicality"].isna().sum() == (stored["plausibility"] == 0).sum()


def test_reimporting_replaces_and_answers_are_per_kb(env, tmp_path, capsys):
    kb, url = env
    first = _ratings(kb, annotators=("ann",), n=10)
    first.to_csv(tmp_path / "a.csv", index=False)
    assert main(["review", "import", "--kb", str(kb), "--file", str(tmp_path / "a.csv")]) == 0
    changed = first.assign(plausibility=1 - first["plausibility"], typicality=pd.NA, created_at="")
    changed.to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    assert main(["review", "import", "--kb", str(kb), "--file", str(tmp_path / "b.jsonl")]) == 0
    assert "0 new, 10 replaced; 10 answers" in capsys.readouterr().out
    got = ReviewStore(url).answers("small").set_index("intention_id").loc[first["intention_id"]]
    assert (got["plausibility"].to_numpy() == 1 - first["plausibility"].to_numpy()).all()
    assert (got["created_at"] > "2026-01-03").all()  # blank created_at: the time of the import


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("intention_id,annotator,plausibility,typicality\n{id0},ann,1,4\n{id1},ann,1,7\n", ":3: column 'typicality'"),
        ("intention_id,annotator,plausibility\n{id0},ann,1\nnope-1,ann,0\n", ":3: column 'intention_id'"),
        ("intention_id,annotator,plausibility\n{id0},ann,maybe\n", ":2: column 'plausibility'"),
        ("intention_id,annotator,plausibility\n{id0},,1\n", ":2: column 'annotator'"),
        ("intention_id,annotator\n{id0},ann\n", ":1: no column plausibility"),
        ("intention_id,annotator,plausibility\n{id0},ann,1\n{id0},ann,0\n", ":3: column 'annotator'"),
        (
            'intention_id,annotator,plausibility,comment\n{id0},ann,1,"two\nlines"\n{id1},ann,1,x,extra\n',
            ":4: 1 more value",
        ),
        ('{{"intention_id": "{id0}", "annotator": "ann", "plausibility": 1}}\n{{broken\n', ":2: not JSON"),
        ('{{"intention_id": "{id0}", "annotator": "ann", "plausibility": 1, "created_at": "soon"}}\n', ":1: field"),
    ],
)
def test_bad_rows_name_file_and_line_and_nothing_is_written(env, tmp_path, capsys, content, where):
    kb, url = env
    ids = KnowledgeBase(kb).intentions["intention_id"].tolist()
    suffix = "jsonl" if content.startswith("{") else "csv"
    path = tmp_path / f"bad.{suffix}"
    path.write_text(content.format(id0=ids[0], id1=ids[1]), encoding="utf-8")
    assert main(["review", "import", "--kb", str(kb), "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}{where}" in err, err
    assert ReviewStore(url).count("small") == 0


def test_stats_json_recomputes_from_the_database(env, tmp_path, capsys):
    kb, url = env
    _ratings(kb).to_csv(tmp_path / "r.csv", index=False)
    assert main(["review", "import", "--kb", str(kb), "--file", str(tmp_path / "r.csv")]) == 0
    capsys.readouterr()
    assert main(["review", "stats", "--kb", str(kb), "--json", "--boot", "200"]) == 0
    got = json.loads(capsys.readouterr().out)
    k = KnowledgeBase(kb)
    expect = review_report(ReviewStore(url).answers("small"), k.intentions, load_scores(k), n_boot=200)
    assert {key: got[key] for key in expect} == json.loads(json.dumps(expect))
    plaus = got["agreement"]["plausibility"]
    assert plaus["annotators"] == 2 and plaus["items"] == 120 and plaus["cohen_kappa_items"] == 120
    assert -1 <= plaus["cohen_kappa"] <= 1 and -1 <= plaus["krippendorff_alpha"] <= 1
    assert got["filter"]["items"] > 0 and "critic" in got["scores"]
    assert main(["review", "stats", "--kb", str(kb)]) == 0
    text = capsys.readouterr().out
    assert "Cohen's kappa" in text and "Krippendorff's alpha" in text and "precision of kept" in text


def test_export_labels_feeds_critic_train_human(env, tmp_path, capsys):
    kb, url = env
    _ratings(kb, annotators=("ann", "bob", "cy")).to_csv(tmp_path / "r.csv", index=False)
    assert main(["review", "import", "--kb", str(kb), "--file", str(tmp_path / "r.csv")]) == 0
    assert main(["review", "export", "--kb", str(kb), "--labels"]) == 0
    labels = pd.read_parquet(kb / "labels" / "human.parquet")
    answers = ReviewStore(url).answers("small")
    majority = answers.groupby("intention_id")["plausibility"].mean().map(lambda m: "yes" if m > 0.5 else "no")
    assert labels.set_index("intention_id")["label"].sort_index().equals(majority.sort_index())  # 3 raters: no ties
    model = tmp_path / "human-critic"
    args = ["critic", "train", "--kb", str(kb), "--out", str(model), "--labels", "human", "--folds", "3", "--C", "2"]
    assert main(args) == 0
    critic = load_critic(model)
    assert critic.manifest["labels"] == "human"
    assert critic.manifest["training_kb"]["human_labels"]["labelled"] == len(labels) == 120


def test_export_needs_a_target_and_labels_need_answers(env, capsys):
    kb, _ = env
    assert main(["review", "export", "--kb", str(kb)]) == 2
    assert "give --out" in capsys.readouterr().err
    assert main(["review", "export", "--kb", str(kb), "--labels"]) == 2
    assert "no answers" in capsys.readouterr().err
    assert main(["review", "stats", "--kb", str(kb)]) == 0
    assert "no answers" in capsys.readouterr().out
