"""mind_core.distill.live: uploads, inputs, backend config, the background run (Stop, failures), saving into a
user KB."""

from __future__ import annotations

import io
import logging
import struct
import time
import zlib

import pandas as pd
import pytest
from PIL import Image

from mind_core.distill import live
from mind_core.distill.prompts import intention_opening
from mind_core.schema import Product

RELS = ["usedFor", "capableOf", "isA"]


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png(color=(200, 40, 40), size=(64, 48)) -> bytes:
    return _bytes(Image.new("RGB", size, color), "PNG")


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's header) with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def _wait(run: live.LiveRun, timeout: float = 120.0) -> live.RunView:
    assert run.wait(timeout), "the run did not finish in time"
    return run.view()


# --- uploads ---------------------------------------------------------------------------------------------------


def test_bad_uploads_get_user_messages():
    assert "not an image" in live.read_upload("notes.png", b"hello, I am text").error
    assert "corrupt" in live.read_upload("cut.png", _png()[:60]).error
    big = live.read_upload("big.png", b"\x89PNG" + b"\0" * (20 * 1024 * 1024 + 10))
    assert "limit is 20.0 MB" in big.error and big.image is None
    bomb = live.read_upload("bomb.png", _png_with_header(8000, 6000))  # 48 MP
    assert "megapixels" in bomb.error and "limit is 40" in bomb.error


def test_odd_images_are_normalised_and_say_so():
    cmyk = live.read_upload("c.jpg", _bytes(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.ok and cmyk.image.mode == "RGB" and "CMYK" in cmyk.note
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    pal_up = live.read_upload("p.png", _bytes(pal, "PNG", transparency=0))
    assert pal_up.ok and pal_up.image.getpixel((5, 5)) == (255, 255, 255)  # transparent -> white
    assert "palette" in pal_up.note and "transparent" in pal_up.note
    rgba = live.read_upload("a.webp", _bytes(Image.new("RGBA", (20, 20), (0, 0, 0, 0)), "WEBP", lossless=True))
    assert rgba.ok and rgba.image.getpixel((1, 1)) == (255, 255, 255) and "transparent" in rgba.note
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    anim = live.read_upload("anim.gif", buf.getvalue())
    assert anim.ok and "3 frames" in anim.note and anim.image.getpixel((0, 0))[0] > 200
    assert live.read_upload("plain.png", _png()).note is None


def test_uploaded_product_validation_and_stable_ids():
    good, bad = live.read_upload("a.png", _png()), live.read_upload("x.png", b"nope")
    no_title = live.uploaded_product("A", "   ", "", [good])
    assert no_title.product is None and no_title.errors == ["Product A needs a title."]
    assert "at least one image" in live.uploaded_product("B", "Mug", "", []).errors[0]
    only_bad = live.uploaded_product("B", "Mug", "", [bad])
    assert only_bad.product is None and "no usable image" in only_bad.errors[0]
    mixed = live.uploaded_product("B", " Red   mug ", "", [bad, good])
    assert mixed.product is not None and mixed.product.title == "Red mug" and mixed.image is good.image
    assert mixed.warnings == [] and mixed.errors == []  # x.png's own message is on its Upload
    assert mixed.product.category == live.UPLOAD_CATEGORY and mixed.product.image_urls == []
    five = live.uploaded_product(
        "A", "Mug", "d", [live.read_upload(f"{i}.png", _png((i, 0, 0))) for i in range(5)], main=2
    )
    assert "only the first 4" in five.warnings[0] and five.image.getpixel((0, 0))[0] == 2
    # same title + images -> same id (re-saving replaces); another title -> another product
    assert live.upload_asin("red MUG", [good]) == mixed.product.asin
    assert live.upload_asin("Blue mug", [good]) != mixed.product.asin
    assert len(mixed.product.asin) == 10 and mixed.product.asin.startswith("U")


def test_check_pair_refuses_the_same_product_twice(sample_kb):
    good = live.read_upload("a.png", _png())
    a = live.uploaded_product("A", "Mug", "", [good])
    b = live.uploaded_product("B", "mug", "", [good])
    assert "same upload" in live.check_pair(a, b)[0]
    asin = sample_kb.products.index[0]
    picked_a, picked_b = live.kb_product(sample_kb, asin, "A"), live.kb_product(sample_kb, asin, "B")
    assert picked_a.product.title == sample_kb.products.loc[asin, "title"]
    assert f"same KB product ({asin})" in live.check_pair(picked_a, picked_b)[0]
    assert live.check_pair(a, picked_b) == []
    assert "Pick product B" in live.kb_product(sample_kb, None, "B").errors[0]
    assert "not in the loaded" in live.kb_product(sample_kb, "NOPE", "B").errors[0]
    choices = live.product_choices(sample_kb)
    assert len(choices) == len(sample_kb.products) and asin in choices.values()
    few = live.product_choices(sample_kb, "aviator", limit=10)  # a "big" KB: search by words first
    assert 0 < len(few) <= 50 and all("aviator" in k.lower() for k in few)


# --- backend config --------------------------------------------------------------------------------------------


def test_backend_config_from_env_never_shows_the_key():
    cfg = live.BackendConfig.from_env(
        {
            "MIND_BACKEND": "openai",
            "MIND_OPENAI_ENDPOINT": "http://h:1/v1",
            "MIND_OPENAI_MODEL": "m",
            "MIND_OPENAI_TIMEOUT": "7",
            "MIND_MAX_NEW_TOKENS": "64",
        }
    )
    assert (cfg.kind, cfg.endpoint, cfg.model, cfg.timeout_s, cfg.max_new_tokens) == (
        "openai",
        "http://h:1/v1",
        "m",
        7.0,
        64,
    )
    cfg.api_key = "sk-secret-123"
    assert "sk-secret" not in repr(cfg) and "sk-secret" not in cfg.label()
    assert live.BackendConfig.from_env({}).kind == "offline"
    assert live.BackendConfig.from_env({"MIND_BACKEND": "bogus"}).kind == "offline"
    off = live.BackendConfig()
    assert off.text_only and "text-only fallback" in off.label()
    assert "needs a model" in live.BackendConfig("transformers").problems()[0]
    assert "server URL" in live.BackendConfig("openai").problems()[0]
    assert "not an http(s) URL" in live.BackendConfig("openai", endpoint="localhost:8000").problems()[0]


# --- runs through the fake OpenAI server -----------------------------------------------------------------------

HAT = Product("UHAT000001", "Wool winter hat", "", category="uploaded")
GLOVES = Product("UGLOVES001", "Leather gloves", "Warm lined leather gloves.", category="uploaded")
IMAGES = {HAT.asin: Image.new("RGB", (64, 48), (200, 30, 30)), GLOVES.asin: Image.new("RGB", (48, 64), (30, 30, 200))}


def _openai(srv, **kw) -> live.BackendConfig:
    return live.BackendConfig("openai", endpoint=srv.url, **kw)


def test_full_run_with_the_fake_server_key_stays_out_of_logs(fake_openai, caplog):
    fake_openai.set(api_key="sk-live-secret")
    caplog.set_level(logging.DEBUG)
    run = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai, api_key="sk-live-secret"), RELS).start()
    view = _wait(run)
    assert view.fatal is None and not view.errors and not view.cancelled
    assert [s.state for s in view.stages] == ["complete", "complete", "complete"]
    assert (view.done, view.total) == (1 + 3 + 3, 7)  # one description (gloves have one), 3 intentions, 3 filters
    assert list(view.descriptions) == [HAT.asin] and view.stacked is not None
    rows = live.result_rows(view)
    assert [r["relation"] for r in rows] == RELS
    for r in rows:
        assert r["intention"].startswith(intention_opening(r["relation"]))
        assert r["verdict"] in ("yes", "no") and 0 <= r["p_yes"] <= 1 and r["source"] == "distilled:openai:fake-vlm"
    assert view.result.a.description == view.descriptions[HAT.asin]
    assert all(q["authorization"] == "Bearer sk-live-secret" for q in fake_openai.requests)
    assert "sk-live-secret" not in caplog.text and "sk-live-secret" not in repr(run.config)
    table = live.results_table(rows)
    assert list(table.columns) == live.RESULT_TABLE_COLUMNS and set(table["verdict"]) <= {"kept", "filtered"}


def test_stop_keeps_finished_intentions(fake_openai):
    fake_openai.set(latency_s=0.4)
    # one request per call (as on local models): Stop acts before the next call
    run = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai), RELS, calls_per_generate=1).start()
    deadline = time.monotonic() + 60
    while not run.view().rows and time.monotonic() < deadline:  # the first intention is in
        time.sleep(0.05)
    run.stop()
    view = _wait(run)
    assert view.cancelled and view.fatal is None and view.done < view.total
    rows = live.result_rows(view)
    assert rows and all("not_filtered" in r["flags"] and r["verdict"] is None for r in rows)  # kept, unfiltered
    assert view.stages[0].state == "complete" and "stopped" in (view.stages[1].state, view.stages[2].state)
    assert live.flag_notes(rows[0]["flags"]) == ["the filter did not run (stopped or failed)"]
    assert len(fake_openai.requests) == view.done  # nothing was sent after the stop

    # the default on a server: each stage's requests go together, so Stop acts between stages
    fake_openai.reset_stats()
    run = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai), RELS).start()
    run.stop()
    view = _wait(run)
    assert view.cancelled and not live.result_rows(view) and view.done <= 1
    assert [s.state for s in view.stages] == ["stopped", "waiting", "waiting"]  # the page says "not run"


def test_unreachable_timeout_and_garbage_are_reported(fake_openai):
    dead = live.LiveRun(
        HAT, GLOVES, IMAGES, live.BackendConfig("openai", endpoint="http://127.0.0.1:9/v1"), RELS[:1]
    ).start()
    view = _wait(dead, 60)
    assert view.fatal and "cannot reach" in view.fatal and not live.result_rows(view)
    assert view.stages[0].state == "stopped"

    fake_openai.set(mode="slow", slow_s=3.0)
    slow = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai, timeout_s=0.5), RELS[:1]).start()
    view = _wait(slow, 60)
    assert view.errors and any("timed out" in e.lower() or "timeout" in e.lower() for e in view.errors), view.errors
    assert view.stages[0].state == "error"  # the only description failed
    assert not live.result_rows(view)

    fake_openai.set(mode="garbage")
    garbage = live.LiveRun(HAT, GLOVES, IMAGES, _openai(fake_openai), RELS[:1]).start()
    view = _wait(garbage, 60)
    rows = live.result_rows(view)
    assert len(rows) == 1 and rows[0]["verdict"] is None
    assert "filter_unparsed" in rows[0]["flags"] and "no_phrase" in rows[0]["flags"]
    assert "the filter answer began with neither yes nor no" in live.flag_notes(rows[0]["flags"])


# --- the transformers path -------------------------------------------------------------------------------------


def test_transformers_errors_and_a_real_tiny_run(tiny_llava_dir, tiny_text_only_dir, tmp_path):
    missing = live.LiveRun(
        HAT, GLOVES, IMAGES, live.BackendConfig("transformers", model=str(tmp_path / "nope")), RELS[:1]
    ).start()
    assert "does not exist" in _wait(missing).fatal
    text_lm = live.LiveRun(
        HAT, GLOVES, IMAGES, live.BackendConfig("transformers", model=str(tiny_text_only_dir)), RELS[:1]
    ).start()
    assert "vision" in _wait(text_lm).fatal.lower()

    cfg = live.BackendConfig("transformers", model=str(tiny_llava_dir), max_new_tokens=6)
    view = _wait(live.LiveRun(HAT, GLOVES, IMAGES, cfg, RELS[:2]).start(), 300)
    assert view.fatal is None and [s.state for s in view.stages] == ["complete"] * 3
    rows = live.result_rows(view)
    assert len(rows) == 2 and all(r["p_yes"] is not None for r in rows)
    assert rows[0]["source"] == f"distilled:transformers:{tiny_llava_dir}"
    again, owned = live.open_backend(cfg)
    assert not owned and again is live.open_backend(cfg)[0]  # loaded once per process


# --- results: similar intentions, save, export ------------------------------------------------------------------


def _rows(srv) -> tuple[list[dict], list[Product]]:
    view = _wait(live.LiveRun(HAT, GLOVES, IMAGES, _openai(srv), RELS[:2]).start())
    return live.result_rows(view), [view.result.a, view.result.b]


def test_similar_save_and_export(fake_openai, sample_kb, tmp_path, monkeypatch):
    rows, products = _rows(fake_openai)
    similar = live.similar_in_kb(sample_kb, rows, k=3)
    assert set(similar) == {r["intention_id"] for r in rows}
    for hits in similar.values():
        assert len(hits) == 3 and hits["score"].is_monotonic_decreasing
        assert {"title_a", "title_b", "intention"} <= set(hits.columns)

    monkeypatch.setenv("MIND_USER_DATA", str(tmp_path / "user"))
    rep = live.save_run(rows, products)
    assert rep.kb_dir == tmp_path / "user" / live.USER_KB_NAME and (rep.added, rep.replaced, rep.total) == (2, 0, 2)
    from dashboard.ui import kb_candidates
    from mind_core.kb.store import KnowledgeBase

    assert str(rep.kb_dir) in kb_candidates()
    kb = KnowledgeBase(rep.kb_dir)
    assert set(kb.intentions["intention_id"]) == {r["intention_id"] for r in rows}
    assert kb.products.loc[HAT.asin, "description"] == products[0].description != ""
    assert set(kb.intentions["source"].astype(str)) == {"distilled:openai:fake-vlm"}
    hit = kb.search(rows[0]["intention"], k=1)
    assert hit.iloc[0]["intention_id"] == rows[0]["intention_id"]
    # saving the same run again replaces; a row of another pair is added
    other = dict(rows[0], intention_id="d-other", asin_b="UOTHER0001", pair_id="UHAT000001|UOTHER0001")
    rep2 = live.save_run(rows + [other], products + [Product("UOTHER0001", "Scarf")])
    assert (rep2.added, rep2.replaced, rep2.total) == (1, 2, 3)
    assert len(KnowledgeBase(rep2.kb_dir).intentions) == 3
    with pytest.raises(ValueError, match="nothing to save"):
        live.save_run([], products)

    csv = pd.read_csv(io.BytesIO(live.export_rows(rows, "csv", products)))
    assert list(csv["relation"]) == RELS[:2] and (csv["title_a"] == HAT.title).all()
    jl = pd.read_json(io.BytesIO(live.export_rows(rows, "jsonl", products)), lines=True)
    pq_ = pd.read_parquet(io.BytesIO(live.export_rows(rows, "parquet", products)))
    assert len(jl) == len(pq_) == 2 and list(pq_["intention_id"]) == [r["intention_id"] for r in rows]
