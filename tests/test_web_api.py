"""The /api/v1 endpoints against a real broker with real workers."""
import base64
import io
import json
import time
import zipfile

import cv2
import numpy as np
import pytest
from web_helpers import PASSWORD, User, WebServer, csrf_of, jpeg, wait_batch

from engine import ops

pytestmark = pytest.mark.timeout(90)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return cv2.PSNR(a, b)


def test_process_raw_body_returns_the_grey_image(users):
    alice = users[0]
    r = alice.api.post("/api/v1/process", params={"pipeline": "grayscale|png"}, content=jpeg())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    meta = json.loads(r.headers["x-engine-meta"])
    assert (meta["width"], meta["height"], meta["format"]) == (600, 400, "png")
    got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    want = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    assert got.shape == want.shape and psnr(got, want) > 35
    job = alice.api.get(f"/api/v1/jobs/{r.headers['x-job-id']}").json()
    assert job["status"] == "done" and job["pipeline"] == "grayscale|png"  # as written
    assert job["canonical_pipeline"] == ops.canonical("grayscale|png")


def test_process_with_history_false_keeps_nothing(users):
    alice = users[0]
    before = alice.api.get("/api/v1/jobs").json()["total"]
    r = alice.api.post("/api/v1/process", params={"pipeline": "grayscale|png", "history": "false"}, content=jpeg())
    assert r.status_code == 200, r.text
    assert "x-job-id" not in r.headers
    meta = json.loads(r.headers["x-engine-meta"])
    assert (meta["width"], meta["height"], meta["format"]) == (600, 400, "png")
    got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    want = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    assert got.shape == want.shape and psnr(got, want) > 35
    assert alice.api.get("/api/v1/jobs").json()["total"] == before  # no job in the history
    bad = alice.api.post("/api/v1/process", params={"pipeline": "greyscale", "history": "false"}, content=jpeg())
    assert bad.status_code == 422 and bad.json()["code"] == "unknown_operation"
    assert "did you mean 'grayscale'" in bad.json()["error"]
    odd = alice.api.post("/api/v1/process", params={"pipeline": "grayscale", "history": "maybe"}, content=jpeg())
    assert odd.status_code == 400 and odd.json()["code"] == "bad_query"


def test_process_multipart_with_pipeline_field(users):
    r = users[0].api.post("/api/v1/process", data={"pipeline": "edge:low=50"},
                          files={"image": ("camera.jpg", jpeg("camera.jpg"), "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert 'filename="camera-' in r.headers["content-disposition"]


@pytest.mark.parametrize("pipeline,data,status,code", [
    ("grayscale", b"this is not an image", 415, "bad_image"),
    ("no_such_op", jpeg(), 422, "unknown_operation"),
    ("edge:low=-5", jpeg(), 422, "bad_parameter"),
    ("grayscale||png", jpeg(), 422, "bad_pipeline"),
    ("png|grayscale", jpeg(), 422, "bad_pipeline"),
    ("", jpeg(), 422, "bad_pipeline"),
    ("grayscale", b"", 400, "no_image"),
])
def test_bad_input_gets_a_clear_json_error(users, pipeline, data, status, code):
    r = users[0].api.post("/api/v1/process", params={"pipeline": pipeline}, content=data)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and len(body["error"]) > 10


def test_requests_without_credentials_or_csrf_are_refused(web, users):
    import httpx

    with httpx.Client(base_url=web.url) as anon:
        r = anon.post("/api/v1/process", params={"pipeline": "grayscale"}, content=jpeg())
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert anon.get("/api/v1/jobs", headers={"Authorization": "Bearer eng_wrong"}).status_code == 401
    # A browser session may read, but a POST needs the page's CSRF token in a header.
    browser = users[0].browser
    assert browser.get("/api/v1/jobs").status_code == 200
    r = browser.post("/api/v1/process", params={"pipeline": "grayscale"}, content=jpeg())
    assert r.status_code == 403 and r.json()["code"] == "csrf"
    r = browser.post("/api/v1/process", params={"pipeline": "grayscale"}, content=jpeg(),
                     headers={"X-CSRF-Token": users[0].csrf})
    assert r.status_code == 200


def test_batch_progress_history_zip_rerun_and_delete(users, web):
    alice = users[0]
    names = ["coffee.jpg", "camera.jpg", "rocket.jpg"]
    files = [("images", (n, jpeg(n), "image/jpeg")) for n in names]
    r = alice.api.post("/api/v1/batches", data={"pipeline": "grayscale|jpeg:quality=80"}, files=files)
    assert r.status_code == 202, r.text
    assert r.json()["total"] == 3
    batch = wait_batch(alice.api, r.json()["id"])
    assert (batch["done"], batch["failed"]) == (3, 0)
    zipped = zipfile.ZipFile(io.BytesIO(alice.api.get(batch["urls"]["zip"]).content))
    assert sorted(n.split("-")[0] for n in zipped.namelist()) == ["camera", "coffee", "rocket"]
    for name in zipped.namelist():
        assert zipped.read(name)[:3] == b"\xff\xd8\xff"
    job = batch["jobs"][0]
    assert alice.api.get(job["urls"]["input"]).content == jpeg("coffee.jpg")
    thumb = alice.api.get(job["urls"]["thumbnail"])
    assert thumb.headers["content-type"] == "image/jpeg"
    assert max(cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_UNCHANGED).shape) == 160
    listed = alice.api.get("/api/v1/jobs", params={"limit": 200}).json()
    assert {j["id"] for j in batch["jobs"]} <= {j["id"] for j in listed["jobs"]}
    # Re-run: a new batch with the same input and pipeline.
    again = alice.api.post(f"/api/v1/jobs/{job['id']}/rerun")
    assert again.status_code == 202
    rerun = wait_batch(alice.api, again.json()["id"])
    assert rerun["jobs"][0]["pipeline"] == job["pipeline"] and rerun["done"] == 1
    # Delete: gone from history; images still used by the re-run stay on disk.
    output_sha = web.parts.store.job(web.parts.store.user_by_name("alice")["id"], job["id"])["output_sha"]
    assert alice.api.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
    assert alice.api.get(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert alice.api.delete(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert web.parts.blobs.path(output_sha).exists()  # the re-run made the same output
    alice.api.delete(f"/api/v1/jobs/{rerun['jobs'][0]['id']}")
    assert not web.parts.blobs.path(output_sha).exists()


def test_a_bad_file_fails_alone_in_a_batch(users):
    files = [("images", ("good.jpg", jpeg(), "image/jpeg")), ("images", ("bad.jpg", b"GIF89a nope", "image/gif"))]
    r = users[0].api.post("/api/v1/batches", data={"pipeline": "grayscale"}, files=files)
    batch = wait_batch(users[0].api, r.json()["id"])
    by_name = {j["input_name"]: j for j in batch["jobs"]}
    assert by_name["good.jpg"]["status"] == "done"
    assert by_name["bad.jpg"]["status"] == "failed" and by_name["bad.jpg"]["error"]["code"] == "bad_image"


def test_operations_list_is_what_the_workers_declared(web):
    import httpx

    listed = httpx.get(f"{web.url}/api/v1/operations").json()
    assert listed["source"] == "workers"  # workers of this engine version, with their models: all of it
    assert listed["operations"] == json.loads(json.dumps(ops.describe()))


def test_status_shows_workers_and_queue(users):
    status = users[0].api.get("/api/v1/status").json()
    assert status["up"] is True and status["queue_depth"] == 0
    assert sum(w["processes"] for w in status["workers"]) == 2
    assert sum(w["capacity"] for w in status["workers"]) >= 2  # slots: processes plus prefetch
    assert all(w["state"] in ("idle", "busy") and w["last_heartbeat_s_ago"] < 5 for w in status["workers"])


def test_legacy_json_endpoint(users):
    alice = users[0]
    body = {"task_id": "t-1", "task": "grayscale|png", "image": base64.b64encode(jpeg()).decode()}
    r = alice.api.post("/api/v1/legacy", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["task_id"], out["task"]) == ("t-1", "grayscale|png")
    assert base64.b64decode(out["image"])[:8] == b"\x89PNG\r\n\x1a\n"
    r = alice.api.post("/api/v1/legacy", json={**body, "image": base64.b64encode(b"nope").decode()})
    assert r.status_code == 415 and r.json()["task_id"] == "t-1" and "error" in r.json()
    r = alice.api.post("/api/v1/legacy", json={**body, "image": "%%%"})
    assert r.status_code == 400 and r.json()["code"] == "bad_base64"


def test_revoked_token_stops_working(web):
    user = User(web, "carol")
    try:
        tokens = user.api.get("/api/v1/tokens").json()["tokens"]
        assert user.api.delete(f"/api/v1/tokens/{tokens[0]['id']}").status_code == 204
        assert user.api.get("/api/v1/jobs").status_code == 401
    finally:
        user.close()


def test_oversize_upload_and_quota(broker, tmp_path):
    small = WebServer(tmp_path, broker.front, max_upload_bytes=100_000, quota_bytes=150_000).start()
    try:
        user = User(small, "dave")
        big = jpeg("retina.jpg")
        assert len(big) > 100_000
        r = user.api.post("/api/v1/process", params={"pipeline": "grayscale"}, content=big)
        assert r.status_code == 413 and r.json()["code"] == "image_too_large"
        r = user.api.post("/api/v1/process", params={"pipeline": "grayscale"}, content=jpeg())
        assert r.status_code == 200  # 72 KB in, about 40 KB out
        r = user.api.post("/api/v1/process", params={"pipeline": "grayscale"}, content=jpeg())
        assert r.status_code == 429 and r.json()["code"] == "quota" and "delete some history" in r.json()["error"]
        user.close()
    finally:
        small.stop()


def test_retention_keeps_the_newest_jobs(broker, tmp_path):
    keeper = WebServer(tmp_path, broker.front, retention_jobs=2).start()
    try:
        user = User(keeper, "fay")
        ids = [user.api.post("/api/v1/process", params={"pipeline": "grayscale"}, content=jpeg(n)).headers["x-job-id"]
               for n in ("coffee.jpg", "camera.jpg", "coins.jpg")]
        listed = [j["id"] for j in user.api.get("/api/v1/jobs").json()["jobs"]]
        assert listed == ids[:0:-1]  # the oldest is gone, newest first
        user.close()
    finally:
        keeper.stop()


def test_broker_down_is_reported_promptly(tmp_path):
    from web_helpers import free_port

    lonely = WebServer(tmp_path, f"tcp://127.0.0.1:{free_port()}", broker_check_timeout_s=1.0).start()
    try:
        user = User(lonely, "erin")
        started = time.monotonic()
        r = user.api.post("/api/v1/process", params={"pipeline": "grayscale"}, content=jpeg())
        assert r.status_code == 503 and r.json()["code"] == "broker_unavailable"
        assert "not reachable" in r.json()["error"] and time.monotonic() - started < 5
        page = user.browser.post("/upload", data={"pipeline": "grayscale", "csrf": user.csrf},
                                 files={"images": ("a.jpg", jpeg(), "image/jpeg")})
        assert page.status_code == 503 and "not reachable" in page.text
        assert user.api.get("/api/v1/status").json()["up"] is False
        user.close()
    finally:
        lonely.stop()


def test_password_is_stored_as_argon2(web, users):
    row = web.parts.store.user_by_name("alice")
    assert row["pw_hash"].startswith("$argon2id$") and PASSWORD not in row["pw_hash"]
    assert csrf_of(users[0].browser.get("/history").text)


@pytest.mark.parametrize("pipeline, message", [
    ("resize", "give width, height or both"), ("median:size=4", "must be odd"),
    ("resize:width=64|text:text=", "1 to 200 characters"), ("faces:colour=green", "hex RRGGBB"),
])
def test_a_batch_whose_pipeline_a_worker_would_refuse_is_refused_and_nothing_is_kept(users, pipeline, message):
    alice = users[0]
    before = alice.api.get("/api/v1/jobs").json()["total"]
    files = [("images", (n, jpeg(n), "image/jpeg")) for n in ("coffee.jpg", "camera.jpg")]
    r = alice.api.post("/api/v1/batches", data={"pipeline": pipeline}, files=files)
    assert r.status_code == 422 and r.json()["code"] == "bad_parameter", r.text
    assert message in r.json()["error"]
    assert alice.api.get("/api/v1/jobs").json()["total"] == before  # nothing stored, nothing charged


def test_a_batch_with_a_format_step_before_another_step_is_refused_and_nothing_is_kept(users):
    alice = users[0]
    before = alice.api.get("/api/v1/jobs").json()["total"]
    files = [("images", ("coffee.jpg", jpeg("coffee.jpg"), "image/jpeg"))]
    r = alice.api.post("/api/v1/batches", data={"pipeline": "png|grayscale"}, files=files)
    assert r.status_code == 422 and r.json()["code"] == "bad_pipeline", r.text
    assert "go last and choose the output format" in r.json()["error"] and "'grayscale|png'" in r.json()["error"]
    assert alice.api.get("/api/v1/jobs").json()["total"] == before
