"""IntentionQA evaluation: loader errors, the benchmark's scoring rule, bootstrap, every method end to end on
real vendored questions (LVLM methods against the fake OpenAI server), resume, CLI, and the dashboard page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mind_core.eval import intentionqa as iqa
from mind_core.query import semantic_search

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "intentionqa"
TASK1 = DATA / "task1_sample.jsonl"
TASK2 = DATA / "task2_sample.jsonl"
BYREL = DATA / "task1_byrelation_sample.jsonl"
FULL = DATA / "full"  # the full benchmark files, vendored gzipped (data/intentionqa/README.md)


def record(qid: str, choices: list[str], answer: int, **extra) -> dict:
    rec = {
        "id": qid,
        "task": "intention_understanding",
        "variant": "mixRelation",
        "question": "A customer buys Red Tent and Blue Sleeping Bag. What is the most likely intention?",
        "products": [{"asin": "A1", "title": "Red Tent"}, {"asin": "B1", "title": "Blue Sleeping Bag"}],
        "choices": choices,
        "answer_index": answer,
        "relation": "all",
        "typicality": 0.7,
        "item_a_id": "A1",
        "item_b_id": "B1",
    }
    rec.update(extra)
    return rec


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# --- loader ------------------------------------------------------------------------------------------------------


def test_loads_vendored_files():
    t1, t2, br = (iqa.load_questions(p) for p in (TASK1, TASK2, BYREL))
    assert len(t1) == len(t2) == len(br) == 60
    assert {q.id for q in t1} == {q.id for q in t2}  # task 2 subset = same ids as task 1
    assert t1[0].task == "intention_understanding" and t2[0].task == "intention_utilization"
    assert sum(not q.scored for q in t1) == 4 and sum(not q.scored for q in br) == 6
    assert any(len(set(q.choices)) < len(q.choices) for q in br)  # duplicated options present
    assert len({q.relation for q in br}) > 5
    for a, b in zip(t1, t2):  # task 2's answer is task 1's item B
        assert (a.id, a.item_a_id, a.item_b_id) == (b.id, b.item_a_id, b.item_b_id)
        assert b.choices[b.answer_index] == a.products[1][1]
    assert iqa.load_questions(TASK1, limit=7)[-1].id == t1[6].id


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ("no_task", "field 'task' is missing"),
        ("answer_out_of_range", "field 'answer_index': 4 is outside 0..3"),
        ("letter_disagrees", "field 'answer_letter': 'B' disagrees"),
        ("bad_typicality", "field 'typicality'"),
        ("duplicate", "duplicate question id 'q1' (first on line 1)"),
    ],
)
def test_loader_errors_name_file_and_line(tmp_path, bad, message):
    good = record("q1", ["w", "x", "y", "z"], 0)
    special = {
        "answer_out_of_range": record("q2", ["w", "x", "y", "z"], 4),
        "letter_disagrees": record("q2", ["w", "x", "y", "z"], 0, answer_letter="B"),
        "bad_typicality": record("q2", ["w", "x", "y", "z"], 0, typicality="high"),
        "duplicate": record("q1", ["w", "x", "y", "z"], 0),
        "no_task": {"id": "x"},
    }
    path = write_jsonl(tmp_path / "bad.jsonl", [good, "", special.get(bad, bad)])
    with pytest.raises(iqa.DataError) as err:
        iqa.load_questions(path)
    assert str(err.value).startswith(f"{path}:3: ") and message in str(err.value)


def test_prompt_is_built_like_upstream_when_missing(tmp_path):
    q = iqa.load_questions(write_jsonl(tmp_path / "q.jsonl", [record("q1", ["w.", "x.", "y."], 2)]))[0]
    assert q.prompt_0shot.endswith("A. w.\nB. x.\nC. y.\nAnswer A or B or C only without any other word.")
    real = iqa.load_questions(TASK1, limit=1)[0]
    assert iqa.zero_shot_prompt(real.question, real.choices) == real.prompt_0shot


# --- scoring rule ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, letter",
    [
        ("B", "B"),
        ("b", "B"),
        ("C.", "C"),
        (".D.", "D"),
        ("  a\n", "A"),
        ("B. because they ...", "B"),
        ("", None),
        ("...", None),
        (None, None),
        ("Perhaps", "P"),
        ("Answer: B", "A"),
    ],
)
def test_parse_letter_like_the_benchmark(text, letter):
    assert iqa.parse_letter(text) == letter


def test_scorer_hand_made_cases(tmp_path):
    recs = [
        record("four", ["w", "x", "y", "z"], 1),
        record("three", ["w", "x", "y"], 0),  # fewer than 4 options: skipped
        record("dup", ["same", "gold", "same", "other"], 1),  # duplicated distractor text
        record("five", ["v", "w", "x", "y", "z"], 4),
        record("one", ["only"], 0),
    ]
    qs = {q.id: q for q in iqa.load_questions(write_jsonl(tmp_path / "q.jsonl", recs))}
    answers = {"four": "B.", "three": "A", "dup": "C", "five": "e", "one": "A"}
    preds = [
        iqa.make_prediction(q, "lvlm", iqa.answer_letter_for(q, answers[q.id]), raw=answers[q.id]) for q in qs.values()
    ]
    s = iqa.summarize(preds)
    assert (s["n"], s["correct"], s["n_skipped_lt4"]) == (3, 2, 2)  # four ✓, dup ✗ (picked the copy), five ✓
    assert s["accuracy"] == pytest.approx(2 / 3)
    by_id = {p.id: p for p in preds}
    assert by_id["three"].correct is None and not by_id["three"].scored
    assert by_id["dup"].correct is False

    # unparsable / out-of-range answers are scored wrong, never skipped
    bad = {"four": "Perhaps B", "dup": "", "five": "F"}
    preds = [iqa.make_prediction(qs[i], "lvlm", iqa.answer_letter_for(qs[i], t), raw=t) for i, t in bad.items()]
    s = iqa.summarize(preds)
    assert (s["n"], s["correct"], s["n_no_letter"]) == (3, 0, 3)

    # backend errors are left out (as upstream) but counted
    err = iqa.make_prediction(qs["four"], "lvlm", None, error="HTTP 500")
    s = iqa.summarize([err, *preds])
    assert s["n"] == 3 and s["n_errors"] == 1 and s["n_questions"] == 4


def test_overlap_first_best_wins_ties_and_duplicates(tmp_path):
    recs = [
        record("dup", ["a tent for camping", "for camping a tent", "blue sleeping bag", "x"], 2),
        record("tie", ["red tent", "tent red", "kitchen", "car"], 1),
    ]
    qs = iqa.load_questions(write_jsonl(tmp_path / "q.jsonl", recs))
    preds = iqa.run_overlap(qs)
    assert [p.letter for p in preds] == ["C", "A"]
    assert preds[0].scores[2] == pytest.approx(1.0) and preds[1].scores[0] == preds[1].scores[1] == 1.0
    assert [p.correct for p in preds] == [True, False]


def test_overlap_reproduces_the_reference_numbers_on_the_full_files():
    # the reference table of data/intentionqa/README.md (computed on the full files, scored rows only)
    want = {
        "task1.jsonl.gz": (1621, 1570, 0.524),
        "task1_byrelation.jsonl.gz": (1541, 1378, 0.553),
        "task2.jsonl.gz": (1621, 1505, 0.864),
    }
    for name, (n_questions, n_scored, acc) in want.items():
        questions = iqa.load_questions(FULL / name)
        s = iqa.evaluate(questions, "overlap", n_boot=50).summary
        assert (len(questions), s["n"]) == (n_questions, n_scored), name
        assert abs(s["accuracy"] - acc) < 0.0005, (name, s["accuracy"])


def test_bootstrap_is_seeded_and_sane():
    x = np.random.default_rng(3).random(500) < 0.6
    a = iqa.bootstrap_ci(x, seed=7)
    assert a == iqa.bootstrap_ci(x, seed=7)
    assert a != iqa.bootstrap_ci(x, seed=8)
    assert a[0] < x.mean() < a[1] and 0.03 < a[1] - a[0] < 0.12  # ~ ±1.96·sqrt(.24/500) = ±0.043
    assert iqa.bootstrap_ci([True] * 20) == (1.0, 1.0)
    qs = iqa.load_questions(TASK1)
    r1 = iqa.evaluate(qs, "overlap", seed=5).summary
    r2 = iqa.evaluate(qs, "overlap", seed=5).summary
    assert r1 == r2 and r1["ci95"][0] <= r1["accuracy"] <= r1["ci95"][1]
    assert set(r1["per_typicality"]) == {"0.6", "0.7", "0.8", "0.9", "1.0"}


def test_paired_difference(tmp_path):
    qs = iqa.load_questions(
        write_jsonl(tmp_path / "q.jsonl", [record(f"q{i}", ["w", "x", "y", "z"], 0) for i in range(4)])
    )
    base = [iqa.make_prediction(q, "embed", letter) for q, letter in zip(qs, "ABAB")]
    other = [iqa.make_prediction(q, "embed+kb", letter) for q, letter in zip(qs, "AAAB")]
    d = iqa.paired_difference(base, other, seed=1)
    assert (d["n"], d["diff"], d["only_other_right"], d["only_base_right"]) == (4, 0.25, 1, 0)
    assert (
        d == iqa.paired_difference(base, other, seed=1) and d["ci95"][0] == 0.0 and 0.25 < d["ci95"][1] <= 1.0
    )  # no negative differences
    dicts = [{"key": p.key, "scored": p.scored, "correct": p.correct} for p in other]
    assert iqa.paired_difference(base, dicts, seed=1) == d


# --- methods end to end on 20 real questions ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def q20():
    return iqa.load_questions(TASK1, limit=20)


@pytest.fixture(scope="module")
def vectors20(q20, sample_kb):
    return iqa.TextVectors(q20, sample_kb.embed_model)


def test_overlap_method(q20):
    r = iqa.evaluate(q20, "overlap")
    assert len(r.predictions) == 20 and r.summary["n"] == sum(q.scored for q in q20)
    for q, p in zip(q20, r.predictions):
        assert p.letter == iqa.LETTERS[int(np.argmax(iqa.overlap_scores(q)))]


def test_embed_method(q20, vectors20):
    from mind_core.kb.embed import get_embedder

    r = iqa.evaluate(q20, "embed", vectors=vectors20)
    q, p = q20[3], r.predictions[3]
    emb = get_embedder()
    direct = emb.encode(list(q.choices)) @ emb.encode_one(q.question)
    assert np.allclose(p.scores, direct, atol=1e-4)
    assert p.letter == iqa.LETTERS[int(np.argmax(direct))]
    assert r.summary["accuracy"] > 0.5  # chance is 0.25; a real encoder does far better on task 1


def test_embed_kb_method_scores_question_plus_weighted_knowledge(q20, vectors20, sample_kb):
    r = iqa.evaluate(q20, "embed+kb", kb=sample_kb, k=4, vectors=vectors20)
    assert r.k == 4
    for q, p in list(zip(q20, r.predictions))[:5]:
        assert len(p.retrieved) == 4
        hits = semantic_search(sample_kb, q.question, k=4).hits  # the one query layer: the same ranking
        assert [h["intention_id"] for h in p.retrieved] == list(hits["intention_id"])
        w = np.array([h["weight"] for h in p.retrieved])
        assert w.sum() == pytest.approx(1.0, abs=1e-5)
        know = np.asarray(sample_kb.embeddings[[h["row"] for h in p.retrieved]], dtype=np.float32)
        c, qv = vectors20.many(q.choices), vectors20(q.question)
        assert np.allclose(p.scores, c @ qv + (c @ know.T) @ w, atol=1e-4)
    with pytest.raises(ValueError, match="needs a KB"):
        iqa.evaluate(q20, "embed+kb")


def test_exclude_kb_pairs(sample_kb):
    qs = iqa.load_questions(TASK1)
    kept, dropped = iqa.exclude_pairs(qs, sample_kb.intentions["pair_id"].unique())
    assert dropped == 21 and len(kept) == 39
    kb_pairs = set(sample_kb.intentions["pair_id"])
    assert not any(q.pair_id in kb_pairs for q in kept)


def test_exclude_kb_pairs_ignores_order(tmp_path, sample_kb):
    row = sample_kb.intentions.iloc[0]
    recs = [
        record("same", ["w", "x", "y", "z"], 0, item_a_id=row["asin_a"], item_b_id=row["asin_b"]),
        record("swapped", ["w", "x", "y", "z"], 0, item_a_id=row["asin_b"], item_b_id=row["asin_a"]),
        record("other", ["w", "x", "y", "z"], 0, item_a_id=row["asin_a"], item_b_id="NOT-IN-KB"),
    ]
    qs = iqa.load_questions(write_jsonl(tmp_path / "q.jsonl", recs))
    kept, dropped = iqa.exclude_pairs(qs, sample_kb.intentions["pair_id"].unique())
    assert dropped == 2 and [q.id for q in kept] == ["other"]


@pytest.fixture()
def openai_backend(fake_openai):
    from mind_core.lvlm import make_backend

    backend = make_backend("openai", endpoint=fake_openai.url, max_retries=0, concurrency=4)
    yield backend
    backend.close()


def test_lvlm_method_against_fake_server(q20, fake_openai, openai_backend, tmp_path):
    fake_openai.set(mcq_answer="A.")
    cache = iqa.AnswerCache(tmp_path / "answers.jsonl")
    r = iqa.evaluate(q20, "lvlm", backend=openai_backend, cache=cache)
    assert len(fake_openai.requests) == 20
    sent = [req["body"]["messages"][-1]["content"] for req in fake_openai.requests]  # concurrent: any order
    assert sorted(sent) == sorted(q.prompt_0shot for q in q20)
    assert {req["body"]["max_tokens"] for req in fake_openai.requests} == {10}
    scored = [q for q in q20 if q.scored]
    assert all(p.letter == "A" for p in r.predictions)
    assert r.summary["correct"] == sum(q.answer_letter == "A" for q in scored)
    assert (r.backend, r.model) == ("openai", "fake-vlm")

    # a repeated run asks nothing: every answer comes from the cache file
    fake_openai.reset_stats()
    again = iqa.evaluate(q20, "lvlm", backend=openai_backend, cache=iqa.AnswerCache(tmp_path / "answers.jsonl"))
    assert len(fake_openai.requests) == 0 and again.summary == r.summary
    assert all(p.cached for p in again.predictions)


def test_lvlm_resumes_after_a_kill_and_retries_errors(q20, fake_openai, openai_backend, tmp_path):
    path = tmp_path / "answers.jsonl"
    iqa.evaluate(q20[:12], "lvlm", backend=openai_backend, cache=iqa.AnswerCache(path), batch_size=4)
    with open(path, "a") as fh:
        fh.write('{"cache_key": "torn')  # the process died mid-write
    fake_openai.reset_stats()
    fake_openai.set(mode="fail_500", fail_times=3)  # 3 calls fail: left out, counted, not cached
    r = iqa.evaluate(q20, "lvlm", backend=openai_backend, cache=iqa.AnswerCache(path), batch_size=4)
    assert len(fake_openai.requests) == 8  # only the 8 unanswered questions were asked
    assert r.summary["n_errors"] == 3 and sum(p.error is not None for p in r.predictions) == 3
    fake_openai.set(mode="normal")
    fake_openai.reset_stats()
    r = iqa.evaluate(q20, "lvlm", backend=openai_backend, cache=iqa.AnswerCache(path))
    assert len(fake_openai.requests) == 3 and r.summary["n_errors"] == 0
    # answers match what the server said (hash mode: one of the offered letters + ".")
    for p in r.predictions:
        assert p.raw.endswith(".") and p.letter == p.raw[0]


def test_lvlm_unparsable_answers_are_wrong(q20, fake_openai, openai_backend):
    fake_openai.set(mode="garbage")
    r = iqa.evaluate(q20, "lvlm", backend=openai_backend)
    assert r.summary["correct"] == 0 and r.summary["n_no_letter"] == r.summary["n"] > 0


def test_lvlm_kb_puts_retrieved_intentions_in_the_prompt(q20, vectors20, sample_kb, fake_openai, openai_backend):
    r = iqa.evaluate(q20, "lvlm+kb", kb=sample_kb, k=3, vectors=vectors20, backend=openai_backend)
    assert len(fake_openai.requests) == 20 and r.k == 3
    sent = [req["body"]["messages"][-1]["content"] for req in fake_openai.requests]  # concurrent: any order
    prompt = next(t for t in sent if t.endswith(q20[0].prompt_0shot))
    p = r.predictions[0]
    assert prompt.startswith("Background knowledge") and all(t.startswith("Background knowledge") for t in sent)
    assert len(p.retrieved) == 3
    for hit in p.retrieved:
        assert " ".join(hit["intention"].split()[: iqa.KB_INTENTION_WORDS]) in prompt
    assert p.letter in "ABCD" and p.raw == f"{p.letter}."


# --- CLI ---------------------------------------------------------------------------------------------------------


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mind_core", "eval", "intentionqa", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_cli_methods_exclusion_and_json(sample_kb_dir, tmp_path):
    out = tmp_path / "res.json"
    proc = cli(
        "--data",
        str(TASK2),
        "--kb",
        str(sample_kb_dir),
        "--method",
        "overlap",
        "--method",
        "embed+kb",
        "--method",
        "embed",
        "--k",
        "3",
        "--exclude-kb-pairs",
        "--limit",
        "20",
        "--json",
        str(out),
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert "21 dropped because their pair is in the KB; evaluating 20" in proc.stderr
    assert "overlap" in proc.stdout and "embed+kb (k=3)" in proc.stdout
    res = json.loads(out.read_text())
    assert res["exclude_kb_pairs"] and res["n_excluded"] == 21 and res["tasks"] == ["intention_utilization"]
    assert [r["method"] for r in res["results"]] == ["overlap", "embed+kb", "embed"]
    assert "embed+kb - embed: " in proc.stdout and res["kb_effect"][0]["n"] == res["results"][2]["n"]
    ekb = res["results"][1]
    assert len(ekb["predictions"]) == 20 and len(ekb["predictions"][0]["retrieved"]) == 3
    assert ekb["n"] + ekb["n_skipped_lt4"] == 20 and len(ekb["ci95"]) == 2


def test_cli_lvlm_against_fake_server_resumes(fake_openai, tmp_path):
    answers = tmp_path / "answers.jsonl"
    args = (
        "--data",
        str(TASK1),
        "--method",
        "lvlm",
        "--backend",
        "openai",
        "--endpoint",
        fake_openai.url,
        "--limit",
        "10",
        "--answers",
        str(answers),
        "--no-progress",
    )
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "lvlm" in proc.stdout and "[openai:fake-vlm]" in proc.stdout
    assert len(answers.read_text().splitlines()) == 10 and len(fake_openai.requests) == 10
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert len(fake_openai.requests) == 10  # the second run asked nothing
    assert again.stdout.split("  (")[0] == proc.stdout.split("  (")[0]  # same result line, timing aside


def test_cli_user_errors(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [record("q1", ["w", "x", "y", "z"], 9)])
    proc = cli("--data", str(bad))
    assert proc.returncode == 2 and f"{bad}:1: field 'answer_index'" in proc.stderr
    proc = cli("--data", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "no such IntentionQA file" in proc.stderr
    proc = cli("--data", str(TASK1), "--method", "lvlm")
    assert proc.returncode == 2 and "need --backend" in proc.stderr
    proc = cli("--data", str(TASK1), "--method", "embed+kb", "--kb", str(tmp_path / "nokb"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


# --- dashboard page ----------------------------------------------------------------------------------------------


def test_page_runs_methods_and_browses_questions(sample_kb_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MIND_KB", str(sample_kb_dir))
    at = AppTest.from_file(str(REPO / "dashboard" / "views" / "intentionqa.py"), default_timeout=180).run()
    assert not at.exception, at.exception
    assert any("Run" in i.value for i in at.info)
    at.selectbox(key="iqa_file").select(str(TASK1))
    at.number_input(key="iqa_n").set_value(20)
    at.slider(key="iqa_k").set_value(3)
    at.button[0].click().run()
    assert not at.exception, at.exception
    summary = at.dataframe[0].value
    assert list(summary["method"]) == ["overlap", "embed", "embed+kb"]
    assert (summary["scored"] + summary["skipped (<4 options)"]).tolist() == [20, 20, 20]
    overlap_cli = iqa.evaluate(iqa.sample_questions(iqa.load_questions(TASK1), 20, 0), "overlap").summary
    assert summary["accuracy"][0] == pytest.approx(overlap_cli["accuracy"])
    assert len(at.get("plotly_chart")) == 3
    choices = at.dataframe[1].value
    assert {"letter", "choice", "gold", "overlap", "embed", "embed+kb"} <= set(choices.columns)
    assert (choices["gold"] == "✓").sum() == 1 and (choices["embed+kb"] == "◀ picked").sum() == 1
    assert len(at.dataframe[2].value) == 3
    at.selectbox(key="iqa_question").select(5).run()
    assert not at.exception, at.exception
