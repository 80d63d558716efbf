"""Playwright driving Debian's Chromium, shared by the browser tests (apt-get install chromium)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NEEDS_CHROMIUM = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing: apt-get install "
                                    "-y chromium (the browser tests drive Debian's Chromium)")


@contextlib.contextmanager
def launched(shots: Path):
    """A headless Chromium for a module's tests; screenshots go to ``shots``."""
    from playwright.sync_api import sync_playwright

    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def logged_in(chromium, web, user, *, width: int = 1200, javascript: bool = True):
    """A page of a fresh browser context, logged in as ``user`` (a web_helpers.User)."""
    from web_helpers import PASSWORD

    context = chromium.new_context(base_url=web.url, viewport={"width": width, "height": 900},
                                   java_script_enabled=javascript)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/login")
    page.fill("#name", user.name)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url("**/upload")
    return page
