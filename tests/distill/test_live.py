"""mind_core.distill.live: the try page's background run (Stop, failures, shared in-process models), rendered
through dashboard.live_view."""

from __future__ import annotations

import logging
import time

from PIL import Image

from dashboard import live_view
from mind_core.distill import live
from mind_core.distill.prompts import intention_opening
from mind_core.lvlm.registry import BackendConfig
from mind_core.schema import Product, flag_notes

RELS = ["usedFor", "capableOf", "isA"]


def _wait(run: live.LiveRun, timeout: float = 120.0) -> live_view.RunView:
    assert run.wait(timeout), "the run did not finish in time"
    return live_view.build_view(run)


# --- runs through the fake OpenAI server -----------------------------------------------------------------------

HAT = Product("UHAT000001", "Wool winter hat", "", category="uploaded")
GLOVES = Product("UGLOVES001", "Leather gloves", "Warm lined leather gloves.", category="uploaded")
IMAGES = {HAT.asin: Image.new("RGB", (64, 48), (200, 30, 30)), GLOVES.asin: Image.new("RGB", (48, 64), (30, 30, 200))}


def _openai(srv, **kw) -> BackendConfig:
    return BackendConfig("openai", endpoint=srv.url, **kw)


def test_full_run_with_the_fake_server_key_stays_out_of_logs(fake_openai, caplog):
    fake_openai.set(api_key="sk-live-secret")
    caplog.set_level(logging.DEBUG)
    run = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai, api_key="sk-live-secret"), RELS).start()
    view = _wait(run)
    assert view.fatal is None and not view.errors and not view.cancelled
    assert [s.state for s in view.stages] == ["complete", "complete", "complete"]
    assert (view.done, view.total) == (1 + 3 + 3, 7)  # one description (gloves have one), 3 intentions, 3 filters
    assert list(view.descriptions) == [HAT.asin] and view.stacked is not None
    rows = live_view.result_rows(view)
    assert [r["relation"] for r in rows] == RELS
    for r in rows:
        assert r["intention"].startswith(intention_opening(r["relation"]))
        assert r["verdict"] in ("yes", "no") and 0 <= r["p_yes"] <= 1 and r["source"] == "distilled:openai:fake-vlm"
    assert view.result.a.description == view.descriptions[HAT.asin]
    assert all(q["authorization"] == "Bearer sk-live-secret" for q in fake_openai.requests)
    assert "sk-live-secret" not in caplog.text and "sk-live-secret" not in repr(run.config)
    table = live_view.results_table(rows)
    assert list(table.columns) == live_view.RESULT_TABLE_COLUMNS and set(table["verdict"]) <= {"kept", "filtered"}


def test_stop_keeps_finished_intentions(fake_openai):
    fake_openai.set(latency_s=0.4)
    # one request per call (as on local models): Stop acts before the next call
    run = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai), RELS, calls_per_generate=1).start()
    deadline = time.monotonic() + 60
    while not live_view.build_view(run).rows and time.monotonic() < deadline:  # the first intention is in
        time.sleep(0.05)
    run.stop()
    view = _wait(run)
    assert view.cancelled and view.fatal is None and view.done < view.total
    rows = live_view.result_rows(view)
    assert rows and all("not_filtered" in r["flags"] and r["verdict"] is None for r in rows)  # kept, unfiltered
    assert view.stages[0].state == "complete" and "stopped" in (view.stages[1].state, view.stages[2].state)
    assert flag_notes(rows[0]["flags"]) == ["the filter did not run (stopped or failed)"]
    assert len(fake_openai.requests) == view.done  # nothing was sent after the stop

    # the default on a server: each stage's requests go together, so Stop acts between stages
    fake_openai.reset_stats()
    run = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai), RELS).start()
    run.stop()
    view = _wait(run)
    assert view.cancelled and not live_view.result_rows(view) and view.done <= 1
    assert [s.state for s in view.stages] == ["stopped", "waiting", "waiting"]  # the page says "not run"


def test_unreachable_timeout_and_garbage_are_reported(fake_openai):
    dead = live.LiveRun(
        HAT, GLOVES, IMAGES, BackendConfig("openai", endpoint="http://127.0.0.1:9/v1"), RELS[:1]
    ).start()
    view = _wait(dead, 60)
    assert view.fatal and "cannot reach" in view.fatal and not live_view.result_rows(view)
    assert view.stages[0].state == "stopped"

    fake_openai.set(mode="slow", slow_s=3.0)
    slow = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai, timeout_s=0.5), RELS[:1]).start()
    view = _wait(slow, 60)
    assert view.errors and any("timed out" in e.lower() or "timeout" in e.lower() for e in view.errors), view.errors
    assert view.stages[0].state == "error"  # the only description failed
    assert not live_view.result_rows(view)

    fake_openai.set(mode="garbage")
    garbage = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai), RELS[:1]).start()
    view = _wait(garbage, 60)
    rows = live_view.result_rows(view)
    assert len(rows) == 1 and rows[0]["verdict"] is None
    assert "filter_unparsed" in rows[0]["flags"] and "no_phrase" in rows[0]["flags"]
    assert "the filter answer began with neither yes nor no" in flag_notes(rows[0]["flags"])


# --- the transformers path -------------------------------------------------------------------------------------


def test_transformers_errors_and_a_real_tiny_run(tiny_llava_dir, tiny_text_only_dir, tmp_path):
    missing = live.LiveRun(
        HAT, GLOVES, IMAGES, BackendConfig("transformers", model=str(tmp_path / "nope")), RELS[:1]
    ).start()
    assert "does not exist" in _wait(missing).fatal
    text_lm = live.LiveRun(
        HAT, GLOVES, IMAGES, BackendConfig("transformers", model=str(tiny_text_only_dir)), RELS[:1]
    ).start()
    assert "vision" in _wait(text_lm).fatal.lower()

    cfg = BackendConfig("transformers", model=str(tiny_llava_dir))
    view = _wait(live.LiveRun(HAT, GLOVES, IMAGES, cfg, RELS[:2], max_new_tokens=6).start(), 300)
    assert view.fatal is None and [s.state for s in view.stages] == ["complete"] * 3
    rows = live_view.result_rows(view)
    assert len(rows) == 2 and all(r["p_yes"] is not None for r in rows)
    assert rows[0]["source"] == f"distilled:transformers:{tiny_llava_dir}"
    again, owned = live.open_backend(cfg)
    assert not owned and again is live.open_backend(cfg)[0]  # loaded once per process


# --- results: similar intentions, save, export ------------------------------------------------------------------


def _rows(srv) -> tuple[list[dict], list[Product]]:
    view = _wait(live.LiveRun(HAT, GLOVES, IMAGES, _openai(srv), RELS[:2]).start())
    return live_view.result_rows(view), [view.result.a, view.result.b]


def test_similar_intentions_in_the_kb(fake_openai, sample_kb):
    rows, _products = _rows(fake_openai)
    similar = live_view.similar_in_kb(sample_kb, rows, k=3)
    assert set(similar) == {r["intention_id"] for r in rows}
    for hits in similar.values():
        assert len(hits) == 3 and hits["score"].is_monotonic_decreasing
        assert {"title_a", "title_b", "intention"} <= set(hits.columns)
