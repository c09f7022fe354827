"""Playwright in Debian Chromium: `streamlit run app.py` serves the home page with the sample KB counts."""
from __future__ import annotations

import pytest

from browser_support import chromium_page, screenshot, streamlit_server

pytestmark = pytest.mark.browser


def test_home_page_in_chromium(sample_kb_dir):
    with streamlit_server({"MIND_KB": str(sample_kb_dir)}) as base, chromium_page() as page:
        page.goto(base, wait_until="domcontentloaded")
        page.wait_for_selector("[data-testid=stMetric]", timeout=90_000)
        page.wait_for_function("document.body.innerText.includes('3,397')", timeout=60_000)
        text = page.inner_text("body")
        for expected in ("MIND Explorer", "Intentions", "3,397", "2,974", "5,472", "1,487"):
            assert expected in text
        screenshot(page, "home")
