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


def test_deep_links_route_through_app_navigation(sample_kb_dir):
    """Opening /products?asin=… and /try directly runs them inside app.py's navigation (titles in the menu,
    wide layout), not as stand-alone scripts."""
    with streamlit_server({"MIND_KB": str(sample_kb_dir)}) as base, chromium_page() as page:
        page.goto(f"{base}/products?asin=B004I41M6K", wait_until="domcontentloaded")
        page.wait_for_function("document.body.innerText.includes('Classic Aviator Hat')", timeout=90_000)
        nav = page.inner_text("[data-testid=stSidebarNav]")
        assert "Filter thresholds" in nav and "Try a product" in nav and "try_product" not in nav
        screenshot(page, "deeplink-products")
        page.goto(f"{base}/try_product", wait_until="domcontentloaded")
        page.wait_for_function("document.body.innerText.includes('Try a product')", timeout=90_000)
        assert "Page not found" not in page.inner_text("body")
