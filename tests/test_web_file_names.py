"""Any file name works end to end: names in several scripts, emoji, quotes, slashes,
backslashes and control characters go through /process (raw body with ?name=, and multipart
as a browser sends it), ?download=1, a batch's zip, the history page and the job's JSON.
Real broker, real workers, the gateway on uvicorn, real HTTP.

The Content-Disposition header is read as a browser reads it (RFC 6266): the RFC 5987
``filename*`` decoded (the standard library's RFC 2231 decoder), else the quoted ``filename``."""
import base64
import email.message
import email.utils
import io
import unicodedata
import zipfile

import pytest
from web_helpers import jpeg, wait_batch

pytestmark = pytest.mark.timeout(120)

# (name sent, the name kept, the stem of the download's name)
NAMES = [
    ("照片.jpg", "照片.jpg", "照片"),
    ("Ωmega.jpg", "Ωmega.jpg", "Ωmega"),
    ("صورة الشاطئ.jpg", "صورة الشاطئ.jpg", "صورة الشاطئ"),
    ("🐱 cat.jpg", "🐱 cat.jpg", "🐱 cat"),
    ('say "cheese".jpg', 'say "cheese".jpg', "say _cheese_"),
    ("dir/sub/file.jpg", "file.jpg", "file"),
    ("C:\\fakepath\\pic.jpg", "pic.jpg", "pic"),
    ("line\r\nbreak.jpg", "linebreak.jpg", "linebreak"),
    ("nul\x00tab\t.jpg", "nultab.jpg", "nultab"),
    ("\u202egpj.exe", "gpj.exe", "gpj"),  # a right-to-left override would show "exe.jpg"
    ("..", "..", "image"),
    ("%41;b,c'd.jpg", "%41;b,c'd.jpg", "%41;b,c'd"),
]
BAD_IN_NAMES = set("/\\") | {chr(c) for c in range(32)} | {"\x7f"}


def safe(name: str) -> bool:
    """No path separator, control or format character (bidi overrides, zero-width)."""
    return not set(name) & BAD_IN_NAMES and all(unicodedata.category(c) not in ("Cc", "Cf") for c in name)


def disposition(header: str) -> tuple[str, str]:
    """(kind, file name) as a browser reads them: filename* first (RFC 6266 section 4.3)."""
    assert header.isascii(), header
    msg = email.message.Message()
    msg["Content-Disposition"] = header
    params = msg.get_params(header="content-disposition")
    assert params, header
    plain = [v for k, v in params[1:] if k == "filename" and isinstance(v, str)]
    extended = [email.utils.collapse_rfc2231_value(v) for k, v in params[1:] if k == "filename" and isinstance(v,
                                                                                                               tuple)]
    assert len(plain) == 1 and len(extended) == 1, header
    fallback = plain[0]
    assert fallback.isascii() and not set(fallback) & (BAD_IN_NAMES | set('";%')), header
    assert len(fallback) == len(extended[0])  # one "_" for each character it cannot show
    return params[0][0], extended[0]


@pytest.mark.parametrize("sent,kept,stem", NAMES, ids=[ascii(n[0]) for n in NAMES])
def test_any_file_name_processes_and_downloads(users, sent, kept, stem):
    alice = users[0]
    raw = alice.api.post("/api/v1/process", params={"pipeline": "grayscale|png", "name": sent}, content=jpeg())
    # As a browser sends it: httpx, like browsers, writes " and control characters as %22, %0D..., \ as \\
    form = alice.api.post("/api/v1/process", data={"pipeline": "grayscale|png"},
                          files={"image": (sent, jpeg(), "image/jpeg")})
    for r in (raw, form):
        assert r.status_code == 200, r.text
        job_id = r.headers["x-job-id"]
        assert safe(alice.api.get(f"/api/v1/jobs/{job_id}").json()["input_name"])
        kind, name = disposition(r.headers["content-disposition"])
        assert kind == "inline" and name.endswith(f"-{job_id}.png") and safe(name)
        download = alice.api.get(f"/api/v1/jobs/{job_id}/output", params={"download": "1"})
        assert download.status_code == 200, download.text
        assert download.content == r.content
        assert disposition(download.headers["content-disposition"]) == ("attachment", name)
    job_id = raw.headers["x-job-id"]
    assert alice.api.get(f"/api/v1/jobs/{job_id}").json()["input_name"] == kept
    assert disposition(raw.headers["content-disposition"]) == ("inline", f"{stem}-{job_id}.png")


def test_a_batch_of_odd_names_zips_and_shows_safely(users):
    alice = users[0]
    sent = ["照片.jpg", "Ωmega.jpg", "🐱.jpg", "../../evil.jpg", "<img src=x onerror=alert(1)>.jpg"]
    files = [("images", (n, jpeg(), "image/jpeg")) for n in sent]
    r = alice.api.post("/api/v1/batches", data={"pipeline": "grayscale|jpeg"}, files=files)
    assert r.status_code == 202, r.text
    batch = wait_batch(alice.api, r.json()["id"])
    assert (batch["done"], batch["failed"]) == (len(sent), 0)
    zipped = alice.api.get(batch["urls"]["zip"])
    assert zipped.status_code == 200
    assert disposition(zipped.headers["content-disposition"]) == ("attachment", f"batch-{batch['id']}.zip")
    stems = {"照片.jpg": "照片", "Ωmega.jpg": "Ωmega", "🐱.jpg": "🐱", "evil.jpg": "evil",
             "<img src=x onerror=alert(1)>.jpg": "_img src=x onerror=alert(1)_"}
    entries = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    assert sorted(entries) == sorted(f"{stems[j['input_name']]}-{j['id']}.jpg" for j in batch["jobs"])
    assert all(safe(e) and not e.startswith(".") for e in entries)
    history = alice.browser.get("/history")
    assert history.status_code == 200
    assert "照片.jpg" in history.text and "Ωmega.jpg" in history.text
    assert "<img src=x" not in history.text and "&lt;img src=x onerror=alert(1)&gt;.jpg" in history.text
    odd = next(j for j in batch["jobs"] if j["input_name"].startswith("<img"))
    page = alice.browser.get(f"/jobs/{odd['id']}")
    assert page.status_code == 200 and "<img src=x" not in page.text


def test_a_legacy_task_id_that_utf8_cannot_encode_still_names_its_job(users):
    """The legacy format names a job after its task id, which JSON may make a lone surrogate."""
    alice = users[0]
    body = b'{"task_id": "x\\ud800", "task": "grayscale|png", "image": "' + base64.b64encode(jpeg()) + b'"}'
    r = alice.api.post("/api/v1/legacy", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    job = alice.api.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0]
    assert job["input_name"] == "legacy-x"
