"""Playwright in Debian Chromium: home → Products (deep link) → click a partner → Search a query → Categories
charts; and an unreachable product image shows the placeholder quickly. Screenshots go to test-artifacts/."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from browser_support import chromium_page, screenshot, streamlit_server

pytestmark = pytest.mark.browser


def _wait_text(page, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function("t => document.body.innerText.includes(t)", arg=text, timeout=timeout)


def _grid_cells(page) -> list[str]:
    return page.eval_on_selector_all("[data-testid=stDataFrame] td", "els => els.map(e => e.textContent)")


def test_walk_home_products_search_categories(sample_kb_dir, sample_kb, tmp_path):
    titles = sample_kb.products["title"]
    env = {"MIND_KB": str(sample_kb_dir), "MIND_CACHE_DIR": str(tmp_path / "cache")}
    with streamlit_server(env) as base, chromium_page() as page:
        page.goto(base, wait_until="domcontentloaded")
        page.wait_for_selector("[data-testid=stMetric]", timeout=90_000)
        _wait_text(page, "3,397")
        screenshot(page, "pages-0-home")

        page.goto(f"{base}/products?asin=B004I41M6K", wait_until="domcontentloaded")
        _wait_text(page, titles["B004I41M6K"], 90_000)
        _wait_text(page, "Co-buy partners")
        page.wait_for_selector("[data-testid=stImage] img", timeout=30_000)
        screenshot(page, "pages-1-product")

        page.get_by_role("button", name="Open partner →").first.click()
        _wait_text(page, "Aviator Pilot Cap Adult Hat Brown with Buckle")
        page.wait_for_function("location.search.includes('asin=B00DGBVAOK')", timeout=30_000)
        page.wait_for_function(
            "document.querySelector('h2') && document.querySelector('h2').innerText"
            ".startsWith('Aviator Pilot Cap Adult Hat')",
            timeout=30_000,
        )
        page.wait_for_selector("button:has-text('Open partner')", timeout=30_000)
        screenshot(page, "pages-2-partner")
        body = page.inner_text("body")
        assert "B004I41M6K" in body  # the product we came from is now listed as its partner

        page.goto(f"{base}/search", wait_until="domcontentloaded")
        box = page.get_by_label("Query")
        box.wait_for(timeout=60_000)
        page.get_by_test_id("stRadioGroup").get_by_text("keyword", exact=True).click()
        box.fill("comfortable")
        box.press("Enter")
        page.wait_for_selector("[data-testid=stDataFrame]", timeout=60_000)
        _wait_text(page, "Rows 1–25 of")
        page.wait_for_function("document.querySelectorAll('[data-testid=stDataFrame] td').length > 20", timeout=30_000)
        page.wait_for_selector("[data-testid=stNumberInput]", timeout=30_000)  # pagination
        page.wait_for_selector("[data-testid=stDownloadButton]", timeout=30_000)  # export
        cells = " ".join(_grid_cells(page))
        assert "comfortable" in cells.lower()
        screenshot(page, "pages-3-search")

        page.goto(f"{base}/categories", wait_until="domcontentloaded")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=90_000)
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
        _wait_text(page, "Matching intentions")
        page.wait_for_timeout(1500)  # let plotly finish drawing before the screenshot
        screenshot(page, "pages-4-categories")
        page.locator(".js-plotly-plot").nth(4).scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        screenshot(page, "pages-4b-categories-map")
        page.get_by_text("Matching intentions").scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        screenshot(page, "pages-4c-categories-table")


def test_unreachable_image_shows_placeholder_quickly(tmp_path):
    """A KB whose product image URL is unreachable: the product page renders the placeholder in < 3 s."""
    from mind_core.kb.build import build_kb

    inp = tmp_path / "in"
    inp.mkdir()
    pd.DataFrame(
        [
            {
                "asin": "IMGTEST001",
                "title": "Placeholder probe",
                "description": "d",
                "image_urls": ["http://127.0.0.1:9/x.jpg"],
                "category": "Test",
            },
            {"asin": "IMGTEST002", "title": "Partner probe", "description": "d", "image_urls": [], "category": "Test"},
        ]
    ).to_json(inp / "products.jsonl", orient="records", lines=True)
    pd.DataFrame(
        [
            {
                "intention_id": "i1",
                "asin_a": "IMGTEST001",
                "asin_b": "IMGTEST002",
                "relation": "usedFor",
                "intention": "they are both used for testing",
                "verdict": "yes",
                "reason": "Yes.",
            }
        ]
    ).to_json(inp / "intentions.jsonl", orient="records", lines=True)
    kb_dir = tmp_path / "kb"
    build_kb([inp], kb_dir, progress=False, index_kind="flat")
    env = {"MIND_KB": str(kb_dir), "MIND_CACHE_DIR": str(tmp_path / "cache")}
    with streamlit_server(env) as base, chromium_page() as page:
        page.goto(f"{base}/products?asin=IMGTEST002", wait_until="domcontentloaded")  # no image URL at all
        _wait_text(page, "Partner probe", 90_000)
        page.wait_for_selector("button:has-text('Open partner')", timeout=30_000)
        t = time.perf_counter()
        page.get_by_role("button", name="Open partner →").click()  # same session: no page reload in the timing
        page.wait_for_function(
            "document.querySelector('h2') && document.querySelector('h2').innerText.startsWith('Placeholder probe')",
            timeout=30_000,
        )
        _wait_text(page, "Image unavailable", 30_000)
        page.wait_for_selector("[data-testid=stImage] img", timeout=10_000)
        elapsed = time.perf_counter() - t
        assert "Placeholder probe" in page.inner_text("body")
        screenshot(page, "pages-5-image-placeholder")
    assert elapsed < 3.0, f"placeholder took {elapsed:.1f} s"
