"""The pages in a real browser: Playwright driving Debian's Chromium (apt-get install chromium).

Screenshots go to /tmp/engine-web-screens/. Skipped only when /usr/bin/chromium is missing.
"""
import time
from pathlib import Path

import pytest
from browser_helpers import NEEDS_CHROMIUM
from web_helpers import DATA, PASSWORD

SHOTS = Path("/tmp/engine-web-screens")

pytestmark = [pytest.mark.timeout(120), NEEDS_CHROMIUM]


def new_page(chromium, web):
    context = chromium.new_context(base_url=web.url, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def sign_up(page, name: str) -> None:
    page.goto("/signup")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url("**/upload")
    assert page.text_content("#who") == name


def drop_files(page, paths: list[Path]) -> None:
    """Drag and drop: a real DataTransfer with File objects, dropped on the drop zone."""
    files = [{"name": p.name, "bytes": list(p.read_bytes())} for p in paths]
    page.evaluate("""(files) => {
        const dt = new DataTransfer();
        for (const f of files) dt.items.add(new File([new Uint8Array(f.bytes)], f.name, {type: "image/jpeg"}));
        const zone = document.querySelector("#drop");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", files)


def test_sign_up_build_pipeline_drop_images_see_results_and_history(chromium, web):
    page = new_page(chromium, web)
    sign_up(page, "alice")
    # Build "grayscale | edge(low=40)" with the generated forms.
    page.select_option("#op-select", "grayscale")
    page.click("#add-step")
    page.select_option("#op-select", "edge")
    page.click("#add-step")
    low = page.locator('li.step[data-op="edge"] input[data-param="low"]')
    assert low.get_attribute("min") == "0"
    low.fill("40")
    pipeline = page.input_value("#pipeline")
    assert pipeline.startswith("grayscale|edge:") and "low=40" in pipeline
    drop_files(page, [DATA / "coffee.jpg", DATA / "rocket.jpg"])
    assert page.locator("#chosen li").count() == 2
    page.screenshot(path=str(SHOTS / "1-builder.png"), full_page=True)

    started = time.perf_counter()
    page.click("#process")
    page.wait_for_url("**/batches/*")
    page.wait_for_function("() => document.querySelector('#batch-count').textContent.startsWith('2 of 2')")
    page.wait_for_function("() => [...document.querySelectorAll('figure.output img')].length == 2 && "
                           "[...document.querySelectorAll('figure.output img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    latency_s = time.perf_counter() - started
    print(f"page-to-result latency for 2 images: {latency_s * 1000:.0f} ms")
    assert page.locator("#batch-progress").get_attribute("value") == "2"
    assert page.is_visible("#zip")
    caption = page.text_content("figure.output figcaption")
    assert "ms at the worker" in caption and "600×400" in page.content()
    page.screenshot(path=str(SHOTS / "2-batch.png"), full_page=True)

    page.click("text=History")
    page.wait_for_url("**/history")
    rows = page.locator("table.history tbody tr")
    assert rows.count() == 2
    page.wait_for_function("() => [...document.querySelectorAll('img.thumb')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    assert "low=40" in page.text_content("table.history")
    page.screenshot(path=str(SHOTS / "3-history.png"), full_page=True)

    # Open one job, re-run it, then delete the original.
    rows.first.locator("td:nth-child(2) a").click()
    page.wait_for_url("**/jobs/*")
    job_url = page.url
    page.click("button:has-text('Re-run')")
    page.wait_for_url("**/batches/*")
    page.wait_for_function("() => document.querySelector('#batch-count').textContent.startsWith('1 of 1')")
    page.goto(job_url)
    page.once("dialog", lambda dialog: dialog.accept())  # "Delete ...? This cannot be undone."
    page.click("button:has-text('Delete')")
    page.wait_for_url("**/history")
    assert page.locator("table.history tbody tr").count() == 2  # two left: one original, one re-run
    page.context.close()


def test_log_in_bad_input_and_a_second_user_sees_nothing(chromium, web):
    page = new_page(chromium, web)
    page.goto("/login")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url("**/upload")
    # An invalid pipeline: the page says why, with the right status.
    page.fill("#pipeline", "grayscale|sharpen:amount=banana")
    page.set_input_files("#images", [str(DATA / "coins.jpg")])
    # The form is sent from the page: the refusal shows above it and the chosen file stays.
    with page.expect_response(lambda r: r.url.endswith("/upload") and r.request.method == "POST") as answer:
        page.click("#process")
    assert answer.value.status == 422
    page.wait_for_selector("#error")
    assert "amount" in page.text_content("#error")
    assert page.evaluate("document.querySelector('#images').files.length") == 1
    page.screenshot(path=str(SHOTS / "4-bad-pipeline.png"), full_page=True)
    # A file that is not an image: its card says so.
    not_image = Path("/tmp/engine-web-screens/notes.jpg")
    not_image.write_text("this is text, not a picture")
    page.fill("#pipeline", "grayscale")
    page.set_input_files("#images", [str(not_image)])
    page.click("#process")
    page.wait_for_url("**/batches/*")
    page.wait_for_selector(".job .message.error")
    assert "not an image" in page.text_content(".job .message.error")
    alice_job = page.locator(".job").first.get_attribute("data-job")
    page.goto("/history")
    alice_names = page.text_content("table.history")
    assert "coffee.jpg" in alice_names
    page.context.close()

    bob = new_page(chromium, web)
    sign_up(bob, "bob")
    bob.goto("/history")
    assert bob.is_visible("#empty") and "coffee.jpg" not in bob.content()
    response = bob.goto(f"/jobs/{alice_job}")
    assert response.status == 404 and "No such job" in bob.text_content("#error")
    response = bob.goto(f"/api/v1/jobs/{alice_job}/input")
    assert response.status == 404
    bob.goto("/history")
    bob.screenshot(path=str(SHOTS / "5-second-user.png"), full_page=True)
    bob.context.close()


def test_status_page_refreshes_live(chromium, web):
    page = new_page(chromium, web)
    sign_up(page, "carol")
    page.goto("/status")
    assert "is up" in page.text_content("#status-line")
    page.wait_for_function("() => document.querySelector('#updated').textContent.startsWith('Updated')", timeout=8000)
    assert page.locator("#workers tr").count() >= 1
    assert page.text_content("#workers tr td:nth-child(3)") in ("idle", "busy")
    page.screenshot(path=str(SHOTS / "6-status.png"), full_page=True)
    page.context.close()
