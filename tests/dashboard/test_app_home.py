"""AppTest of app.py: the home page shows the loaded KB's counts; a missing KB gives a clear message."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_home_shows_sample_counts(sample_kb_dir, monkeypatch):
    monkeypatch.setenv("MIND_KB", str(sample_kb_dir))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Intentions"] == "3,397" and metrics["Co-buy pairs"] == "2,974"
    assert metrics["Products"] == "5,472" and metrics["Kept by the filter"] == "1,487"
    assert metrics["Relation types"] == "20"
    table = at.dataframe[0].value
    assert table["intentions"].sum() == 3397


def test_home_without_kb_explains_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("MIND_KB", str(tmp_path / "missing"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("does not exist" in e.value for e in at.error)
    assert any("build-kb --input data/mind_sample" in i.value for i in at.info)
