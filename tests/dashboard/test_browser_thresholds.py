"""Playwright in Debian Chromium: the Filter thresholds page renders its charts and tables on the sample KB (it opens
on the shipped critic, a probability: the reliability curve is the fifth chart)."""

from __future__ import annotations

import pytest
from browser_support import chromium_page, screenshot, streamlit_server

pytestmark = pytest.mark.browser


def test_thresholds_page_in_chromium(sample_kb_dir):
    with streamlit_server({"MIND_KB": str(sample_kb_dir)}) as base, chromium_page() as page:
        page.goto(base, wait_until="domcontentloaded")  # start the session on Home, as a user would
        page.wait_for_selector("[data-testid=stMetric]", timeout=90_000)
        page.goto(f"{base}/thresholds", wait_until="domcontentloaded")
        page.wait_for_selector("text=Intentions that flip between A and B", timeout=90_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=60_000)
        page.wait_for_timeout(1500)  # let plotly finish drawing
        text = page.inner_text("body")
        for expected in (
            "Filter thresholds",
            "Threshold A",
            "Threshold B",
            "Counts per relation",
            "The paper's rule, for reference",
            "1,487 of 3,397",
            "P(keep) of a critic learned from a KB's verdicts",  # the page opens on the critic
            "At MIND's kept share",
            "Reliability of critic",
        ):
            assert expected in text, expected
        assert page.locator("[data-testid=stException]").count() == 0
        page.set_viewport_size({"width": 1400, "height": 4300})  # the app scrolls inside a container: show it all
        page.wait_for_timeout(1500)
        screenshot(page, "thresholds")
