"""The OpenAI-compatible backend against a real local HTTP server (tests/doubles/fake_openai_server.py)."""

from __future__ import annotations

import base64
import io
import socket
import time

import pytest
from PIL import Image

from mind_core.lvlm import answer_text, make_backend
from mind_core.lvlm.base import BackendError, GenParams, LVLMRequest
from mind_core.lvlm.openai_backend import OpenAIBackend, normalize_endpoint

OPENING = "The potential co-buy intention could be they are both used for"
FILTER_PROMPT = 'Would this intention make you buy both? Answer "Yes" or "No" first, then give your reason.'
INTENT_PROMPT = f'Product A: tent\nProduct B: stove\nWhy both? Begin your answer with "{OPENING}".'
FAST = dict(backoff_base=0.01, backoff_max=0.05)


def _backend(srv, **kw) -> OpenAIBackend:
    opts = {**FAST, **kw}
    return make_backend("openai", endpoint=srv.url, model=opts.pop("model", srv.model), **opts)


def _filter_req(tag: str = "") -> LVLMRequest:
    return LVLMRequest(prompt=FILTER_PROMPT + tag, want_yes_prob=True)


def _intent_req(**kw) -> LVLMRequest:
    return LVLMRequest(prompt=INTENT_PROMPT, prefill=OPENING, **kw)


def test_normal_intention_and_filter(fake_openai):
    fake_openai.set(filter_answer="yes")
    with _backend(fake_openai) as be:
        out = be.generate(
            [_intent_req(system="be careful"), _filter_req()], GenParams(temperature=0.2, max_new_tokens=64, seed=3)
        )
    intent, filt = out
    assert intent.error is None and filt.error is None
    assert intent.meta["prefill_applied"] is True
    assert intent.text.startswith("outdoor activities")  # the opening is cut off ...
    assert answer_text(_intent_req(), intent).startswith(OPENING + " outdoor")  # ... and joined back
    assert filt.text.startswith("Yes,")
    assert filt.p_yes == pytest.approx(0.8 / 0.95)
    assert filt.meta["p_yes_raw"] == pytest.approx(0.8) and filt.meta["p_no_raw"] == pytest.approx(0.15)
    # the two requests run concurrently: find each by its prompt, not by arrival order
    bodies = sorted((r["body"] for r in fake_openai.requests), key=lambda b: "logprobs" in b)
    assert bodies[0]["messages"][0] == {"role": "system", "content": "be careful"}
    assert bodies[0]["temperature"] == 0.2 and bodies[0]["max_tokens"] == 64 and bodies[0]["seed"] == 3
    assert "logprobs" not in bodies[0]  # only filter questions ask for logprobs
    assert bodies[1]["logprobs"] is True and bodies[1]["top_logprobs"] == 20


def test_no_answer_gives_low_p_yes_and_greedy_sends_temperature_zero(fake_openai):
    fake_openai.set(filter_answer="no")
    with _backend(fake_openai) as be:
        (resp,) = be.generate([_filter_req()], GenParams(do_sample=False))
    assert resp.text.startswith("No,")
    assert resp.p_yes == pytest.approx(0.15 / 0.95)
    assert fake_openai.requests[0]["body"]["temperature"] == 0.0


@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_images_arrive_as_data_uris(fake_openai, fmt, mime):
    img = Image.new("RGB", (40, 24), (200, 30, 30))
    img.putpixel((0, 0), (0, 255, 0))
    with _backend(fake_openai, image_format=fmt) as be:
        (resp,) = be.generate([LVLMRequest(prompt="Describe.", images=[img, img.resize((10, 10))])], GenParams())
    assert resp.error is None
    content = fake_openai.requests[0]["body"]["messages"][-1]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"]
    url = content[0]["image_url"]["url"]
    assert url.startswith(f"data:{mime};base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (40, 24)
    if fmt == "PNG":  # lossless
        assert decoded.convert("RGB").getpixel((0, 0)) == (0, 255, 0)
        assert decoded.convert("RGB").getpixel((5, 5)) == (200, 30, 30)


def test_concurrency_is_really_parallel(fake_openai):
    fake_openai.set(latency_s=0.25)
    reqs = [_filter_req(str(i)) for i in range(16)]
    with _backend(fake_openai, concurrency=8) as be:
        t0 = time.perf_counter()
        out = be.generate(reqs, GenParams())
        wall = time.perf_counter() - t0
    assert all(r.error is None for r in out)
    assert fake_openai.max_active >= 6
    assert wall < 16 * 0.25 / 3  # serial would take 4 s; 8-way about 0.5 s
    # order is kept: each answer belongs to its own prompt
    by_prompt = {r["body"]["messages"][-1]["content"]: r for r in fake_openai.requests}
    for req, resp in zip(reqs, out):
        assert by_prompt[req.prompt]
        assert resp.text.startswith(
            "Yes" if fake_openai.answer(by_prompt[req.prompt]["body"])[0].startswith("Yes") else "No"
        )


def test_concurrency_one_is_serial(fake_openai):
    fake_openai.set(latency_s=0.05)
    with _backend(fake_openai, concurrency=1) as be:
        be.generate([_filter_req(str(i)) for i in range(4)], GenParams())
    assert fake_openai.max_active == 1


def test_500_then_ok_is_retried(fake_openai):
    fake_openai.set(mode="fail_500", fail_times=2)
    with _backend(fake_openai, max_retries=3) as be:
        (resp,) = be.generate([_filter_req()], GenParams())
    assert resp.error is None and resp.text[:3] in ("Yes", "No,")
    assert resp.meta["attempts"] == 3
    assert len(fake_openai.requests) == 3


def test_500_forever_gives_a_per_request_error(fake_openai):
    fake_openai.set(mode="fail_500", fail_times=None)
    with _backend(fake_openai, max_retries=2) as be:
        (resp,) = be.generate([_filter_req()], GenParams())
    assert resp.text == "" and "HTTP 500" in resp.error and "3 attempts" in resp.error
    assert len(fake_openai.requests) == 3


def test_429_honours_retry_after(fake_openai):
    fake_openai.set(mode="fail_429", fail_times=1, retry_after=0.6)
    with _backend(fake_openai, max_retries=2) as be:
        t0 = time.perf_counter()
        (resp,) = be.generate([_filter_req()], GenParams())
        wall = time.perf_counter() - t0
    assert resp.error is None
    assert wall >= 0.6  # backoff alone would be ~0.01 s
    assert len(fake_openai.requests) == 2


def test_slow_server_times_out(fake_openai):
    fake_openai.set(mode="slow", slow_s=3.0)
    with _backend(fake_openai, read_timeout=0.3, max_retries=1) as be:
        t0 = time.perf_counter()
        (resp,) = be.generate([_filter_req()], GenParams())
        wall = time.perf_counter() - t0
    assert resp.text == "" and "timed out" in resp.error
    assert wall < 2.0


def test_malformed_json_retried_then_reported(fake_openai):
    fake_openai.set(mode="malformed_json", fail_times=1)
    with _backend(fake_openai, max_retries=2) as be:
        (ok,) = be.generate([_filter_req()], GenParams())
        assert ok.error is None and ok.meta["attempts"] == 2
        fake_openai.set(mode="malformed_json", fail_times=None)
        (bad,) = be.generate([_filter_req()], GenParams())
    assert bad.text == "" and "malformed response" in bad.error


def test_garbage_answer_is_returned_as_text(fake_openai):
    fake_openai.set(mode="garbage")
    with _backend(fake_openai) as be:
        (resp,) = be.generate([_filter_req()], GenParams())
    assert resp.error is None
    assert resp.text.startswith("Perhaps.")
    assert resp.p_yes is None  # neither yes nor no among the top logprobs


def test_no_logprobs_from_server_gives_none(fake_openai):
    fake_openai.set(logprobs=False, filter_answer="yes")
    with _backend(fake_openai) as be:
        (resp,) = be.generate([_filter_req()], GenParams())
    assert resp.text.startswith("Yes") and resp.p_yes is None
    assert resp.meta["logprobs"] == "not returned"


def test_server_rejecting_logprobs_is_asked_again_without(fake_openai):
    fake_openai.set(mode="reject_logprobs", filter_answer="yes")
    with _backend(fake_openai) as be:
        (first,) = be.generate([_filter_req()], GenParams())
        (second,) = be.generate([_filter_req()], GenParams())
    assert first.error is None and first.text.startswith("Yes") and first.p_yes is None
    assert second.error is None
    assert [bool(r["body"].get("logprobs")) for r in fake_openai.requests] == [True, False, False]


def test_401_is_a_clear_error_and_the_key_is_never_shown(fake_openai):
    secret = "sk-very-secret-123"
    fake_openai.set(api_key="the-right-key")
    be = _backend(fake_openai, api_key=secret, api_key_source="MY_VLM_KEY", preflight=False)
    try:
        assert secret not in repr(be) and "***" in repr(be)
        with pytest.raises(BackendError) as err:
            be.generate([_filter_req()], GenParams())
    finally:
        be.close()
    assert "401" in str(err.value) and "MY_VLM_KEY" in str(err.value)
    assert secret not in str(err.value)
    assert fake_openai.requests[0]["authorization"] == f"Bearer {secret}"


def test_right_api_key_passes(fake_openai):
    fake_openai.set(api_key="k1")
    with _backend(fake_openai, api_key="k1") as be:
        (resp,) = be.generate([_filter_req()], GenParams())
    assert resp.error is None


def test_404_names_endpoint_and_model(fake_openai):
    fake_openai.set(mode="404")
    with _backend(fake_openai, model="no-such-model") as be, pytest.raises(BackendError) as err:
        be.generate([_filter_req(), _filter_req("x")], GenParams())
    msg = str(err.value)
    assert "404" in msg and "endpoint path" in msg and "no-such-model" in msg


def test_400_is_a_per_request_error_with_the_server_message(fake_openai):
    fake_openai.set(mode="400")
    with _backend(fake_openai) as be:
        (resp,) = be.generate([_filter_req()], GenParams())
    assert "HTTP 400" in resp.error and "maximum context length" in resp.error
    assert len(fake_openai.requests) == 1  # not retried


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_fails_fast_naming_the_url():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    be = make_backend("openai", endpoint=url, model="m", **FAST)
    t0 = time.perf_counter()
    with pytest.raises(BackendError) as err:
        be.generate([_filter_req()], GenParams())
    assert time.perf_counter() - t0 < 2.0
    assert url in str(err.value)
    be.close()
    with pytest.raises(BackendError, match="cannot reach"):  # discovering the model contacts the server at once
        make_backend("openai", endpoint=url)


def test_server_dying_mid_run_stops_the_batch(fake_openai):
    be = _backend(fake_openai, max_retries=1)
    assert be.generate([_filter_req()], GenParams())[0].error is None
    fake_openai.stop()
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match="unreachable"):
        be.generate([_filter_req(str(i)) for i in range(5)], GenParams())
    assert time.perf_counter() - t0 < 3.0
    be.close()


def test_prefill_continue_mode_sends_assistant_turn(fake_openai):
    with _backend(fake_openai, prefill_mode="continue") as be:
        (resp,) = be.generate([_intent_req()], GenParams())
    body = fake_openai.requests[0]["body"]
    assert body["messages"][-1] == {"role": "assistant", "content": OPENING}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert resp.meta["prefill_applied"] is True and resp.text.startswith("outdoor activities")


def test_prefill_auto_mode_keeps_an_answer_that_ignores_the_opening(fake_openai):
    fake_openai.set(intention_style="free")
    with _backend(fake_openai) as be:
        (resp,) = be.generate([_intent_req()], GenParams())
    assert resp.meta["prefill_applied"] is False
    assert resp.text.startswith("Because the shopper")
    assert answer_text(_intent_req(), resp) == resp.text
    assert "continue_final_message" not in fake_openai.requests[0]["body"]


def test_model_is_discovered_from_the_server(fake_openai):
    fake_openai.set(model="served-model-7b")
    be = make_backend("openai", endpoint=fake_openai.url.removesuffix("/v1"))  # base URL without /v1 works too
    try:
        assert be.model == "served-model-7b"
        be.generate([_filter_req()], GenParams())
    finally:
        be.close()
    assert fake_openai.requests[0]["body"]["model"] == "served-model-7b"


def test_endpoint_forms_and_factory_errors():
    assert normalize_endpoint("http://h:8000") == ("http://h:8000/v1", "http://h:8000/v1/chat/completions")
    assert normalize_endpoint("http://h:8000/v1/") == ("http://h:8000/v1", "http://h:8000/v1/chat/completions")
    assert normalize_endpoint("https://h/api/v1/chat/completions")[1] == "https://h/api/v1/chat/completions"
    with pytest.raises(BackendError, match="not an http"):
        normalize_endpoint("localhost:8000")
    with pytest.raises(BackendError, match="unknown backend 'gpt'"):
        make_backend("gpt")
    with pytest.raises(BackendError, match="--endpoint"):
        make_backend("openai", model="m")
    with pytest.raises(BackendError, match="--model"):
        make_backend("transformers")
    with pytest.raises(BackendError, match="prefill_mode"):
        make_backend("openai", endpoint="http://127.0.0.1:9/v1", model="m", prefill_mode="sometimes")


# --- issue 16: a shared dashboard echoes no server answer; the key hint names the key's real source ------------


@pytest.mark.parametrize(
    ("mode", "server_text"),
    [
        ("404", "does not exist or route"),
        ("400", "maximum context length"),
        ("fail_500", "internal server error (fake)"),
        ("malformed_json", "trunc"),
    ],
)
def test_without_detailed_errors_no_server_text_or_address_is_echoed(fake_openai, mode, server_text):
    fake_openai.set(mode=mode, fail_times=99)
    port = str(fake_openai.port)
    with _backend(fake_openai, max_retries=0) as detailed:  # the CLI and a local dashboard: the details help
        try:
            (resp,) = detailed.generate([_filter_req()], GenParams())
            shown = resp.error
        except BackendError as err:
            shown = str(err)
    assert server_text in shown and port in shown
    with _backend(fake_openai, max_retries=0, detailed_errors=False) as quiet:  # a shared dashboard
        try:
            (resp,) = quiet.generate([_filter_req()], GenParams())
            shown = resp.error
        except BackendError as err:
            shown = str(err)
    assert shown and server_text not in shown and port not in shown and "127.0.0.1" not in shown
    assert "the model server" in shown


def test_an_unreachable_server_without_details_is_not_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError) as err:
        make_backend("openai", endpoint=f"http://127.0.0.1:{port}/v1", detailed_errors=False)
    assert str(port) not in str(err.value) and "the model server" in str(err.value)


def test_the_auth_hint_names_where_the_key_came_from(fake_openai):
    fake_openai.set(api_key="right")
    hints = {}
    for source in ("MYKEY", "the API key field"):
        with _backend(fake_openai, api_key="wrong", api_key_source=source) as be, pytest.raises(BackendError) as err:
            be.generate([_filter_req()], GenParams())
        hints[source] = str(err.value)
    assert "$MYKEY" in hints["MYKEY"] and "OPENAI_API_KEY" not in hints["MYKEY"]
    assert "the API key field" in hints["the API key field"] and "$" not in hints["the API key field"]
    with _backend(fake_openai, api_key_source="the API key field") as be, pytest.raises(BackendError) as err:
        be.generate([_filter_req()], GenParams())  # no key at all, on a page: no CLI advice
    assert "the API key field" in str(err.value) and "--api-key-env" not in str(err.value)


def test_cli_401_names_the_variable_of_api_key_env(fake_openai, tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from mind_core.cli.main import main as cli_main

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "amazon_meta_sample.json.gz"
    fake_openai.set(api_key="the-right-key")
    monkeypatch.setenv("MYKEY", "a-wrong-key")
    monkeypatch.setenv("OPENAI_API_KEY", "another-wrong-key")
    args = ["distill", "--metadata", str(fixture), "--out", str(tmp_path / "o"), "--backend", "openai"]
    args += ["--endpoint", fake_openai.url, "--model", "m", "--max-pairs", "1", "--relations", "usedFor"]
    assert cli_main([*args, "--api-key-env", "MYKEY"]) == 2
    err = capsys.readouterr().err
    assert "401" in err and "$MYKEY" in err and "OPENAI_API_KEY" not in err and "a-wrong-key" not in err
