"""The transformers backend through its real code path (AutoProcessor + AutoModelForImageTextToText) on a tiny random
LLaVA built from configs (tests/doubles/tiny_llava.py)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from mind_core.lvlm import NO_VARIANTS, YES_VARIANTS, answer_text, make_backend
from mind_core.lvlm.base import BackendError, GenParams, LVLMRequest

GREEDY = GenParams(do_sample=False, max_new_tokens=6)
OPENING = "The potential co-buy intention could be they are both used for"


@pytest.fixture(scope="module")
def backend(tiny_llava_dir):
    be = make_backend("transformers", model=str(tiny_llava_dir), batch_size=3)
    yield be
    be.close()


def _img(color, size=(60, 44)):
    im = Image.new("RGB", size, color)
    ImageDraw.Draw(im).rectangle((5, 5, 30, 20), fill=(255, 255, 255))
    return im


def _manual_first_token_probs(be, req):
    """Independent of the backend's batching: tokenize one prompt, one forward pass, softmax of the last position."""
    text = be.build_prompt(req)
    kwargs = {"text": [text], "return_tensors": "pt", "add_special_tokens": False}
    if req.images:
        kwargs["images"] = [[im.convert("RGB") for im in req.images]]
    inputs = be.processor(**kwargs)
    with torch.no_grad():
        logits = be.hf_model(**inputs).logits[0, -1]
    return torch.softmax(logits.float(), -1), inputs


def _first_ids(tok, variants):
    ids = []
    for v in variants:
        pieces = [t for t in tok.encode(v, add_special_tokens=False) if tok.decode([t]).strip()]
        ids.append(pieces[0])
    return sorted(set(ids))


def test_loads_as_vision_model_on_cpu_fp32(backend):
    assert backend.name == "transformers" and backend.text_only is False
    assert type(backend.hf_model).__name__ == "LlavaForConditionalGeneration"
    assert backend.device.type == "cpu" and backend.dtype == torch.float32
    assert backend.yes_ids and backend.no_ids and not set(backend.yes_ids) & set(backend.no_ids)


def test_batch_with_and_without_images(backend):
    reqs = [
        LVLMRequest(prompt="Describe the product.", images=[_img("red")], system="Be careful."),
        LVLMRequest(prompt="Describe the product in words only."),
        LVLMRequest(prompt="Describe both.", images=[_img("blue"), _img("green", (30, 90))]),
        LVLMRequest(prompt="Why buy both?", prefill=OPENING),
        LVLMRequest(prompt="Is it good?", images=[_img("yellow")], want_yes_prob=True),
    ]
    out = backend.generate(reqs, GREEDY)
    assert len(out) == 5
    for resp in out:
        assert resp.error is None and isinstance(resp.text, str)
        assert 1 <= resp.meta["new_tokens"] <= GREEDY.max_new_tokens
    assert out[4].p_yes is not None and out[3].p_yes is None
    # the prompt really contains the image placeholders (expanded to patch tokens by the processor)
    inputs = backend._encode([reqs[2]])
    n_img = int((inputs["input_ids"] == backend.hf_model.config.image_token_id).sum())
    assert n_img == 2 * 16  # (32/8)^2 patches per image, CLS dropped
    assert inputs["pixel_values"].shape[0] == 2


def test_prefill_is_appended_after_the_generation_prompt_and_continued(backend):
    req = LVLMRequest(prompt="Why buy both?", prefill=OPENING, images=[_img("red")])
    prompt = backend.build_prompt(req)
    assert prompt.endswith("<|im_start|>assistant\n" + OPENING)
    (resp,) = backend.generate([req], GREEDY)
    assert resp.meta["prefill_applied"] is True
    # same continuation as calling the model directly on the prefixed prompt
    _, inputs = _manual_first_token_probs(backend, req)
    with torch.no_grad():
        seq = backend.hf_model.generate(
            **inputs, max_new_tokens=6, do_sample=False, pad_token_id=backend.tokenizer.pad_token_id
        )
    expected = backend.tokenizer.decode(seq[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert resp.text == expected
    assert answer_text(req, resp).startswith(OPENING)


def test_p_yes_matches_the_first_token_logits(backend):
    reqs = [
        LVLMRequest(prompt="Would you buy both? Answer Yes or No.", want_yes_prob=True, images=[_img("red")]),
        LVLMRequest(prompt="Yes or No: a short one?", want_yes_prob=True),
        LVLMRequest(prompt="Would you buy both products at the same time? Be critical. Yes or No.", want_yes_prob=True),
    ]
    out = backend.generate(reqs, GREEDY)  # the two text-only ones share a left-padded batch
    yes_ids, no_ids = _first_ids(backend.tokenizer, YES_VARIANTS), _first_ids(backend.tokenizer, NO_VARIANTS)
    assert sorted(backend.yes_ids) == yes_ids and sorted(backend.no_ids) == no_ids
    for req, resp in zip(reqs, out):
        probs, _ = _manual_first_token_probs(backend, req)
        py, pn = float(probs[yes_ids].sum()), float(probs[no_ids].sum())
        assert 0.0 <= resp.p_yes <= 1.0
        assert resp.meta["p_yes_raw"] == pytest.approx(py, rel=1e-3, abs=1e-7)
        assert resp.meta["p_no_raw"] == pytest.approx(pn, rel=1e-3, abs=1e-7)
        assert resp.p_yes == pytest.approx(py / (py + pn), abs=1e-4)
        # greedy: the first generated token is the arg-max of those same probabilities
        assert resp.meta["top_tokens"][0][0] == backend.tokenizer.decode([int(probs.argmax())])


def test_batching_does_not_change_results(tiny_llava_dir, backend):
    reqs = [
        LVLMRequest(prompt="Short?", want_yes_prob=True),
        LVLMRequest(prompt="A much longer question about two products bought together, yes or no?", want_yes_prob=True),
    ]
    batched = backend.generate(reqs, GREEDY)
    single = make_backend("transformers", model=str(tiny_llava_dir), batch_size=1).generate(reqs, GREEDY)
    for a, b in zip(batched, single):
        assert a.meta["batch_size"] == 2 and b.meta["batch_size"] == 1
        assert a.p_yes == pytest.approx(b.p_yes, abs=1e-4)


def test_sampling_with_a_seed_is_reproducible(backend):
    req = LVLMRequest(prompt="Describe the product.", images=[_img("red")])
    params = GenParams(temperature=1.0, max_new_tokens=8, seed=11)
    a = backend.generate([req], params)[0].text
    b = backend.generate([req], params)[0].text
    assert a == b


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        make_backend("transformers", model=str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="no config.json"):
        make_backend("transformers", model=str(tmp_path / "empty"))
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(BackendError, match="is a file"):
        make_backend("transformers", model=str(tmp_path / "model.gguf"))


def test_text_only_model_is_rejected(tiny_text_only_dir):
    with pytest.raises(BackendError) as err:
        make_backend("transformers", model=str(tiny_text_only_dir))
    msg = str(err.value)
    assert "not a vision-language model" in msg and "'llama'" in msg and "no vision tower" in msg


def test_uncached_hub_id_fails_with_download_advice():
    with pytest.raises(BackendError) as err:
        make_backend("transformers", model="example-org/surely-not-cached-vlm", local_files_only=True)
    assert "hf download example-org/surely-not-cached-vlm" in str(err.value)
