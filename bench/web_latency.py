"""Page-to-result latency of the web interface, in a real browser.

    .venv/bin/python bench/web_latency.py                  # 10 rounds, one photo, grayscale
    .venv/bin/python bench/web_latency.py --rounds 20 --pipeline "resize:width=640|sharpen|webp"

Starts what ``make run`` starts (``python -m engine.broker --local-workers N --web HOST:PORT``,
on free ports, with a throw-away data folder and the cache off so every round reaches a
worker), signs up a user in Debian's Chromium driven by Playwright, then, each round:
opens the upload page, chooses one image, clicks Process and waits until the output
image is shown (decoded, width > 0). The figure is the time from the click to that moment.
Screenshots of the last round go to ``--shots`` for a person to look at.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.curve_cost import _port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
READY_TIMEOUT_S = 60.0


def wait_ready(url: str) -> None:
    deadline_s = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline_s:
        try:
            if httpx.get(f"{url}/api/v1/operations", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the web gateway at {url} did not answer within {READY_TIMEOUT_S} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds [10]")
    parser.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "coffee.jpg", help="the image")
    parser.add_argument("--pipeline", default="grayscale", help="pipeline [grayscale]")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes [2]")
    parser.add_argument("--shots", type=Path, default=Path("/tmp/engine-web-latency"), help="screenshot folder")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        parser.error(f"{CHROMIUM} is missing: apt-get install -y chromium")

    from playwright.sync_api import sync_playwright

    args.shots.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{_port()}"
    with tempfile.TemporaryDirectory() as data_dir:
        cmd = [sys.executable, "-m", "engine.broker", "--front", f"tcp://127.0.0.1:{_port()}",
               "--back", f"tcp://127.0.0.1:{_port()}", "--local-workers", str(args.workers),
               "--cache-mb", "0", "--web", url.removeprefix("http://"), "--log-level", "warning"]
        env = {**os.environ, "ENGINE_LOG_LEVEL": "warning", "ENGINE_WEB_DATA_DIR": data_dir}
        server = subprocess.Popen(cmd, cwd=ROOT, env=env)
        try:
            wait_ready(url)
            latencies_ms = run_browser(url, args, sync_playwright)
        finally:
            server.terminate()
            server.wait(30)
    print(f"page-to-result, one {args.image.name} through {args.pipeline!r}, {args.rounds} rounds "
          f"(first round dropped as warm-up): median {statistics.median(latencies_ms):.0f} ms, "
          f"min {min(latencies_ms):.0f} ms, max {max(latencies_ms):.0f} ms")
    print(f"screenshots: {args.shots}")
    return 0


def run_browser(url: str, args: argparse.Namespace, sync_playwright) -> list[float]:
    latencies_ms = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_context(base_url=url, viewport={"width": 1200, "height": 900}).new_page()
        page.set_default_timeout(30_000)
        page.goto("/signup")
        page.fill("#name", "bench")
        page.fill("#password", "correct horse battery")
        page.click("#submit")
        page.wait_for_url("**/upload")
        for round_ in range(args.rounds + 1):
            page.goto("/upload")
            page.fill("#pipeline", args.pipeline)
            page.set_input_files("#images", str(args.image))
            started_s = time.perf_counter()
            page.click("#process")
            page.wait_for_url("**/batches/*")
            page.wait_for_function("() => { const i = document.querySelector('figure.output img');"
                                   " return i && i.complete && i.naturalWidth > 0; }")
            if round_:  # the first round warms the browser's and the workers' caches
                latencies_ms.append((time.perf_counter() - started_s) * 1000)
        page.screenshot(path=str(args.shots / "result.png"), full_page=True)
        page.goto("/history")
        page.screenshot(path=str(args.shots / "history.png"), full_page=True)
        page.goto("/status")
        page.wait_for_timeout(2500)
        page.screenshot(path=str(args.shots / "status.png"), full_page=True)
        browser.close()
    return latencies_ms


if __name__ == "__main__":
    sys.exit(main())
