"""AppTest of the try page's "Test backend" button (check-backend in the sidebar)."""

from __future__ import annotations

import pytest

PAGE = "dashboard/views/try_product.py"


@pytest.fixture()
def page(open_page):
    return lambda **env: open_page(PAGE, 120, **env)


def _report(at) -> str:
    return "\n".join(c.value for c in at.sidebar.code)


def test_test_backend_button_reports_every_stage(page, fake_openai):
    fake_openai.set(filter_answer="yes")
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT=fake_openai.url)
    at.button(key="try_check").click().run(timeout=120)
    report = _report(at)
    assert [s.value for s in at.sidebar.success] == ["Backend test: every stage works."]
    for stage in ("connect", "start", "describe", "intend", "filter"):
        assert f"ok   {stage}" in report
    assert "P(yes): 0.842" in report
    # the pair's images went to the server with the describe / intend / filter requests (+ the image probe)
    with_images = [r for r in fake_openai.requests if "image_url" in str(r["body"])]
    assert len(with_images) == 4


def test_test_backend_button_diagnoses_a_server_that_is_down(page):
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT="http://127.0.0.1:9/v1")
    at.button(key="try_check").click().run(timeout=60)
    assert [e.value for e in at.sidebar.error] == ["Backend test: not ready; the report says why."]
    assert "problem [server_down]" in _report(at) and "make serve-local" in _report(at)
