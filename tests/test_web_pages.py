"""The pages' first-hour bugs, in a real browser (Playwright driving Debian's Chromium):
the zip button, long pipelines, phones, cached results, pipelines as written, a rejected
pipeline keeping the chosen files, confirmation before deleting, no re-run of non-images,
detection boxes, and the interactive API docs. Screenshots go to /tmp/shots/."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from browser_helpers import NEEDS_CHROMIUM, logged_in
from cluster_helpers import DATA
from web_helpers import User, jpeg, wait_batch

SHOTS = Path("/tmp/shots")
LONG_PIPELINE = "|".join(["blur:sigma=0.5", "sharpen:amount=0.5"] * 8) + "|png"

pytestmark = [pytest.mark.timeout(120), NEEDS_CHROMIUM]


@pytest.fixture(scope="module")
def web(cached_web):
    """A broker with its result cache on (one test is about it) and the gateway."""
    return cached_web


@pytest.fixture(scope="module")
def carol(web):
    user = User(web, "carol")
    yield user
    user.close()


def page_width_px(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def batch(user: User, pipeline: str, files: dict[str, bytes]) -> dict:
    r = user.api.post("/api/v1/batches", data={"pipeline": pipeline},
                      files=[("images", (name, data, "image/jpeg")) for name, data in files.items()])
    assert r.status_code == 202, r.text
    return wait_batch(user.api, r.json()["id"])


def test_zip_button_only_when_something_finished_and_its_error_is_a_page(chromium, web, carol):
    failed = batch(carol, "grayscale", {"broken.jpg": b"\xff\xd8\xff not a jpeg"})
    done = batch(carol, "grayscale", {"coffee.jpg": jpeg()})
    page = logged_in(chromium, web, carol)
    page.goto(f"/batches/{failed['id']}")
    page.wait_for_selector("#job-" + failed["jobs"][0]["id"] + "[data-status=failed]")
    assert not page.is_visible("#zip")
    page.screenshot(path=str(SHOTS / "zip-hidden-when-nothing-finished.png"), full_page=True)
    answer = page.goto(f"/batches/{failed['id']}/zip")
    assert answer.status == 409 and "text/html" in answer.headers["content-type"]
    assert "No image of this batch has finished yet" in page.text_content("#error")
    page.goto(f"/batches/{done['id']}")
    assert page.is_visible("#zip")
    with page.expect_download() as download:
        page.click("#zip")
    assert download.value.suggested_filename == f"batch-{done['id']}.zip"


def test_long_pipelines_wrap_and_the_builder_fits_a_phone(chromium, web, carol):
    long = batch(carol, LONG_PIPELINE, {"coffee.jpg": jpeg()})
    job_id = long["jobs"][0]["id"]
    page = logged_in(chromium, web, carol)
    for url in ("/history", f"/batches/{long['id']}", f"/jobs/{job_id}"):
        page.goto(url)
        assert page_width_px(page) <= 1200, url
    page.screenshot(path=str(SHOTS / "long-pipeline-job.png"), full_page=True)
    phone = logged_in(chromium, web, carol, width=390)
    for op in ("resize", "edge", "text"):
        phone.select_option("#op-select", op)
        phone.click("#add-step")
    assert phone.locator("li.step").count() == 3
    assert page_width_px(phone) <= 390
    phone.screenshot(path=str(SHOTS / "builder-390px.png"), full_page=True)
    for url in ("/history", f"/jobs/{job_id}"):
        phone.goto(url)
        assert page_width_px(phone) <= 390, url
    phone.screenshot(path=str(SHOTS / "job-390px.png"), full_page=True)


def test_cached_result_says_so_with_this_requests_time_and_pipeline_as_written(chromium, web, carol):
    written = "edge:low=40|png"
    first = batch(carol, written, {"rocket.jpg": jpeg("rocket.jpg")})["jobs"][0]
    second = batch(carol, written, {"rocket.jpg": jpeg("rocket.jpg")})["jobs"][0]
    assert not first["cached"] and second["cached"]
    page = logged_in(chromium, web, carol)
    page.goto(f"/jobs/{second['id']}")
    caption = page.text_content("figure.output figcaption")
    assert "from the result cache" in caption and f"{second['meta']['elapsed_ms']} ms for this request" in caption
    assert "at the worker" not in caption
    assert page.text_content("#job-pipeline") == written
    page.screenshot(path=str(SHOTS / "cached-result.png"), full_page=True)
    page.goto(f"/jobs/{first['id']}")
    assert "at the worker" in page.text_content("figure.output figcaption")
    page.goto("/history")
    assert written in page.text_content("#history")
    assert "aperture" not in page.text_content("#history")  # not the expanded canonical form


def test_a_rejected_pipeline_keeps_the_chosen_files(chromium, web, carol):
    page = logged_in(chromium, web, carol)
    page.set_input_files("#images", [DATA / "coffee.jpg", DATA / "rocket.jpg"])
    page.fill("#pipeline", "greyscale")
    assert "did you mean 'grayscale'?" in page.text_content('li.step[data-op="greyscale"] .unknown-op')  # the builder
    page.click("#process")
    page.wait_for_selector("#error")
    assert "did you mean 'grayscale'?" in page.text_content("#error")
    assert page.evaluate("document.querySelector('#images').files.length") == 2
    assert page.locator("#chosen li").count() == 2
    page.screenshot(path=str(SHOTS / "rejected-pipeline-keeps-files.png"), full_page=True)
    page.fill("#pipeline", "grayscale")
    page.click("#process")
    page.wait_for_url("**/batches/*")
    page.wait_for_function("() => document.querySelectorAll('article.job[data-status=done]').length == 2")


def test_delete_asks_first_and_no_rerun_for_a_file_that_is_not_an_image(chromium, web, carol):
    bad = batch(carol, "grayscale", {"notes.jpg": b"plain text, not an image"})["jobs"][0]
    good = batch(carol, "grayscale", {"coins.jpg": jpeg("coins.jpg")})["jobs"][0]
    page = logged_in(chromium, web, carol)
    page.goto("/history")
    assert page.locator(f'tr[data-job="{bad["id"]}"] form[action$="/rerun"]').count() == 0
    assert page.locator(f'tr[data-job="{good["id"]}"] form[action$="/rerun"]').count() == 1
    assert carol.api.post(f"/api/v1/jobs/{bad['id']}/rerun").status_code == 409
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click(f'tr[data-job="{good["id"]}"] button.danger')
    time.sleep(0.5)  # a dismissed confirm sends nothing; give a stray submit time to show
    assert asked and "cannot be undone" in asked[0]
    assert carol.api.get(f"/api/v1/jobs/{good['id']}").status_code == 200
    page.once("dialog", lambda d: d.accept())
    page.click(f'tr[data-job="{good["id"]}"] button.danger')
    page.wait_for_url("**/history")
    assert carol.api.get(f"/api/v1/jobs/{good['id']}").status_code == 404


def test_job_page_draws_the_detected_faces(chromium, web, carol):
    job = batch(carol, "faces|png", {"astronaut.jpg": jpeg("astronaut.jpg")})["jobs"][0]
    assert job["status"] == "done" and job["detections"], job
    page = logged_in(chromium, web, carol)
    page.goto(f"/jobs/{job['id']}")
    rects = page.locator("svg.boxes rect")
    assert rects.count() == len(job["detections"])
    img = page.locator("figure.output img").bounding_box()
    svg = page.locator("svg.boxes").bounding_box()
    assert abs(img["width"] - svg["width"]) < 2 and abs(img["height"] - svg["height"]) < 2  # boxes over the image
    page.screenshot(path=str(SHOTS / "faces-boxes.png"), full_page=True)
    # The batch page draws them too, as each result arrives.
    page.goto("/upload")
    page.set_input_files("#images", [DATA / "astronaut.jpg"])
    page.fill("#pipeline", "faces|jpeg")
    page.click("#process")
    page.wait_for_url("**/batches/*")
    page.wait_for_selector("article.job[data-status=done] svg.boxes rect")
    assert page.locator("svg.boxes rect").count() == len(job["detections"])
    assert "face(s)" in page.text_content("figure.output figcaption")


def test_api_docs_page_sends_a_request_and_shows_the_image(chromium, web, carol):
    page = logged_in(chromium, web, carol)
    page.goto("/api/v1/docs")
    endpoint = page.locator("details.endpoint", has_text="/api/v1/process")
    endpoint.locator("summary").click()
    endpoint.locator('input[data-name="pipeline"]').fill("grayscale|png")
    endpoint.locator('input[data-name="body"]').set_input_files(DATA / "coffee.jpg")
    endpoint.locator("button[type=submit]").click()
    endpoint.locator("img.answer-image").wait_for()
    assert "HTTP 200" in endpoint.locator(".answer .message").text_content()
    assert "--data-binary" in endpoint.locator("pre.curl").text_content()
    page.screenshot(path=str(SHOTS / "api-docs.png"), full_page=True)
    anonymous = httpx.get(f"{web.url}/api/v1/docs", timeout=10)
    assert anonymous.status_code == 200 and 'data-spec="/api/v1/openapi.json"' in anonymous.text
