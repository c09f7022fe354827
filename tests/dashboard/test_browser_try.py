"""Playwright in Debian Chromium: Try a product with the fake OpenAI server (configured by environment variables):
upload two generated PNGs with titles, run, see the results, save, find the saved row in Search; a corrupt upload
gets its message. Screenshots go to test-artifacts/try-*.png."""

from __future__ import annotations

import io

import pytest
from browser_support import chromium_page, screenshot, streamlit_server
from PIL import Image, ImageDraw

pytestmark = pytest.mark.browser


def _wait_text(page, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function("t => document.body.innerText.includes(t)", arg=text, timeout=timeout)


def _png(path, colour, label: str):
    im = Image.new("RGB", (320, 240), "white")
    d = ImageDraw.Draw(im)
    d.ellipse([60, 30, 260, 200], fill=colour)
    d.text((120, 215), label, fill="black")
    im.save(path, "PNG")
    return str(path)


def test_try_a_product_in_chromium(sample_kb_dir, fake_openai, tmp_path):
    mug = _png(tmp_path / "mug.png", (200, 40, 40), "MUG")
    coaster = _png(tmp_path / "coaster.png", (40, 40, 200), "COASTER")
    corrupt = tmp_path / "broken.png"
    buf = io.BytesIO()
    Image.new("RGB", (50, 50), "green").save(buf, "PNG")
    corrupt.write_bytes(buf.getvalue()[:80])  # a PNG cut short

    env = {
        "MIND_KB": str(sample_kb_dir),
        "MIND_CACHE_DIR": str(tmp_path / "cache"),
        "MIND_USER_DATA": str(tmp_path / "user"),
        "MIND_BACKEND": "openai",
        "MIND_OPENAI_ENDPOINT": fake_openai.url,
    }
    with streamlit_server(env) as base, chromium_page() as page:
        page.goto(base, wait_until="domcontentloaded")
        page.get_by_role("link", name="Try a product").first.click(timeout=90_000)
        _wait_text(page, "Product A", 90_000)
        _wait_text(page, "openai · the server's first model at")
        uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
        uploads.first.wait_for(state="attached", timeout=30_000)

        # a corrupt file: its message, nothing else lost
        uploads.nth(0).set_input_files(str(corrupt))
        _wait_text(page, "The image file is corrupt")
        page.wait_for_function("document.querySelectorAll('textarea').length >= 2", timeout=30_000)
        screenshot(page, "try-0-corrupt")
        page.get_by_test_id("stFileChipDeleteBtn").first.click()
        page.wait_for_function("!document.body.innerText.includes('The image file is corrupt')", timeout=30_000)

        uploads.nth(0).set_input_files(mug)
        _wait_text(page, "mug.png")
        uploads.nth(1).set_input_files(coaster)
        _wait_text(page, "coaster.png")
        try:
            page.wait_for_function("document.querySelectorAll('[data-testid=stImage] img').length >= 2", timeout=30_000)
        finally:
            screenshot(page, "try-0b-uploaded")
        titles = page.get_by_label("Title (required)")
        titles.nth(0).fill("Red ceramic mug")
        titles.nth(0).press("Tab")
        titles.nth(1).fill("Blue cork coaster")
        titles.nth(1).press("Tab")
        page.wait_for_timeout(500)
        page.get_by_role("button", name="Run MIND").click()
        _wait_text(page, "Results", 90_000)
        _wait_text(page, "Similar intentions already in the KB", 90_000)
        body = page.inner_text("body")
        assert "Stage 3 · role-aware filter — 3/3" in body and "P(yes) 0.84" in body
        assert "The potential co-buy intention could be they are both used for" in body
        page.set_viewport_size({"width": 1400, "height": 3200})  # the page scrolls inside; show all of it
        page.wait_for_timeout(500)
        screenshot(page, "try-1-results")

        page.get_by_role("button", name="Save into my KB").click()
        _wait_text(page, "Saved (3 new) into the user KB", 90_000)
        screenshot(page, "try-2-saved")
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.get_by_role("button", name="Load my KB and open Search").click()
        box = page.get_by_label("Query")
        box.wait_for(timeout=60_000)
        _wait_text(page, "my-products")  # the sidebar shows the user KB is loaded
        page.get_by_test_id("stRadioGroup").get_by_text("keyword", exact=True).click()
        box.fill("outdoor")
        box.press("Enter")
        page.wait_for_selector("[data-testid=stDataFrame]", timeout=60_000)
        page.wait_for_function("document.querySelectorAll('[data-testid=stDataFrame] td').length > 3", timeout=30_000)
        cells = " ".join(
            page.eval_on_selector_all("[data-testid=stDataFrame] td", "els => els.map(e => e.textContent)")
        )
        assert "Red ceramic mug" in cells and "Blue cork coaster" in cells and "usedFor" in cells
        screenshot(page, "try-3-search")

        # back on the page: the run, the inputs and the uploads are still there
        page.get_by_role("link", name="Try a product").first.click()
        _wait_text(page, "Images kept from before: mug.png", 60_000)
        _wait_text(page, "Results")
        page.wait_for_function(
            "() => [...document.querySelectorAll('input')].some(e => e.value === 'Red ceramic mug')", timeout=30_000
        )
        screenshot(page, "try-4-back")
