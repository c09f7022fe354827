"""Shared pytest fixtures. Several test modules add fixtures here: keep each block self-contained."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# test doubles live in tests/doubles; make ``import doubles...`` work whatever the rootdir / import mode
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


# --- LVLM backends (tests/test_lvlm_*.py) -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised LLaVA model folder (CLIP vision + Llama text, tokenizer, processor, chat
    template) built once per session from configs: no download."""
    from doubles.tiny_llava import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(scope="session")
def tiny_text_only_dir(tmp_path_factory) -> Path:
    """A tiny text-only Llama causal LM folder (no vision tower) for the 'not a vision model' error."""
    from doubles.tiny_llava import build_tiny_text_lm

    return build_tiny_text_lm(tmp_path_factory.mktemp("tiny_text_lm"))


@pytest.fixture()
def fake_openai():
    """A running fake OpenAI-compatible server (tests/doubles/fake_openai_server.py), stopped afterwards."""
    from doubles.fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as srv:
        yield srv
