"""The transformers backend on tiny random models of several VLM families (tests/doubles/tiny_vlms.py, built from
configs, PIL image processors): MIND's three stages through check-backend (describe, intend, filter) and P(yes)
from the first-token logits. Qwen2-VL / Qwen2.5-VL / SmolVLM (2) cannot be built here: their processors need a
video processor, and transformers' video processors need torchvision (README, "Model families")."""

from __future__ import annotations

import importlib.util

import pytest

from mind_core.distill.check import check_backend
from mind_core.lvlm import make_backend
from mind_core.lvlm.base import GenParams, LVLMRequest
from mind_core.lvlm.registry import BackendConfig

WORKING = ("llava_next", "idefics3", "gemma3")
MODEL_CLASS = {
    "llava_next": "LlavaNextForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "gemma3": "Gemma3ForConditionalGeneration",
}


@pytest.fixture(scope="module", params=WORKING)
def family_dir(request, tmp_path_factory):
    from doubles.tiny_vlms import FAMILIES

    return request.param, FAMILIES[request.param](tmp_path_factory.mktemp(f"tiny_{request.param}"))


def test_three_stages_and_p_yes(family_dir):
    family, folder = family_dir
    report = check_backend(
        BackendConfig("transformers", model=str(folder)), params=GenParams(do_sample=False, max_new_tokens=6)
    )
    assert report.stage("start").ok, report.lines()
    for stage in ("describe", "intend", "filter"):
        result = report.stage(stage)
        # random weights write gibberish (possibly nothing readable), but no stage may fail with an error
        assert result is not None and (result.error is None or result.error.startswith("empty")), report.lines()
    assert report.images.startswith("yes")
    assert report.p_yes is not None and 0.0 <= report.p_yes <= 1.0


def test_images_reach_the_model_and_batching_keeps_results(family_dir):
    from PIL import Image

    family, folder = family_dir
    be = make_backend("transformers", model=str(folder), batch_size=2)
    try:
        assert type(be.hf_model).__name__ == MODEL_CLASS[family]
        reqs = [
            LVLMRequest(
                prompt="Is it good? Answer Yes or No.", images=[Image.new("RGB", (48, 96), c)], want_yes_prob=True
            )
            for c in ("red", "blue")
        ]
        inputs = be._encode(reqs[:1])
        image_id = getattr(be.hf_model.config, "image_token_id", None) or be.hf_model.config.image_token_index
        assert int((inputs["input_ids"] == image_id).sum()) > 0  # the placeholder expanded into image tokens
        together = be.generate(reqs, GenParams(do_sample=False, max_new_tokens=3))
        alone = [be.generate([r], GenParams(do_sample=False, max_new_tokens=3))[0] for r in reqs]
    finally:
        be.close()
    for a, b in zip(together, alone):
        assert a.error is None and a.p_yes == pytest.approx(b.p_yes, abs=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen2_vl_needs_torchvision(family, tmp_path):
    """The documented reason, checked: without torchvision the Qwen2-VL processor cannot even be built."""
    from doubles.tiny_vlms import FAMILIES

    with pytest.raises(AttributeError, match="VIDEO_PROCESSOR_MAPPING"):
        FAMILIES[family](tmp_path / family)
