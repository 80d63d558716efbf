"""The pages as a newcomer meets them, in a real browser (Playwright driving Debian's Chromium):
each page holds its shape at 1,280 and 390 px (no horizontal overflow), the builder offers
only defaults that pass and lets steps move, the status page groups failures and says what to
do when the broker is down, the sign-up page states its rules and the API docs describe every
parameter. Screenshots: /tmp/engine-web-screens/shape-*.png."""
from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import NEEDS_CHROMIUM, logged_in
from cluster_helpers import free_port
from web_helpers import DATA, User, WebServer, jpeg, wait_batch

from engine.web import auth

SHOTS = Path("/tmp/engine-web-screens")
WIDTHS_PX = (1280, 390)
# Written short; the broker keeps it in the canonical form (every parameter spelt out).
FAILING_PIPELINE = "resize:width=64|grayscale|blur:sigma=2.5|sharpen|png"

pytestmark = [pytest.mark.timeout(150), NEEDS_CHROMIUM]


@pytest.fixture(scope="module")
def web(cached_web):
    """A broker with its result cache on (the job page's "who made it" is about it) and the gateway."""
    return cached_web


@pytest.fixture(scope="module")
def hana(web):
    user = User(web, "hana")
    yield user
    user.close()


@pytest.fixture(scope="module")
def jobs(hana):
    """A done job, the same again from the cache, and three images failing the same way."""
    done = batch(hana, "edge:low=40|png", {"rocket.jpg": jpeg("rocket.jpg")})["jobs"][0]
    cached = batch(hana, "edge:low=40|png", {"rocket.jpg": jpeg("rocket.jpg")})["jobs"][0]
    broken = {f"broken-{i}.jpg": b"\xff\xd8\xff not a jpeg %d" % i for i in range(3)}
    failed = batch(hana, FAILING_PIPELINE, broken)["jobs"]
    assert done["status"] == "done" and cached["cached"] and all(j["status"] == "failed" for j in failed)
    return {"done": done, "cached": cached}


def batch(user: User, pipeline: str, files: dict[str, bytes]) -> dict:
    r = user.api.post("/api/v1/batches", data={"pipeline": pipeline},
                      files=[("images", (name, data, "image/jpeg")) for name, data in files.items()])
    assert r.status_code == 202, r.text
    return wait_batch(user.api, r.json()["id"])


def assert_fits(page, name: str, width_px: int) -> None:
    """No horizontal overflow: the document is no wider than the window. Screenshot first."""
    page.screenshot(path=str(SHOTS / f"shape-{name}-{width_px}.png"), full_page=True)
    scroll_px, inner_px = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_px <= inner_px, f"{name} at {width_px} px is {scroll_px} px wide"


def right_edge_px(page, selector: str) -> float:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return box["x"] + box["width"]


@pytest.mark.parametrize("width_px", WIDTHS_PX)
def test_every_page_holds_its_shape(chromium, web, hana, jobs, width_px):
    page = logged_in(chromium, web, hana, width=width_px)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto("/status")
    row = page.locator("#failures tr", has_text="3 ×")
    row.first.wait_for()  # the three identical failures are one row
    text = row.first.text_content()
    assert "bad_image" in text and FAILING_PIPELINE in text
    assert "interpolation=" not in page.text_content("#failures")  # not the canonical form
    page.wait_for_function("() => document.querySelector('#updated').textContent.startsWith('Updated')")
    assert_fits(page, "status", width_px)

    page.goto("/history")
    assert_fits(page, "history", width_px)
    if width_px < 600:  # stacked: When, Status, Re-run and Delete are inside the window
        for selector in ('td[data-label="When"]', 'td[data-label="Status"]', "td.actions button.danger",
                         "td.actions form[action$='/rerun'] button"):
            assert page.locator(selector).first.is_visible() and right_edge_px(page, selector) <= width_px, selector

    page.goto(f"/jobs/{jobs['cached']['id']}")
    assert_fits(page, "job", width_px)
    page.goto("/upload")
    page.click("#add-step")
    assert_fits(page, "upload", width_px)
    page.goto("/api/v1/docs")
    page.locator("details.endpoint", has_text="/api/v1/process").locator("summary").click()
    assert_fits(page, "docs", width_px)
    assert not errors, errors
    page.context.close()


def test_job_page_says_one_thing_about_who_made_the_result(chromium, web, hana, jobs):
    page = logged_in(chromium, web, hana)
    page.goto(f"/jobs/{jobs['cached']['id']}")
    source = page.text_content("#job-source")
    assert "from the result cache" in source and "worker vm" not in page.text_content("main p")
    assert "no worker ran" in page.text_content("figure.output figcaption")
    page.goto(f"/jobs/{jobs['done']['id']}")
    assert page.text_content("#job-source").startswith("made by worker ")
    assert "at the worker" in page.text_content("figure.output figcaption")
    page.context.close()


def test_builder_defaults_pass_steps_reorder_and_the_batch_succeeds(chromium, web, hana):
    page = logged_in(chromium, web, hana)
    assert page.input_value("#op-select") == "resize"  # a common operation first, not anonymize
    for op in ("resize", "sharpen", "faces"):
        page.select_option("#op-select", op)
        page.click("#add-step")
    assert page.input_value('li.step[data-op="resize"] input[data-param="width"]') == "640"
    assert page.input_value("#pipeline") == "resize:width=640|sharpen|faces"
    page.click('button[aria-label="move up step 3"]')  # faces above sharpen
    assert page.input_value("#pipeline") == "resize:width=640|faces|sharpen"
    assert [s.get_attribute("data-op") for s in page.locator("li.step").all()] == ["resize", "faces", "sharpen"]
    page.click('button[aria-label="move down step 1"]')  # resize below faces
    assert page.input_value("#pipeline") == "faces|resize:width=640|sharpen"
    page.click('button[aria-label="move up step 2"]')
    page.click('button[aria-label="move down step 2"]')
    assert page.input_value("#pipeline") == "resize:width=640|sharpen|faces"
    page.set_input_files("#images", [DATA / "coffee.jpg", DATA / "astronaut.jpg"])
    page.screenshot(path=str(SHOTS / "shape-builder-defaults.png"), full_page=True)
    page.click("#process")
    page.wait_for_url("**/batches/*")
    page.wait_for_function("() => document.querySelector('#batch-count').textContent.startsWith('2 of 2')")
    assert "failed" not in page.text_content("#batch-count")
    assert page.locator("article.job[data-status=done]").count() == 2
    page.context.close()


def test_sign_up_page_states_the_rules_before_submitting(chromium, web):
    context = chromium.new_context(base_url=web.url, viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.goto("/signup")
    assert page.text_content("#name-rule") == auth.NAME_RULE_TEXT
    assert f"{auth.MIN_NAME_CHARS} to {auth.MAX_NAME_CHARS}" in auth.NAME_RULE_TEXT
    assert page.text_content("#password-rule") == auth.PASSWORD_RULE_TEXT
    assert str(auth.MIN_PASSWORD_CHARS) in auth.PASSWORD_RULE_TEXT
    assert page.get_attribute("#name", "minlength") == str(auth.MIN_NAME_CHARS)
    assert page.get_attribute("#password", "minlength") == str(auth.MIN_PASSWORD_CHARS)
    assert page.get_attribute("#name", "aria-describedby") == "name-rule"
    assert_fits(page, "signup", 390)
    page.goto("/login")
    assert page.locator("#name-rule").count() == 0  # the log-in page does not lecture
    context.close()


def test_api_docs_describe_every_parameter_and_offer_history_as_a_choice(chromium, web):
    context = chromium.new_context(base_url=web.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/api/v1/docs")
    endpoint = page.locator("details.endpoint", has_text="/api/v1/process")
    endpoint.locator("summary").click()
    history = endpoint.locator('select[data-name="history"]')
    assert history.locator("option").all_text_contents() == ["true (default)", "false"]
    assert history.input_value() == "true"
    label = endpoint.locator("label.param", has=page.locator('select[data-name="history"]'))
    assert "keep nothing of this request" in label.text_content()  # the parameter's own description
    for name in ("pipeline", "name"):
        field = endpoint.locator("label.param", has=page.locator(f'[data-name="{name}"][data-where="query"]'))
        assert " · " in field.text_content()
    jobs = page.locator("details.endpoint", has_text="Your history, newest first")
    jobs.locator("summary").click()
    assert "at most this many jobs" in jobs.text_content() and "max 200" in jobs.text_content()
    page.screenshot(path=str(SHOTS / "shape-docs-history-choice.png"), full_page=True)
    context.close()


def test_status_page_says_what_to_do_when_the_broker_is_down(chromium, tmp_path):
    dead = f"tcp://127.0.0.1:{free_port()}"
    server = WebServer(tmp_path, dead, broker_check_timeout_s=0.5).start()
    user = User(server, "ivan")
    try:
        for width_px in WIDTHS_PX:
            page = logged_in(chromium, server, user, width=width_px)
            page.goto("/status")
            assert "not reachable" in page.text_content("#status-line")
            advice = page.locator("#status-advice")
            assert advice.is_visible()
            text = advice.text_content()
            assert "engine-broker" in text and "make run" in text and dead in text
            assert_fits(page, "status-broker-down", width_px)
            page.context.close()
    finally:
        user.close()
        server.stop()
