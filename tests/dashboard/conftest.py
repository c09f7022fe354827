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
