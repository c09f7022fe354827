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


# --- KB fixtures (tests/test_kb.py, test_cli.py, test_app*.py, browser tests) ------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "data" / "mind_sample"


@pytest.fixture(scope="session")
def sample_kb_dir(tmp_path_factory) -> Path:
    """The full vendored MIND sample built into a KB once per session (embeddings come from the persistent
    embedding cache after the first build on a machine)."""
    from mind_core.kb.build import build_kb

    out = tmp_path_factory.mktemp("kb") / "sample"
    build_kb([SAMPLE_DIR], out, progress=False)
    return out


@pytest.fixture(scope="session")
def sample_kb(sample_kb_dir):
    from mind_core.kb.store import KnowledgeBase

    return KnowledgeBase(sample_kb_dir)


@pytest.fixture(scope="session")
def small_input_dir(tmp_path_factory) -> Path:
    """First 120 sample intentions + their products, in the sample's JSONL layout."""
    import json

    d = tmp_path_factory.mktemp("small_input")
    lines = (SAMPLE_DIR / "intentions.jsonl").read_text(encoding="utf-8").splitlines()[:120]
    (d / "intentions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    asins = {json.loads(ln)[k]["asin"] for ln in lines for k in ("product_a", "product_b")}
    prods = [
        ln
        for ln in (SAMPLE_DIR / "products.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(ln)["asin"] in asins
    ]
    (d / "products.jsonl").write_text("\n".join(prods) + "\n", encoding="utf-8")
    return d


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: loads a real local model (seconds to a minute); once per session")
