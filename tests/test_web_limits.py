"""Request bodies are refused by size while they stream in, on every endpoint that reads
one, and the storage quota holds when many uploads race. Real broker, real gateway on
uvicorn, real HTTP (raw sockets where a client must not behave). The app is wrapped in a
counter of the body bytes it pulled in: that, not time, shows the body was not read."""
import threading

import httpx
import pytest
from web_helpers import BodyCounter, User, WebServer, jpeg, send_chunked, send_declared, wait_batch

from engine import errors as E

pytestmark = pytest.mark.timeout(180)

MAX_UPLOAD = 100_000
BATCH_FILES = 50  # a batch body may be about 6 MB: far more than any other endpoint takes
FORM = 64 * 1024  # the default limit of a body without images
FAR_OVER = 32 * 2**20  # what a hostile client sends
SLACK = 512 * 1024  # a socket read or two past the limit may reach the app before it stops


@pytest.fixture(scope="module")
def small(broker, tmp_path_factory):
    server = WebServer(tmp_path_factory.mktemp("small"), broker.front, wrap=BodyCounter,
                       max_upload_bytes=MAX_UPLOAD, max_batch_files=BATCH_FILES).start()
    user = User(server, "dora")
    try:
        yield server, user
    finally:
        user.close()
        server.stop()


MULTIPART = "multipart/form-data; boundary=xyz"
URLENCODED = "application/x-www-form-urlencoded"
JSON = "application/json"
# Every endpoint that reads a body: (path, how its client authenticates, content type, the
# most body bytes it should read).
ENDPOINTS = [
    ("/api/v1/process?pipeline=grayscale", "bearer", "application/octet-stream", MAX_UPLOAD),
    ("/api/v1/process", "bearer", MULTIPART, MAX_UPLOAD + FORM),
    ("/api/v1/legacy", "bearer", JSON, MAX_UPLOAD * 4 // 3 + 4096),
    ("/api/v1/batches", "bearer", MULTIPART, MAX_UPLOAD * BATCH_FILES + 2**20),
    ("/api/v1/batches", "bearer", URLENCODED, FORM),
    ("/api/v1/tokens", "bearer", JSON, FORM),
    ("/login", "none", URLENCODED, FORM),
    ("/upload", "cookie", MULTIPART, MAX_UPLOAD * BATCH_FILES + 2**20),
    ("/tokens", "cookie", URLENCODED, FORM),
]
# The start of a well-formed body of each type, so that parsers keep reading the zeros after it.
PREFIXES = {
    MULTIPART: b'--xyz\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n'
               b"Content-Type: image/jpeg\r\n\r\n",
    URLENCODED: b"name=",
    JSON: b'{"task_id": 1, "task": "grayscale", "image": "',
}


def headers_for(user: User, auth: str, content_type: str) -> dict:
    headers = {"Content-Type": content_type}
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {user.token}"
    elif auth == "cookie":
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in user.browser.cookies.items())
    return headers


@pytest.mark.parametrize("path,auth,content_type,limit", ENDPOINTS)
def test_chunked_body_far_over_the_limit_is_cut_off_while_streaming(small, path, auth, content_type, limit):
    server, user = small
    headers = headers_for(user, auth, content_type)
    counter: BodyCounter = server.outer
    counter.reset()
    status, body = send_chunked(server.url, path, FAR_OVER, headers=headers, prefix=PREFIXES.get(content_type, b""))
    assert status == 413, (path, status, body[:200])
    assert counter.pulled_bytes <= limit + SLACK, (path, counter.pulled_bytes)
    # The gateway is still there, and still serves this user.
    assert user.api.get("/api/v1/jobs").status_code == 200


@pytest.mark.parametrize("path,auth,content_type,limit", ENDPOINTS)
def test_declared_length_over_the_limit_is_refused_before_any_body_byte(small, path, auth, content_type, limit):
    server, user = small
    headers = headers_for(user, auth, content_type)
    counter: BodyCounter = server.outer
    counter.reset()
    status, body = send_declared(server.url, path, limit + 1, headers=headers, timeout_s=10.0)
    assert status == 413, (path, status, body[:200])
    assert counter.pulled_bytes == 0


def test_image_endpoints_say_the_image_is_too_large(small):
    server, user = small
    status, body = send_chunked(server.url, "/api/v1/process?pipeline=grayscale", FAR_OVER,
                                headers={"Authorization": f"Bearer {user.token}"})
    assert status == 413 and b'"code":"%s"' % E.ImageTooLarge.code.encode() in body
    big = jpeg("retina.jpg")
    assert len(big) > MAX_UPLOAD
    r = user.api.post("/api/v1/process", params={"pipeline": "grayscale"}, content=big)
    assert r.status_code == 413 and r.json()["code"] == E.ImageTooLarge.code
    # Under the limit still works.
    r = user.api.post("/api/v1/process", params={"pipeline": "grayscale"}, content=jpeg())
    assert r.status_code == 200, r.text


def _race(n: int, fn) -> list:
    out: list = [None] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait(30)
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_quota_holds_under_parallel_uploads(broker, tmp_path):
    quota = 300_000
    server = WebServer(tmp_path, broker.front, quota_bytes=quota).start()
    user = User(server, "gus")
    image = jpeg()  # about 72 KB in, 40 KB out: about four fit
    try:
        def upload(i: int):
            with httpx.Client(base_url=server.url, timeout=60.0,
                              headers={"Authorization": f"Bearer {user.token}"}) as c:
                if i % 3:
                    return c.post("/api/v1/process", params={"pipeline": "grayscale"}, content=image)
                return c.post("/api/v1/batches", data={"pipeline": "grayscale"},
                              files=[("images", (f"{i}-{k}.jpg", image, "image/jpeg")) for k in range(2)])

        answers = _race(16, upload)
        assert all(r is not None for r in answers)
        assert {r.status_code for r in answers} <= {200, 202, 429}, [r.text for r in answers]
        refused = [r for r in answers if r.status_code == 429]
        assert refused and all(r.json()["code"] == E.QuotaError.code for r in refused)
        assert any(r.status_code in (200, 202) for r in answers)
        for r in answers:
            if r.status_code == 202:
                wait_batch(user.api, r.json()["id"])
        user_id = server.parts.store.user_by_name("gus")["id"]
        assert server.parts.store.usage_bytes(user_id) <= quota
        # A job whose result did not fit says so, in the quota's words.
        failed = [j for j in user.api.get("/api/v1/jobs", params={"limit": 200}).json()["jobs"]
                  if j["status"] == "failed"]
        assert all(j["error"]["code"] == E.QuotaError.code for j in failed)
    finally:
        user.close()
        server.stop()
