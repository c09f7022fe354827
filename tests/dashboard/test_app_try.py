"""AppTest of the Try-a-product page: the full flow with the fake OpenAI server and with the tiny LLaVA model,
Stop, and bad input that must not lose what was entered."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

PAGE = "dashboard/views/try_product.py"


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture()
def page(open_page):
    return lambda **env: open_page(PAGE, 180, **env)


def _fill(at: AppTest, slot: str, title: str, files) -> None:
    at.file_uploader(key=f"try_{slot}_files").set_value(files)
    at.text_input(key=f"try_{slot}_title").set_value(title)


def _run_to_end(at: AppTest, timeout: float = 180) -> AppTest:
    at.button(key="try_run_button").click().run()
    run = at.session_state["try_run"]
    assert run.wait(timeout), "the run did not finish"
    return at.run().run()  # the first rerun sees the end (and asks for a full rerun), the second shows results


def _text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    parts += [s.value for s in at.success]
    return "\n".join(str(p) for p in parts).replace("\\", "").replace("**", "")


def test_full_flow_with_the_fake_openai_server(page, fake_openai, tmp_path):
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT=fake_openai.url)
    assert not at.exception, at.exception
    assert at.radio(key="try_backend").value == "openai"
    assert at.text_input(key="try_endpoint").value == fake_openai.url
    assert "openai · the server's first model at" in _text(at)
    _fill(at, "A", "Red ceramic mug", ("mug.png", _png((200, 30, 30)), "image/png"))
    _fill(at, "B", "Blue cork coaster", [("coaster.png", _png((30, 30, 200)), "image/png")])
    at.run()
    assert at.multiselect(key="try_relations").value == ["usedFor", "capableOf", "isA"]
    at = _run_to_end(at)
    assert not at.exception, at.exception
    text = _text(at)
    assert [s.state for s in at.status] == ["complete"] * 3
    assert at.status[0].label == "Stage 1 · describe each product — 2/2"
    table = at.dataframe[0].value
    assert list(table["relation"]) == ["usedFor", "capableOf", "isA"]
    assert set(table["verdict"]) <= {"kept", "filtered"} and table["p_yes"].notna().all()
    assert "The potential co-buy intention could be they are both used for" in text
    assert "Similar intentions already in the KB (3)" in [e.label for e in at.expander]
    assert len(fake_openai.requests) == 2 + 3 + 3

    at.button(key="try_save").click().run()
    assert not at.exception, at.exception
    assert "Saved (3 new) into the user KB" in _text(at)
    kb_dir = tmp_path / "user" / "my-products"
    assert (kb_dir / "manifest.json").exists() and (tmp_path / "user" / "_distilled" / "intentions").is_dir()
    assert str(kb_dir) in at.selectbox(key="kb_select").options  # the sidebar lists the user KB
    # the inputs are still there after the run and the save
    assert at.text_input(key="try_A_title").value == "Red ceramic mug"


def test_full_flow_with_the_tiny_llava_model_and_a_kb_product(page, tiny_llava_dir, sample_kb):
    at = page(MIND_BACKEND="transformers", MIND_TRANSFORMERS_MODEL=str(tiny_llava_dir), MIND_MAX_NEW_TOKENS="6")
    assert not at.exception, at.exception
    assert "local vision-language model" in _text(at) and "Text-only fallback" not in _text(at)
    _fill(at, "A", "Wool winter hat", [("hat.png", _png((120, 90, 60)), "image/png")])
    at.radio(key="try_B_source").set_value("From the KB").run()
    asin = sample_kb.products.index[0]
    label = next(k for k in at.selectbox(key="try_B_pick").options if k.endswith(asin))
    at.selectbox(key="try_B_pick").set_value(label).run()
    at.multiselect(key="try_relations").set_value(["usedFor"]).run()
    at = _run_to_end(at, 300)
    assert not at.exception, at.exception
    labels = [s.label for s in at.status]
    assert labels[0] == "Stage 1 · describe each product — 1/1"  # only the upload needed a description
    assert [s.state for s in at.status] == ["complete"] * 3, labels
    table = at.dataframe[0].value
    assert list(table["relation"]) == ["usedFor"] and table["p_yes"].notna().all()
    assert f"distilled:transformers:{tiny_llava_dir}" in _text(at)


def test_stop_keeps_what_finished(page, fake_openai):
    fake_openai.set(latency_s=3.0)  # stage 1 is still in flight when Stop is clicked
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT=fake_openai.url)
    _fill(at, "A", "Red mug", [("a.png", _png((200, 0, 0)), "image/png")])
    _fill(at, "B", "Blue coaster", [("b.png", _png((0, 0, 200)), "image/png")])
    at.run()
    at.button(key="try_run_button").click().run()
    assert at.button(key="try_run_button").disabled  # one run at a time
    deadline = time.monotonic() + 30
    while not fake_openai.active and time.monotonic() < deadline:  # stage 1's request is in flight
        time.sleep(0.02)
    at.button(key="try_stop").click().run()
    run = at.session_state["try_run"]
    assert run.cancel_event.is_set() and run.wait(60)
    at.run().run()
    assert not at.exception, at.exception
    text = _text(at)
    assert "Stopped. 0 finished intention(s) are kept below." in text
    labels = [s.label for s in at.status]
    assert labels == [
        "Stage 1 · describe each product — 2/2",  # its descriptions are kept and shown
        "Stage 2 · one intention per relation — 0/3 — stopped",
    ]
    assert [s.state for s in at.status] == ["complete", "error"]
    assert "Stage 3 · role-aware filter — not run" in text
    assert len(fake_openai.requests) == 2  # nothing was asked after the Stop
    assert at.text_input(key="try_B_title").value == "Blue coaster"


def test_bad_input_gets_messages_and_loses_nothing(page, fake_openai):
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT="http://127.0.0.1:9/v1")
    at.file_uploader(key="try_A_files").set_value(
        [("broken.png", _png((1, 2, 3))[:70], "image/png"), ("notes.png", b"just some text", "image/png")]
    )
    at.text_area(key="try_A_desc").set_value("A description I typed")
    at.run()
    text = _text(at)
    assert "broken.png: The image file is corrupt" in text
    assert "notes.png: This file is not an image we can read" in text
    at.button(key="try_run_button").click().run()
    errors = [e.value.replace("\\", "") for e in at.error]
    assert "Product A needs a title." in errors and any("no usable image" in e for e in errors)
    assert any("Product B needs at least one image" in e for e in errors)
    assert "try_run" not in at.session_state  # nothing started
    assert at.text_area(key="try_A_desc").value == "A description I typed"

    # same product as A and B
    same = ("same.png", _png((10, 200, 10)), "image/png")
    _fill(at, "A", "Green cup", [same])
    _fill(at, "B", "green  CUP", [same])
    at.run()
    at.button(key="try_run_button").click().run()
    assert any("same upload" in e.value for e in at.error)

    # an unreachable server: a clear message, inputs kept
    at.text_input(key="try_B_title").set_value("Green saucer").run()
    at = _run_to_end(at, 60)
    assert any("cannot reach the OpenAI-compatible server" in e.value.replace("\\", "") for e in at.error)
    assert at.text_input(key="try_A_title").value == "Green cup"
    assert at.text_area(key="try_A_desc").value == "A description I typed"

    # switching the source away and back keeps the title (the uploads: see the browser test; AppTest keeps them)
    at.radio(key="try_A_source").set_value("From the KB").run()
    assert "Pick product A from the knowledge base" not in _text(at)  # no nagging before Run
    at.radio(key="try_A_source").set_value("Upload").run()
    assert at.text_input(key="try_A_title").value == "Green cup"

    # a server that answers garbage: rows are flagged, not hidden
    at.text_input(key="try_endpoint").set_value(fake_openai.url).run()
    fake_openai.set(mode="garbage")
    at = _run_to_end(at, 60)
    assert not at.exception, at.exception
    assert "the filter answer began with neither yes nor no" in _text(at)
    # the page's default filter is "both": the critic decides, the unparsed LVLM answer stays flagged
    table = at.dataframe[0].value
    assert set(table["verdict"]) <= {"kept", "filtered"} and table["critic"].between(0, 1).all()
    assert "the verdict is the learned critic's" in _text(at)
    at.radio(key="try_filter").set_value("lvlm").run()  # MIND's rule: an unparsed answer judges nothing
    at = _run_to_end(at, 60)
    assert set(at.dataframe[0].value["verdict"]) == {"unjudged"}


def test_the_filter_choice_defaults_to_both_and_critic_skips_the_filter_calls(page, fake_openai):
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT=fake_openai.url)
    assert at.radio(key="try_filter").value == "both"
    assert "Critic: text-linear critic" in _text(at)
    _fill(at, "A", "Red ceramic mug", ("mug.png", _png((200, 30, 30)), "image/png"))
    _fill(at, "B", "Blue cork coaster", [("coaster.png", _png((30, 30, 200)), "image/png")])
    at.radio(key="try_filter").set_value("critic").run()
    assert "5 backend calls: 2 descriptions + 3 intentions + 0 filter answers." in _text(at)
    at = _run_to_end(at)
    assert not at.exception, at.exception
    assert len(fake_openai.requests) == 2 + 3  # no filter request
    table = at.dataframe[0].value
    assert table["p_yes"].isna().all() and table["critic"].between(0, 1).all()
    for verdict, p in zip(table["verdict"], table["critic"]):
        assert verdict == ("kept" if p >= 0.5 else "filtered")
    assert "critic P(keep)" in _text(at)


def test_api_key_from_the_environment_is_sent(page, fake_openai):
    # issue 11 (a): the page promised $OPENAI_API_KEY but sent only a typed key
    fake_openai.set(api_key="sk-test-from-env")
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT=fake_openai.url, OPENAI_API_KEY="sk-test-from-env")
    assert at.text_input(key="try_api_key").value == ""  # the field stays empty: the key is never shown
    _fill(at, "A", "Red mug", [("a.png", _png((200, 0, 0)), "image/png")])
    _fill(at, "B", "Blue coaster", [("b.png", _png((0, 0, 200)), "image/png")])
    at.multiselect(key="try_relations").set_value(["usedFor"]).run()
    at = _run_to_end(at)
    assert not at.exception, at.exception
    assert [s.state for s in at.status] == ["complete"] * 3
    assert list(at.dataframe[0].value["relation"]) == ["usedFor"]
    chats = [r for r in fake_openai.requests if r["path"].endswith("/chat/completions")]
    assert len(chats) == 2 + 1 + 1
    assert {r["authorization"] for r in chats} == {"Bearer sk-test-from-env"}
    assert "sk-test-from-env" not in _text(at)


def test_a_typed_api_key_wins_over_the_environment(page, fake_openai):
    fake_openai.set(api_key="sk-typed")
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT=fake_openai.url, OPENAI_API_KEY="sk-wrong")
    at.text_input(key="try_api_key").set_value("sk-typed")
    _fill(at, "A", "Red mug", [("a.png", _png((200, 0, 0)), "image/png")])
    _fill(at, "B", "Blue coaster", [("b.png", _png((0, 0, 200)), "image/png")])
    at.multiselect(key="try_relations").set_value(["usedFor"]).run()
    at = _run_to_end(at)
    assert not at.exception, at.exception
    chats = [r for r in fake_openai.requests if r["path"].endswith("/chat/completions")]
    assert chats and {r["authorization"] for r in chats} == {"Bearer sk-typed"}


def test_only_the_used_uploads_are_decoded_and_the_session_keeps_no_pixels(page, monkeypatch):
    # issue 16 (4): every uploaded file was decoded and kept (pixels) in the session, not only the 4 used
    from mind_core import images
    from mind_core.distill import inputs

    decoded = []
    real = images.open_image

    def counting(data, **kw):
        decoded.append(len(data))
        return real(data, **kw)

    monkeypatch.setattr(images, "open_image", counting)
    at = page()
    files = [(f"f{i}.png", _png((i, 123, 45)), "image/png") for i in range(inputs.MAX_UPLOADS + 3)]
    _fill(at, "A", "Mug", files)
    at.run()
    assert not at.exception, at.exception
    assert len(decoded) == inputs.MAX_UPLOADS
    assert any("only the first 4 are used" in w.value.replace("\\", "") for w in at.warning)
    kept = at.session_state["try_A_kept"]
    assert len(kept) == inputs.MAX_UPLOADS
    assert not any(isinstance(v, Image.Image) or hasattr(v, "image") for item in kept for v in item)


def _saved_by(page, fake_openai, name: str | None, tmp_path):
    env = {"MIND_SHARED": "1", "MIND_BACKEND": "openai", "MIND_ENDPOINTS": fake_openai.url}
    at = page(**env)
    _fill(at, "A", "Red mug", [("a.png", _png((201, 0, 0)), "image/png")])
    _fill(at, "B", "Blue coaster", [("b.png", _png((0, 0, 201)), "image/png")])
    at.multiselect(key="try_relations").set_value(["usedFor"]).run()
    at = _run_to_end(at)
    assert not at.exception, at.exception
    if name is not None:
        at.text_input(key="try_annotator").set_value(name)
    at.button(key="try_save").click().run()
    assert not at.exception, at.exception
    return at


def test_shared_mode_saves_runs_per_annotator(page, fake_openai, tmp_path):
    # issue 16 (14): "My KB" was one folder for every visitor of a shared dashboard
    user = tmp_path / "user"
    at = _saved_by(page, fake_openai, None, tmp_path)
    assert any("Type your name" in e.value for e in at.error)
    assert not (user / "my-products").exists()
    assert any("per name" in c.value for c in at.caption)  # the page says how saved runs are kept

    at = _saved_by(page, fake_openai, "Anna", tmp_path)
    assert "Saved (1 new)" in _text(at)
    anna = user / "annotators" / "anna" / "my-products"
    assert (anna / "manifest.json").exists() and not (user / "my-products").exists()
    assert str(anna) in at.selectbox(key="kb_select").options  # her KB is offered to her session

    at = _saved_by(page, fake_openai, "Ben", tmp_path)
    ben = user / "annotators" / "ben" / "my-products"
    assert (ben / "manifest.json").exists()
    assert str(anna) not in at.selectbox(key="kb_select").options  # not Anna's
