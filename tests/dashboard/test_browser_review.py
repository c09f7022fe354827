"""Playwright in Debian Chromium: two annotators rate in two browser sessions of one dashboard at the same time;
every click lands in the review database under the right name, and neither session is offered what it rated."""

from __future__ import annotations

import re

import pytest
from browser_support import CHROMIUM, CHROMIUM_FLAGS, screenshot, streamlit_server

from mind_core.review.store import ReviewStore

pytestmark = pytest.mark.browser
ROUNDS = 4


def test_two_annotators_in_two_browser_sessions(sample_kb_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    db = tmp_path / "review.sqlite"
    env = {"MIND_KB": str(sample_kb_dir), "MIND_REVIEW_DB": str(db), "MIND_USER_DATA": str(tmp_path / "user")}
    with streamlit_server(env) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            pages = {}
            for name in ("alice", "bob"):
                page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
                page.goto(f"{base}/review", wait_until="domcontentloaded")
                box = page.get_by_placeholder("e.g. alice")
                box.wait_for(timeout=90_000)
                box.fill(name)
                box.press("Enter")
                page.get_by_role("button", name="✗ Not plausible").wait_for(timeout=60_000)
                pages[name] = page
            seen = {name: [] for name in pages}
            for k in range(ROUNDS):
                # both sessions click before either waits: the two answers reach the server together
                for name, page in pages.items():
                    seen[name].append(page.get_by_test_id("stMainBlockContainer").locator("h4").first.inner_text())
                    label = "✗ Not plausible" if (k + (name == "bob")) % 2 else f"✓ {k + 1}"
                    page.get_by_role("button", name=label).click()
                for name, page in pages.items():  # the progress moved on and a new card replaced the old one
                    page.wait_for_function(
                        """([n, before]) => {
                            const h = document.querySelector('[data-testid=stMainBlockContainer] h4');
                            return document.body.innerText.includes(n + ' of 3,397 rated in this queue')
                                && h && h.innerText !== before;
                        }""",
                        arg=[str(k + 1), seen[name][-1]],
                        timeout=60_000,
                    )
            for name, page in pages.items():
                assert page.locator("[data-testid=stException]").count() == 0
                assert len(set(seen[name])) == ROUNDS  # a new intention after every answer
                screenshot(page, f"review-{name}")
            store = ReviewStore(f"sqlite:///{db}")
            assert store.annotators("sample") == {"alice": ROUNDS, "bob": ROUNDS}
            assert store.rated_ids("sample", "alice") == store.rated_ids("sample", "bob")  # one seeded queue
            answers = store.answers("sample")
            assert set(answers["typicality"].dropna().astype(int)) <= set(range(1, ROUNDS + 1))
            assert re.search(r"\d", pages["alice"].inner_text("body"))
        finally:
            browser.close()
