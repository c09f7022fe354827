"""The openai backend, distill and check-backend against a real OpenAI-compatible server nobody here wrote:
``transformers serve`` (tests/lvlm/conftest.py starts it, pinned to tiny random models)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mind_core.distill.check import check_backend
from mind_core.distill.prompts import intention_request
from mind_core.lvlm import make_backend
from mind_core.lvlm.base import BackendError, GenParams, LVLMRequest
from mind_core.lvlm.registry import BackendConfig

GREEDY = GenParams(do_sample=False, max_new_tokens=4)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "amazon_meta_sample.json.gz"


def test_model_is_discovered_and_logprobs_are_absent(served_text_lm):
    be = make_backend("openai", endpoint=served_text_lm.url)
    try:
        assert be.model == served_text_lm.model  # GET /v1/models of a pinned server lists its one model
        out = be.generate([LVLMRequest(prompt="Answer Yes or No.", want_yes_prob=True)], GREEDY)[0]
    finally:
        be.close()
    assert out.error is None and out.text
    # transformers serve ignores logprobs / top_logprobs (HTTP 200 without them): no P(yes), said in meta
    assert out.p_yes is None and out.meta["logprobs"] == "not returned"
    assert out.meta["usage"]["prompt_tokens"] > 0


def test_a_model_the_server_does_not_serve_stops_the_batch(served_text_lm):
    be = make_backend("openai", endpoint=served_text_lm.url, model="gpt-4o", max_retries=0)
    try:
        with pytest.raises(BackendError) as err:
            be.generate([LVLMRequest(prompt="hi")], GREEDY)
    finally:
        be.close()
    text = str(err.value)
    # FastAPI's {"detail": ...} body is quoted, and the 400 is a batch-stopping error, not a per-row one
    assert "HTTP 400" in text and "'gpt-4o' is not served" in text and "pinned to" in text


def test_continue_mode_is_refused_with_advice(served_text_lm):
    be = make_backend("openai", endpoint=served_text_lm.url, prefill_mode="continue")
    try:
        with pytest.raises(BackendError, match="prefill_mode='auto'"):
            be.generate([LVLMRequest(prompt="Why?", prefill="Because")], GREEDY)
    finally:
        be.close()


def test_stacked_pair_image_goes_through_the_servers_image_handling(served_vlm):
    """A real server's image path: the stacked pair image of a stage-2 request reaches the tiny LLaVA (its image
    tokens show up in the prompt token count)."""
    from mind_core.distill.check import PRODUCT_A, PRODUCT_B, sample_images
    from mind_core.distill.stages import pair_image

    stacked = pair_image(*sample_images())[0]
    with_image = intention_request(PRODUCT_A, PRODUCT_B, "usedFor", stacked)
    without = intention_request(PRODUCT_A, PRODUCT_B, "usedFor", None)
    be = make_backend("openai", endpoint=served_vlm.url)
    try:
        a, b = be.generate([with_image, without], GREEDY)
    finally:
        be.close()
    assert a.error is None and b.error is None
    # 16 patch tokens per image for this tiny LLaVA; the texts differ by one sentence ("The image shows ...")
    assert a.meta["usage"]["prompt_tokens"] - b.meta["usage"]["prompt_tokens"] >= 16


def test_check_backend_on_a_text_only_server_diagnoses_images_and_logprobs(served_text_lm):
    report = check_backend(BackendConfig("openai", endpoint=served_text_lm.url))
    codes = {d.code for d in report.diagnoses}
    assert not report.ok
    assert report.stage("connect").ok and report.stage("start").ok and report.stage("describe").ok
    assert report.images == "no" and "images_ignored" in codes and "no_logprobs" in codes
    assert served_text_lm.model in report.served_models


def test_check_backend_on_a_vision_server_sees_the_images(served_vlm):
    report = check_backend(BackendConfig("openai", endpoint=served_vlm.url), need_p_yes=False)
    assert report.images.startswith("yes")
    assert {d.code for d in report.diagnoses}.isdisjoint({"images_ignored", "not_vision"})
    assert all(s.error is None or s.stage == "filter" for s in report.stages)


def test_check_backend_names_the_served_model_when_the_name_is_wrong(served_text_lm):
    report = check_backend(BackendConfig("openai", endpoint=served_text_lm.url, model="llava-7b"), use_images=False)
    assert not report.ok and [d.code for d in report.diagnoses][:1] == ["model_not_found"]


def test_distill_no_images_through_the_server_writes_kb_rows(served_text_lm, tmp_path, capsys):
    from mind_core.cli.main import main as cli_main

    out = tmp_path / "distilled"
    args = ["distill", "--metadata", str(FIXTURE), "--out", str(out), "--backend", "openai"]
    args += ["--endpoint", served_text_lm.url, "--max-pairs", "1", "--relations", "usedFor,isA", "--no-images"]
    args += ["--filter", "lvlm", "--max-new-tokens", "8", "--temperature", "0"]
    code = cli_main(args)
    err = capsys.readouterr().err
    # a random tiny model answers the filter with neither yes nor no: rows are written, the run says so and exits 1
    assert code in (0, 1), err
    assert code == 0 or "filter answers were unparseable" in err
    parts = sorted(out.rglob("*.parquet"))
    rows = [r for p in parts for r in pq.read_table(p).to_pylist() if "relation" in r]
    assert {r["relation"] for r in rows} == {"usedFor", "isA"}
    assert all(r["source"] == f"distilled:openai:{served_text_lm.model}" for r in rows)
    assert all(r["p_yes"] is None for r in rows)  # no logprobs from this server
