"""``distill --engine ray`` on a local 2-CPU Ray instance against the fake OpenAI server: every (pair, relation)
exactly once and the same rows as the local engine, a second run does nothing, a chunk that fails once is retried
by Ray, and a driver killed with SIGKILL and started again loses and repeats nothing.

One Ray instance serves the module (Ray takes seconds to start); the engine uses a Ray already initialised in
the process. The SIGKILL test runs the driver as a subprocess with its own local Ray instance."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_batch import _distill_cmd

from mind_core.cli.main import main as cli_main
from mind_core.data.amazon import load_amazon_metadata
from mind_core.data.kb_files import load_inputs

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "amazon_meta_sample.json.gz"
RELS = "usedFor,isA"


@pytest.fixture(scope="module")
def ray_local():
    import ray  # an extra of the project that `make test` installs: missing, these tests fail, never skip

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture()
def srv():
    from doubles.fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer(latency_s=0.02) as server:
        yield server


def _rows(out: Path) -> list[dict]:
    rows = []
    for part in sorted((out / "intentions").glob("part-*.parquet")):
        rows += pq.read_table(part).to_pylist()
    return rows


def _chat(server) -> list[dict]:
    return [r for r in server.requests if r["path"].rstrip("/").endswith("/chat/completions")]


def _kinds(server) -> dict[str, int]:
    out = {"intention": 0, "filter": 0, "describe": 0}
    for r in _chat(server):
        text = json.dumps(r["body"]["messages"])
        kind = "intention" if "begin your answer with" in text else "filter" if '\\"Yes\\" or' in text else "describe"
        out[kind] += 1
    return out


def _args(url: str, out: Path, *extra: str) -> list[str]:
    return _distill_cmd(url, out, *extra, relations=RELS)[3:]


def _expected_keys(max_pairs: int | None = None) -> set[tuple[str, str]]:
    pairs = load_amazon_metadata(FIXTURE).pairs
    return {(p.pair_id, r) for p in pairs[:max_pairs] for r in RELS.split(",")}


def test_ray_is_imported_only_when_the_ray_engine_runs():
    code = (
        "import sys, mind_core.cli.main, mind_core.cli.engine_args, mind_core.distill.ray_engine, "
        "mind_core.kb.ray_embed, mind_core.kb.build\n"
        "mind_core.cli.main.build_parser()\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_ray_flags_without_the_ray_engine_are_a_user_error(tmp_path, capsys):
    assert cli_main(_args("http://127.0.0.1:9/v1", tmp_path / "o", "--workers", "2")) == 2
    assert "--workers goes with --engine ray" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_every_pair_relation_exactly_once_the_same_rows_as_the_local_engine(ray_local, srv, tmp_path, capsys):
    out_ray, out_local = tmp_path / "ray", tmp_path / "local"
    extra = ("--max-pairs", "10", "--chunk-pairs", "2", "--concurrency", "2")
    assert cli_main(_args(srv.url, out_ray, *extra, "--engine", "ray", "--workers", "2")) == 0
    err = capsys.readouterr().err
    assert "engine: ray (a local Ray instance), 2 workers" in err and "20 written now, 0 remaining" in err
    rows = _rows(out_ray)
    keys = [(r["pair_id"], r["relation"]) for r in rows]
    assert len(keys) == len(set(keys)) == 20 and set(keys) == _expected_keys(10)
    ray_calls = _kinds(srv)

    srv.reset_stats()
    assert cli_main(_args(srv.url, out_local, *extra)) == 0
    capsys.readouterr()
    local = _rows(out_local)

    def content(rs):
        return {(r["pair_id"], r["relation"], r["intention"], r["verdict"], r["source"], r["flags"]) for r in rs}

    # the same stage code and backend: the same rows from the same intention and filter calls (a product in
    # two chunks computed at once may be described in both: stage 1 is per chunk)
    local_calls = _kinds(srv)
    assert content(rows) == content(local)
    assert ray_calls["intention"] == local_calls["intention"] == 20 and ray_calls["filter"] == local_calls["filter"]
    assert ray_calls["describe"] >= local_calls["describe"] > 0
    log = [json.loads(line) for line in (out_ray / "_state" / "runs.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[0]["engine"] == "ray" and log[0]["workers"] == 2

    # the folder is a distill output like any other: the KB loader reads it, with the stage-1 descriptions
    loaded = load_inputs([out_ray])
    assert loaded.report.intentions == 20 and loaded.report.skipped == 0
    meta = load_amazon_metadata(FIXTURE)
    for r in loaded.intentions:
        for asin in (r["asin_a"], r["asin_b"]):
            assert loaded.products[asin]["description"].strip() or meta.products[asin].description

    # a second run redoes nothing: no chat request at all
    srv.reset_stats()
    assert cli_main(_args(srv.url, out_ray, *extra, "--engine", "ray")) == 0
    assert "20 were done, 0 written now, 0 remaining" in capsys.readouterr().err
    assert _chat(srv) == [] and len(_rows(out_ray)) == 20


def test_a_chunk_that_fails_once_is_retried_by_ray(ray_local, srv, tmp_path, capsys):
    # the first chat request gets HTTP 404 (a server restarting behind its address): the openai backend stops
    # the chunk with a BackendError, and Ray Data runs the chunk again
    srv.set(mode="404", fail_times=1)
    out = tmp_path / "run"
    args = _args(srv.url, out, "--max-pairs", "6", "--chunk-pairs", "3", "--engine", "ray", "--workers", "2")
    assert cli_main(args) == 0
    assert "12 written now, 0 remaining" in capsys.readouterr().err
    assert srv.failures_served == 1 and sum(1 for r in srv.requests if r.get("failed") == "404") == 1
    keys = [(r["pair_id"], r["relation"]) for r in _rows(out)]
    assert len(keys) == len(set(keys)) == 12 and set(keys) == _expected_keys(6)
    assert not (out / "_state" / "errors.jsonl").exists()


def test_a_chunk_that_keeps_failing_stops_the_run_with_its_message(ray_local, srv, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIND_RAY_MAX_RETRIES", "1")
    srv.set(mode="404", fail_times=None)
    args = _args(srv.url, tmp_path / "run", "--max-pairs", "2", "--chunk-pairs", "2", "--engine", "ray")
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "a chunk failed on Ray after 1 retries: BackendError: HTTP 404" in err
    assert "re-run the same command to resume" in err
    assert _rows(tmp_path / "run") == []
    assert srv.failures_served >= 2  # the first attempt and its retry


def test_driver_killed_with_sigkill_resumes_without_losing_or_repeating_rows(ray_local, tmp_path, capsys):
    from doubles.fake_openai_server import FakeOpenAIServer

    out = tmp_path / "run"
    expected = _expected_keys()
    total = len(expected)
    env = {**os.environ, "MIND_RAY_NUM_CPUS": "2", "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    with FakeOpenAIServer(latency_s=0.3) as server:
        cmd = [sys.executable, "-m", "mind_core", *_args(server.url, out, "--chunk-pairs", "1", "--concurrency", "2")]
        proc = subprocess.Popen(
            [*cmd, "--engine", "ray", "--workers", "2"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: the Ray processes it starts are ours to stop
        )
        try:
            deadline = time.monotonic() + 240
            while len(list((out / "intentions").glob("part-*.parquet"))) < 2:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "no part written in time"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)  # the driver only
            proc.wait(timeout=10)
            assert proc.returncode == -signal.SIGKILL
        finally:
            with contextlib.suppress(ProcessLookupError):  # what the killed driver left: its Ray instance, actors
                os.killpg(proc.pid, signal.SIGKILL)
            proc.stderr.close()
        time.sleep(1.0)  # answers to requests in flight from the killed workers arrive before we count
        first = _rows(out)
        assert 0 < len(first) < total, "the kill should land mid-run"
        server.reset_stats()

        # started again (on this process's Ray instance): finishes the rest, redoes nothing written
        assert cli_main([*cmd[3:], "--engine", "ray", "--workers", "2"]) == 0
        err = capsys.readouterr().err
        assert f"{len(first)} were done, {total - len(first)} written now, 0 remaining" in err
        rows = _rows(out)
        keys = [(r["pair_id"], r["relation"]) for r in rows]
        assert len(keys) == len(set(keys)) == total and set(keys) == expected
        assert {r["intention_id"]: r for r in first}.items() <= {r["intention_id"]: r for r in rows}.items()
        assert _kinds(server)["intention"] == total - len(first)
    assert not list(out.rglob("*.tmp"))
