"""`python -m mind_core rescore` against the fake OpenAI server: slice, P(yes) merged into KnowledgeBase.scores,
re-run idempotence, SIGKILL mid-run + resume (nothing redone, nothing lost), CLI errors."""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mind_core.cli.main import main
from mind_core.kb.build import build_kb
from mind_core.kb.store import KnowledgeBase, read_rescored
from mind_core.query.facets import Facets, filter_rows, parse_where

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_kb_master(small_input_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rescore") / "kb"
    build_kb([small_input_dir], out, progress=False)
    return out


@pytest.fixture()
def small_kb(small_kb_master, tmp_path) -> Path:
    dst = tmp_path / "kb"
    shutil.copytree(small_kb_master, dst)
    return dst


def _cmd(url: str, kb: Path, *extra: str) -> list[str]:
    return [
        "rescore",
        "--kb",
        str(kb),
        "--backend",
        "openai",
        "--endpoint",
        url,
        "--no-images",
        "--no-progress",
        *extra,
    ]


def test_rescore_slice_is_merged_and_rerun_does_nothing(small_kb, fake_openai, capsys):
    kb = KnowledgeBase(small_kb)
    want = filter_rows(kb, Facets.of(relation=["cause", "capableOf"])).head(5)
    assert len(want) == 5
    assert main(_cmd(fake_openai.url, small_kb, "--where", "relation=cause,capableOf", "--limit", "5")) == 0
    assert "5 rescored now, 0 remaining" in capsys.readouterr().err
    assert fake_openai.stats()["requests"] == 5
    parts = sorted((small_kb / "rescore").glob("*/part-*.parquet"))
    assert parts and parts[0].parent.name == f"openai_{fake_openai.model}"

    sc = KnowledgeBase(small_kb).scores  # rescore parts are not KB artifacts: the KB is not stale
    got = sc[sc["p_yes_rescored"].notna()]
    assert sorted(got.index) == sorted(want.index)
    # the fake server's logprobs: P(Yes)=0.8, P(No)=0.15 for "Yes" answers (reverse for "No")
    for _, r in got.iterrows():
        expect = 0.8 / 0.95 if r["verdict_rescored"] == "yes" else 0.15 / 0.95
        assert r["p_yes_rescored"] == pytest.approx(expect)
        assert r["rescore_source"] == f"rescore:openai:{fake_openai.model}"
    assert sc.loc[~sc.index.isin(want.index), "p_yes_rescored"].isna().all()

    fake_openai.reset_stats()
    assert main(_cmd(fake_openai.url, small_kb, "--where", "relation=cause,capableOf", "--limit", "5")) == 0
    assert fake_openai.stats()["requests"] == 0 and "5 were done, 0 rescored now" in capsys.readouterr().err
    # widening the slice only asks for the new rows; a later answer for a row wins
    assert main(_cmd(fake_openai.url, small_kb, "--where", "relation=cause,capableOf", "--limit", "7")) == 0
    assert fake_openai.stats()["requests"] == 2
    assert len(read_rescored(small_kb)) == 7


def test_sigkill_mid_run_then_resume(small_kb):
    from doubles.fake_openai_server import FakeOpenAIServer

    kb = KnowledgeBase(small_kb)
    total = 40
    want = set(kb.intentions["intention_id"].head(total))
    cmd = [
        sys.executable,
        "-m",
        "mind_core",
        *_cmd("URL", small_kb, "--limit", str(total), "--chunk-rows", "4", "--concurrency", "2"),
    ]
    with FakeOpenAIServer(latency_s=0.05) as srv:
        cmd[cmd.index("URL")] = srv.url
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while len(list((small_kb / "rescore").glob("*/part-*.parquet"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no part written in time"
            time.sleep(0.02)
        time.sleep(0.08)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close(), proc.stderr.close()
        time.sleep(0.2)
        first = read_rescored(small_kb)
        assert 0 < len(first) < total, "the kill should land mid-run"
        srv.reset_stats()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        # exactly the missing rows were asked for, once each; nothing lost, nothing duplicated
        assert srv.stats()["requests"] == total - len(first)
    parts = pd.concat(pd.read_parquet(p) for p in sorted((small_kb / "rescore").glob("*/part-*.parquet")))
    assert len(parts) == total and set(parts["intention_id"]) == want
    assert (
        parts.set_index("intention_id").loc[first["intention_id"], "created_at"].tolist()
        == first["created_at"].tolist()
    )  # rows written before the kill were kept as they were
    assert not list(small_kb.rglob("*.tmp"))


def test_rescore_errors_are_one_line(small_kb, fake_openai, capsys):
    assert main(_cmd(fake_openai.url, small_kb, "--where", "colour=red")) == 2
    assert "--where 'colour=red'" in capsys.readouterr().err
    assert main(_cmd(fake_openai.url, small_kb, "--where", "relation=nope")) == 2
    assert "no KB rows match relation=nope" in capsys.readouterr().err
    assert main(["rescore", "--kb", str(small_kb), "--backend", "offline", "--endpoint", "http://x"]) == 2
    assert "--endpoint applies to --backend openai" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no value"):
        parse_where(["relation="])
    assert parse_where(["relation=usedFor,isA", "verdict=no"]) == Facets(relations=("usedFor", "isA"), verdicts=("no",))


def test_failed_requests_are_retried_by_the_next_run(small_kb, fake_openai, capsys):
    fake_openai.set(mode="400")
    assert main(_cmd(fake_openai.url, small_kb, "--limit", "3")) == 1
    err = capsys.readouterr().err
    assert "3 requests failed" in err and (small_kb / "rescore").rglob("errors.jsonl")
    fake_openai.set(mode="normal")
    assert main(_cmd(fake_openai.url, small_kb, "--limit", "3")) == 0
    sc = KnowledgeBase(small_kb).scores
    assert sc["p_yes_rescored"].notna().sum() == 3 and not math.isnan(sc["p_yes_rescored"].iloc[0])
