"""The live status page in a real browser (Playwright driving Debian's Chromium): the charts
and the throughput move while tasks run, a failed task appears in the recent failures, and
the page without JavaScript is the server's snapshot. Screenshots: /tmp/shots/status-*.png."""
from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import NEEDS_CHROMIUM, logged_in
from web_helpers import User, jpeg, wait_batch

SHOTS = Path("/tmp/shots")
BROKEN_JPEG = b"\xff\xd8\xff not a jpeg"

pytestmark = [pytest.mark.timeout(90), NEEDS_CHROMIUM]


@pytest.fixture(scope="module")
def frank(web):
    user = User(web, "frank")
    try:
        yield user
    finally:
        user.close()


def submit(user: User, pipeline: str, files: dict[str, bytes]) -> str:
    r = user.api.post("/api/v1/batches", data={"pipeline": pipeline},
                      files=[("images", (name, data, "image/jpeg")) for name, data in files.items()])
    assert r.status_code == 202, r.text
    return r.json()["id"]


def series_points(page, chart: str, series: str) -> int:
    """How many points the chart's line for ``series`` has (0 when it has none)."""
    return page.evaluate("""([chart, series]) => {
        const path = document.querySelector(`#${chart} path[data-series="${series}"]`);
        return path ? (path.getAttribute("d").match(/[ML]/g) || []).length : 0;
    }""", [chart, series])


def test_status_page_charts_and_throughput_move_and_a_failure_is_listed(chromium, web, frank):
    page = logged_in(chromium, web, frank)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto("/status")
    page.wait_for_function("() => document.querySelector('#updated').textContent.startsWith('Updated')")
    assert page.text_content("#live-note").startswith("Live")
    page.wait_for_function("() => Number(document.querySelector('#chart-queue').dataset.points) >= 3")
    before = page.evaluate("Number(document.querySelector('#chart-throughput').dataset.points)")
    page.screenshot(path=str(SHOTS / "status-idle.png"), full_page=True)

    batch_id = submit(frank, "grayscale|blur:sigma=3|sharpen:amount=1", {f"c{i}.jpg": jpeg() for i in range(16)})
    assert all(j["status"] == "done" for j in wait_batch(frank.api, batch_id)["jobs"])
    page.wait_for_function("() => parseFloat(document.querySelector('#throughput').textContent) > 0")
    page.wait_for_function("() => Number(document.querySelector('#chart-throughput').dataset.max) >= 1")
    page.wait_for_selector('#chart-latency path[data-series="p95"]', state="attached")
    assert page.evaluate("Number(document.querySelector('#chart-throughput').dataset.points)") > before
    assert series_points(page, "chart-throughput", "completed") >= 2
    assert int(page.text_content("#tasks-done")) >= 16
    assert page.text_content("#workers tr td:nth-child(4)") == "2"  # processes of the one local host
    assert "CPU and memory" in page.text_content("#host-resources")
    page.screenshot(path=str(SHOTS / "status-live.png"), full_page=True)

    failed_id = submit(frank, "grayscale|png", {"broken.jpg": BROKEN_JPEG})
    assert wait_batch(frank.api, failed_id)["jobs"][0]["status"] == "failed"
    row = page.locator("#failures tr", has_text="grayscale|png")
    row.first.wait_for()
    cells = row.first.locator("td").all_text_contents()
    assert cells[0].endswith("UTC") and cells[2].startswith("grayscale|png") and cells[3]
    assert cells[1].startswith("1 × ") and ": " in cells[1]  # count, code and message in one cell
    assert "fresh" in (row.first.get_attribute("class") or "")  # it came in while the page was open
    page.wait_for_function("() => parseInt(document.querySelector('#tasks-failed').textContent) >= 1")
    page.screenshot(path=str(SHOTS / "status-failure.png"), full_page=True)
    assert not errors, errors  # no CSP violation or script error on the way
    page.context.close()


def test_status_page_without_javascript_is_a_snapshot_with_charts(chromium, web, frank):
    page = logged_in(chromium, web, frank, javascript=False)
    page.goto("/status")
    assert "is up" in page.text_content("#status-line")
    assert page.locator("svg.chart").count() == 3
    assert page.text_content("#live-note").startswith("A snapshot")
    assert page.locator("#workers tr").count() >= 1
    page.screenshot(path=str(SHOTS / "status-nojs.png"), full_page=True)
    page.context.close()
