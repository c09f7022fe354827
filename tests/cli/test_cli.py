"""CLI end to end in a temp dir: build-kb (twice), search (text + --json), stats, export, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cli(*args, check=True, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "mind_core", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def cli_kb(small_input_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "kb"
    proc = cli("build-kb", "--input", str(small_input_dir), "--out", str(out))
    assert "built KB" in proc.stdout and "120 intentions" in proc.stdout and "index Flat" in proc.stdout
    return out


def test_help_on_everything():
    out = cli("--help").stdout
    for command in ("build-kb", "search", "stats", "export"):
        assert command in out
        sub = cli(command, "--help").stdout
        assert "usage:" in sub
    assert "--skip-bad" in cli("build-kb", "--help").stdout


def test_build_again_is_noop(cli_kb, small_input_dir):
    proc = cli("build-kb", "--input", str(small_input_dir), "--out", str(cli_kb))
    assert "up to date" in proc.stdout


def test_search_json(cli_kb):
    proc = cli("search", "--kb", str(cli_kb), "--query", "a hat for a costume party", "-k", "4", "--json")
    hits = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(hits) == 4
    for h in hits:
        assert {"intention_id", "asin_a", "asin_b", "relation", "intention", "verdict", "score"} <= set(h)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    proc = cli("search", "--kb", str(cli_kb), "--query", "hat", "--relation", "isA", "--verdict", "no", "--json")
    hits = [json.loads(line) for line in proc.stdout.splitlines()]
    assert hits and all(h["relation"] == "isA" and h["verdict"] == "no" for h in hits)


def test_search_text_and_stats(cli_kb):
    out = cli("search", "--kb", str(cli_kb), "--query", "winter clothing", "-k", "2").stdout
    assert out.count("    A ") == 2 and "[" in out
    stats = cli("stats", "--kb", str(cli_kb)).stdout
    assert "120 intentions" in stats and "relation" in stats and "kept_rate" in stats
    data = json.loads(cli("stats", "--kb", str(cli_kb), "--json").stdout)
    assert sum(r["intentions"] for r in data["relations"]) == 120


def test_export(cli_kb, tmp_path):
    out = tmp_path / "slice.jsonl"
    proc = cli("export", "--kb", str(cli_kb), "--verdict", "yes", "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"wrote {len(rows)} rows" in proc.stdout and rows and all(r["verdict"] == "yes" for r in rows)
    assert "title_a" in rows[0]


def test_user_errors_are_one_line(tmp_path):
    proc = cli("search", "--kb", str(tmp_path / "none"), "--query", "x", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: KB folder") and "Traceback" not in proc.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "intentions.jsonl").write_text('{"id": "1", "relation": "nope"}\n')
    proc = cli("build-kb", "--input", str(bad), "--out", str(tmp_path / "kb"), check=False)
    assert proc.returncode == 2 and "intentions.jsonl:1" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("build-kb", "--input", str(bad), "--out", str(tmp_path / "kb"), "--skip-bad", check=False)
    assert proc.returncode == 2 and "no intention rows" in proc.stderr
