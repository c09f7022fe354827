"""Fixtures for the dashboard's AppTests."""

from __future__ import annotations

from pathlib import Path

import pytest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture()
def open_page(sample_kb_dir, monkeypatch, tmp_path):
    """``open_page(page_script, timeout=180, **env)``: the app on the sample KB with fresh cache and user folders,
    switched to ``page_script`` and run once, with ``env`` set for this test."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MIND_KB", str(sample_kb_dir))
    monkeypatch.setenv("MIND_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MIND_USER_DATA", str(tmp_path / "user"))

    def make(page: str, timeout: float = 180, **env: str):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        at = AppTest.from_file(APP, default_timeout=timeout)
        at.switch_page(page)
        return at.run()

    return make


@pytest.fixture()
def run_iqa_lvlm():
    """``run_iqa_lvlm(at, fake_openai, n=5)``: see :func:`_run_iqa_lvlm`."""
    return _run_iqa_lvlm


def _run_iqa_lvlm(at, fake_openai, n: int = 5) -> set[str]:
    """On an opened IntentionQA page: run the ``lvlm`` method on ``n`` questions, check the page shows no error,
    and return the Authorization headers the fake server received for chat completions."""
    at.multiselect(key="iqa_methods").set_value(["lvlm"])
    at.number_input(key="iqa_n").set_value(n)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    chats = [r for r in fake_openai.requests if r["path"].endswith("/chat/completions")]
    assert len(chats) >= n
    return {r["authorization"] for r in chats}
