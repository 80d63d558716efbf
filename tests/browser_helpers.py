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
