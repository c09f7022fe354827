"""The resumable, sharded batch: `python -m mind_core distill` killed with SIGKILL and re-run, shards, error rows,
atomic parts, and the output read back by the KB loader (what `build-kb --input DIR` uses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_pipeline import ScriptedBackend

from mind_core import io
from mind_core.cli.main import main as cli_main
from mind_core.data.amazon import load_amazon_metadata
from mind_core.data.kb_files import load_inputs
from mind_core.distill import batch
from mind_core.distill.batch import DistillError, parse_shard, run_distill, select_pairs, shard_of
from mind_core.distill.pipeline import DistillOptions
from mind_core.schema import INTENTION_COLUMNS, pair_id

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "amazon_meta_sample.json.gz"
RELS = "usedFor,isA,cause"  # relations with distinct phrases, so requests can be told apart


def _rows(out: Path) -> list[dict]:
    rows = []
    for part in sorted((out / "intentions").glob("part-*.parquet")):
        rows += pq.read_table(part).to_pylist()
    return rows


def _kind(body: dict) -> str:
    text = json.dumps(body["messages"])
    if "begin your answer with" in text:
        return "intention"
    if '\\"Yes\\" or \\"No\\"' in text:
        return "filter"
    return "describe"


def _distill_cmd(url: str, out: Path, *extra: str, relations: str = RELS) -> list[str]:
    """``python -m mind_core distill`` over the fixture against the server at ``url`` (``[3:]``: the CLI args)."""
    return [
        sys.executable,
        "-m",
        "mind_core",
        "distill",
        "--metadata",
        str(FIXTURE),
        "--out",
        str(out),
        "--backend",
        "openai",
        "--endpoint",
        url,
        "--relations",
        relations,
        "--no-images",
        "--no-progress",
        *extra,
    ]


def test_sigkill_mid_run_then_resume_loses_and_redoes_nothing(tmp_path):
    from doubles.fake_openai_server import FakeOpenAIServer

    out = tmp_path / "run"
    meta = load_amazon_metadata(FIXTURE)
    total = len(meta.pairs) * 3
    with FakeOpenAIServer(latency_s=0.05) as srv:
        proc = subprocess.Popen(
            _distill_cmd(srv.url, out, "--concurrency", "2", "--chunk-pairs", "2"),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while len(list((out / "intentions").glob("part-*.parquet"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no part written in time"
            time.sleep(0.02)
        time.sleep(0.15)  # land somewhere inside the next chunk
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close(), proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        time.sleep(0.2)  # requests already in flight reach the server before we count
        first = _rows(out)
        assert 0 < len(first) < total, "the kill should land mid-run"
        described_before = sum(
            1
            for r in batch.read_products(out).values()
            if r["asin"] in {a for a, p in meta.products.items() if not p.description} and r["description"]
        )
        srv.reset_stats()

        done = subprocess.run(
            _distill_cmd(srv.url, out, "--concurrency", "8"), cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        kinds = [_kind(r["body"]) for r in srv.requests]
        rows = _rows(out)
        keys = [(r["pair_id"], r["relation"]) for r in rows]
        assert len(rows) == total and len(set(keys)) == total
        assert {k for k in keys} == {(p.pair_id, r) for p in meta.pairs for r in RELS.split(",")}
        # nothing finished was redone: exactly the missing rows were asked for, once each
        assert kinds.count("intention") == total - len(first)
        assert kinds.count("filter") == total - len(first)
        assert kinds.count("describe") == 3 - described_before
        assert {r["intention_id"]: r for r in first}.items() <= {r["intention_id"]: r for r in rows}.items()

        srv.reset_stats()
        again = subprocess.run(_distill_cmd(srv.url, out), cwd=REPO, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and srv.requests == [] and len(_rows(out)) == total
        assert "0 written now, 0 remaining" in again.stderr
    # no temporary file is visible to the KB loader, and the loader reads the output as a KB
    assert not [p for p in out.rglob("*.tmp")]
    loaded = load_inputs([out])
    assert loaded.report.intentions == total and loaded.report.skipped == 0
    assert len({r["intention_id"] for r in loaded.intentions}) == total
    assert all(loaded.products[a]["title"] for r in loaded.intentions for a in (r["asin_a"], r["asin_b"]))
    for asin, p in meta.products.items():  # stage-1 descriptions reached the products table
        if not p.description and any(asin in (q.asin_a, q.asin_b) for q in meta.pairs):
            assert loaded.products[asin]["description"].strip()


def test_three_shards_cover_all_pairs_exactly_once(tmp_path, fake_openai, capsys):
    base = [
        "distill",
        "--metadata",
        str(FIXTURE),
        "--backend",
        "openai",
        "--endpoint",
        fake_openai.url,
        "--relations",
        "usedFor",
        "--no-images",
        "--no-progress",
        "--concurrency",
        "4",
    ]
    assert cli_main(base + ["--out", str(tmp_path / "all")]) == 0
    for i in range(3):  # into one shared folder, as shards on several machines writing to shared storage
        assert cli_main(base + ["--out", str(tmp_path / "sharded"), "--shard", f"{i}/3"]) == 0
    everything = {(r["pair_id"], r["relation"]) for r in _rows(tmp_path / "all")}
    per_shard = {}
    for r in _rows(tmp_path / "sharded"):
        per_shard.setdefault((r["pair_id"], r["relation"]), []).append(r)
    assert set(per_shard) == everything and len(everything) == len(load_amazon_metadata(FIXTURE).pairs)
    assert all(len(v) == 1 for v in per_shard.values())
    names = sorted(p.name for p in (tmp_path / "sharded" / "intentions").iterdir())
    assert {n.split("-")[1] for n in names} == {"s0of3", "s1of3", "s2of3"}
    assert load_inputs([tmp_path / "sharded"]).report.intentions == len(everything)


def test_shard_partition_properties():
    meta = load_amazon_metadata(FIXTURE)
    parts = [select_pairs(meta.pairs, shard=(i, 4)) for i in range(4)]
    ids = [p.pair_id for part in parts for p in part]
    assert sorted(ids) == sorted(p.pair_id for p in meta.pairs) and len(ids) == len(set(ids))
    assert shard_of("A|B", 7) == shard_of("A|B", 7) == int(__import__("hashlib").sha1(b"A|B").hexdigest()[:16], 16) % 7
    capped = [p.pair_id for i in range(3) for p in select_pairs(meta.pairs, max_pairs=10, shard=(i, 3))]
    assert sorted(capped) == sorted(p.pair_id for p in meta.pairs[:10])
    assert parse_shard("2/5") == (2, 5) and parse_shard(None) == (0, 1)
    for bad in ("5/5", "1/0", "x", "1-2"):
        with pytest.raises(DistillError):
            parse_shard(bad)


def test_failed_calls_go_to_state_and_are_retried(tmp_path):
    meta = load_amazon_metadata(FIXTURE)
    opts = DistillOptions(relations=["usedFor", "isA"], use_images=False)
    out = tmp_path / "run"
    s1 = run_distill(
        meta.products, meta.pairs, out, ScriptedBackend(fail_relation="isA"), opts, max_pairs=6, progress=False
    )
    assert s1.written == 6 and s1.errors == 6 and s1.remaining == 6
    errors = [json.loads(x) for x in (out / "_state" / "errors.jsonl").read_text().splitlines()]
    assert {(e["stage"], e["relation"]) for e in errors} == {("intention", "isA")}
    assert all(r["relation"] == "usedFor" for r in _rows(out))  # errors never become intentions
    good = ScriptedBackend()
    s2 = run_distill(meta.products, meta.pairs, out, good, opts, max_pairs=6, progress=False)
    assert s2.written == 6 and s2.remaining == 0 and s2.done_before == 6
    assert sum(len(c) for c in good.calls) == 6 + 6  # only the failed relation: 6 intentions + 6 filters
    assert load_inputs([out]).report.intentions == 12  # _state/ is ignored by the KB loader


def test_interrupted_part_write_leaves_nothing_visible(tmp_path, monkeypatch):
    meta = load_amazon_metadata(FIXTURE)
    opts = DistillOptions(relations=["usedFor"], use_images=False, describe="never")
    out = tmp_path / "run"
    real = pq.write_table
    calls = {"n": 0}

    def dying_write(table, where, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            Path(where).write_bytes(b"PAR1 half a file")
            raise KeyboardInterrupt  # as if killed while writing
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", dying_write)  # every part goes through mind_core.io.write_parquet
    with pytest.raises(KeyboardInterrupt):
        run_distill(meta.products, meta.pairs, out, ScriptedBackend(), opts, max_pairs=9, chunk_pairs=3, progress=False)
    monkeypatch.setattr(pq, "write_table", real)
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".part-*"))
    assert all(pq.read_table(p).num_rows for p in (out / "intentions").glob("*.parquet"))  # every part whole
    be = ScriptedBackend()
    s = run_distill(meta.products, meta.pairs, out, be, opts, max_pairs=9, chunk_pairs=3, progress=False)
    assert s.remaining == 0 and len(_rows(out)) == 9 == len({r["intention_id"] for r in _rows(out)})


def test_same_shard_cannot_run_twice_at_once(tmp_path):
    meta = load_amazon_metadata(FIXTURE)
    out = tmp_path / "run"
    held = io.file_lock(out / "_state" / "lock-s0of1")  # as another process running this shard would
    with held, pytest.raises(DistillError, match="another distill run"):
        run_distill(meta.products, meta.pairs, out, ScriptedBackend(), DistillOptions(use_images=False), progress=False)


class _ImageServer:
    def __init__(self):
        png = Image.new("RGB", (40, 30), (0, 0, 200))
        import io

        buf = io.BytesIO()
        png.save(buf, format="PNG")
        data = buf.getvalue()

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                ok = self.path.startswith("/ok")
                body = data if ok else b"gone"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


def test_images_fetched_missing_ones_recorded_or_pairs_skipped(tmp_path):
    srv = _ImageServer()
    try:
        lines = [
            {
                "asin": "A1",
                "title": "Tent",
                "description": ["d"],
                "imageURLHighRes": [srv.base + "/ok/a.png"],
                "also_buy": ["B1", "C1"],
            },
            {"asin": "B1", "title": "Stove", "description": ["d"], "imageURLHighRes": [srv.base + "/ok/b.png"]},
            {"asin": "C1", "title": "Lamp", "description": ["d"], "imageURL": [srv.base + "/missing.png"]},
        ]
        meta_path = tmp_path / "meta.json"
        meta_path.write_text("".join(json.dumps(x) + "\n" for x in lines))
        meta = load_amazon_metadata(meta_path)
        opts = DistillOptions(relations=["usedFor"], image_cache_dir=tmp_path / "cache")
        be = ScriptedBackend()
        s = run_distill(meta.products, meta.pairs, tmp_path / "out", be, opts, progress=False)
        rows = {r["pair_id"]: r for r in _rows(tmp_path / "out")}
        assert rows[pair_id("A1", "B1")]["flags"] == "" and rows[pair_id("A1", "C1")]["flags"] == "one_image"
        assert s.image_failures == 1
        fail = json.loads((tmp_path / "out" / "_state" / "image_failures.jsonl").read_text().splitlines()[0])
        assert fail["asin"] == "C1" and "HTTP 404" in fail["reason"]
        stacked = be.calls[0][0].images[0]
        assert stacked.size == (40, 30 + 20 + 30)
        req = run_distill(
            meta.products,
            meta.pairs,
            tmp_path / "req",
            ScriptedBackend(),
            DistillOptions(relations=["usedFor"], image_cache_dir=tmp_path / "cache", require_images=True),
            progress=False,
        )
        assert req.written == 1 and req.skipped_pairs == 1
        assert "C1" in (tmp_path / "req" / "_state" / "skipped.jsonl").read_text()
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


def test_cli_user_errors(tmp_path, capsys):
    base = [
        "distill",
        "--metadata",
        str(FIXTURE),
        "--out",
        str(tmp_path / "o"),
        "--backend",
        "openai",
        "--endpoint",
        "http://127.0.0.1:9/v1",
    ]
    assert cli_main(base + ["--shard", "3/3"]) == 2
    assert "0 <= i < n" in capsys.readouterr().err
    assert cli_main(base + ["--no-images", "--require-images"]) == 2
    assert cli_main(base + ["--relations", "usedFor,nope"]) == 2
    assert "unknown relation 'nope'" in capsys.readouterr().err
    assert cli_main(base + ["--api-key-env", "MIND_TEST_SURELY_UNSET_VAR"]) == 2
    assert "not set" in capsys.readouterr().err
    assert cli_main(base) == 2  # nothing listens on port 9: the backend says so, no traceback
    assert "error:" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"asin": "A", "title": "t"}\n{\'asin\': \'B\'}\n')
    assert (
        cli_main(
            [
                "distill",
                "--metadata",
                str(bad),
                "--out",
                str(tmp_path / "o2"),
                "--backend",
                "openai",
                "--endpoint",
                "http://127.0.0.1:9/v1",
            ]
        )
        == 2
    )
    assert f"{bad}:2" in capsys.readouterr().err


def test_rows_have_the_kb_columns(tmp_path):
    meta = load_amazon_metadata(FIXTURE)
    out = tmp_path / "o"
    run_distill(
        meta.products,
        meta.pairs,
        out,
        ScriptedBackend(),
        DistillOptions(relations=["isA"], use_images=False),
        max_pairs=3,
        progress=False,
    )
    part = next((out / "intentions").glob("*.parquet"))
    table = pq.read_table(part)
    assert tuple(table.column_names) == INTENTION_COLUMNS
    assert str(table.schema.field("p_yes").type) == "double"
    assert os.path.getsize(part) > 0


def test_describe_always_persists_stage_one_and_does_not_repeat_it(tmp_path):
    meta = load_amazon_metadata(FIXTURE)
    opts = DistillOptions(relations=["usedFor"], use_images=False, describe="always")
    out = tmp_path / "o"
    first = ScriptedBackend()
    s1 = run_distill(meta.products, meta.pairs, out, first, opts, max_pairs=3, progress=False)
    asins = {a for p in meta.pairs[:3] for a in (p.asin_a, p.asin_b)}
    describe_prompts = [r for c in first.calls for r in c if not r.prefill and not r.want_yes_prob]
    assert s1.described == len(asins) == len(describe_prompts)
    stored = batch.read_products(out)
    assert all(stored[a]["description"].startswith("Stretchy gloves") for a in asins)
    # more pairs later: only the products not described yet go through stage 1
    second = ScriptedBackend()
    s2 = run_distill(meta.products, meta.pairs, out, second, opts, max_pairs=6, progress=False)
    new = {a for p in meta.pairs[3:6] for a in (p.asin_a, p.asin_b)} - asins
    assert s2.described == len(new)
    assert load_inputs([out]).products[next(iter(asins))]["description"].startswith("Stretchy gloves")


def test_rows_written_by_an_overlapping_run_count_as_done_not_remaining(tmp_path):
    """Issue 16 case 11: a run that overlaps another shard spec (here 0/1 while 0/2 runs into the same folder) used
    to exit 1 reporting rows 'remaining' that the other run had written. They are done: counted, not redone."""
    meta = load_amazon_metadata(FIXTURE)
    opts = DistillOptions(relations=["usedFor"], use_images=False, describe="never")
    out = tmp_path / "run"

    class Interloper(ScriptedBackend):
        fired = False

        def generate(self, requests, params):
            if not self.fired:  # another process, mid-run, writes shard 0/2 into the same folder
                self.fired = True
                other = run_distill(
                    meta.products, meta.pairs, out, ScriptedBackend(), opts, shard=(0, 2), max_pairs=8, progress=False
                )
                assert other.written > 0 and other.remaining == 0
            return super().generate(requests, params)

    s = run_distill(meta.products, meta.pairs, out, Interloper(), opts, max_pairs=8, chunk_pairs=2, progress=False)
    assert s.done_before == 0 and s.by_others > 0
    assert s.written + s.by_others == s.total_rows == 8 and s.remaining == 0
    assert "written by another run meanwhile" in s.text()
    keys = [(r["pair_id"], r["relation"]) for r in _rows(out)]
    assert len(keys) == len(set(keys)) == 8


def test_all_unparseable_filter_answers_warn_and_exit_1(tmp_path, fake_openai, capsys):
    """Issue 16 case 11: a run whose every filter answer is neither yes nor no used to exit 0 silently."""
    fake_openai.set(mode="garbage")
    cmd = _distill_cmd(fake_openai.url, tmp_path / "g", "--max-pairs", "2")[3:]
    assert cli_main(cmd) == 1
    err = capsys.readouterr().err
    assert "all 6 filter answers were unparseable" in err and "no verdict" in err
    assert all(r["verdict"] is None and "filter_unparsed" in r["flags"] for r in _rows(tmp_path / "g"))
    fake_openai.set(mode="normal")
    assert cli_main(_distill_cmd(fake_openai.url, tmp_path / "n", "--max-pairs", "2")[3:]) == 0
    assert "filter answers were unparseable" not in capsys.readouterr().err


def test_timeout_and_max_retries_bound_a_hung_server(tmp_path, fake_openai, capsys):
    """Issue 16 case 11: --timeout / --max-retries exist and bound what a hung server costs (was 120 s x 5)."""
    fake_openai.set(mode="slow", slow_s=5.0)
    cmd = _distill_cmd(fake_openai.url, tmp_path / "h", "--max-pairs", "1", "--relations", "usedFor")[3:]
    assert cli_main([*cmd, "--timeout", "0.3", "--max-retries", "1", "--describe", "never"]) == 1
    assert "1 calls failed" in capsys.readouterr().err
    (error,) = [json.loads(x) for x in (tmp_path / "h" / "_state" / "errors.jsonl").read_text().splitlines()]
    assert "timed out after 0.3 s" in error["error"] and "gave up after 2 attempts" in error["error"]
    assert len(fake_openai.requests) == 2  # one try + one retry, then the request counts as failed
    with pytest.raises(SystemExit) as exc:
        cli_main([*cmd, "--max-retries", "-1"])
    assert exc.value.code == 2 and "--max-retries: must be >= 0" in capsys.readouterr().err
