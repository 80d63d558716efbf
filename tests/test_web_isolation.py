"""One user can never see, download, re-run or delete another user's work; CSRF and
sessions behave. Real broker, real gateway, real HTTP."""
import httpx
import pytest
from web_helpers import PASSWORD, csrf_of, jpeg, wait_batch

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def alice_work(users):
    alice = users[0]
    r = alice.api.post("/api/v1/batches", data={"pipeline": "grayscale"},
                       files=[("images", ("secret.jpg", jpeg("rocket.jpg"), "image/jpeg"))])
    batch = wait_batch(alice.api, r.json()["id"])
    assert batch["done"] == 1
    return batch


def test_other_user_gets_404_for_every_api_route(users, alice_work):
    bob = users[1]
    job = alice_work["jobs"][0]
    for url in (job["urls"]["self"], job["urls"]["input"], job["urls"]["output"], job["urls"]["thumbnail"],
                alice_work["urls"]["self"], alice_work["urls"]["zip"]):
        r = bob.api.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert b"\xff\xd8" not in r.content[:4]
    assert bob.api.post(f"/api/v1/jobs/{job['id']}/rerun").status_code == 404
    assert bob.api.delete(job["urls"]["self"]).status_code == 404
    assert users[0].api.get(job["urls"]["output"]).status_code == 200  # still there for alice


def test_other_user_history_and_pages_show_nothing_of_alice(users, alice_work):
    bob = users[1]
    job = alice_work["jobs"][0]
    assert job["id"] not in {j["id"] for j in bob.api.get("/api/v1/jobs").json()["jobs"]}
    history = bob.browser.get("/history").text
    assert job["id"] not in history and "secret.jpg" not in history
    for url in (f"/jobs/{job['id']}", f"/batches/{alice_work['id']}"):
        r = bob.browser.get(url)
        assert r.status_code == 404 and "secret.jpg" not in r.text
    r = bob.browser.post(f"/jobs/{job['id']}/delete", data={"csrf": bob.csrf})
    assert r.status_code == 404
    assert users[0].api.get(job["urls"]["self"]).json()["status"] == "done"


def test_other_user_cannot_revoke_alices_token(users):
    alice_tokens = users[0].api.get("/api/v1/tokens").json()["tokens"]
    r = users[1].api.delete(f"/api/v1/tokens/{alice_tokens[0]['id']}")
    assert r.status_code == 404
    assert users[0].api.get("/api/v1/jobs").status_code == 200


def test_forms_without_the_csrf_token_are_refused(web, users):
    bob = users[1]
    job_id = users[0].api.get("/api/v1/jobs").json()["jobs"][0]["id"]
    r = bob.browser.post("/upload", data={"pipeline": "grayscale"}, files={"images": ("a.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 403 and "expired" in r.text
    r = users[0].browser.post(f"/jobs/{job_id}/delete", data={"csrf": "forged"})
    assert r.status_code == 403
    assert users[0].api.get(f"/api/v1/jobs/{job_id}").status_code == 200
    # A log-in form from another site (no CSRF cookie) is refused too.
    with httpx.Client(base_url=web.url) as stranger:
        r = stranger.post("/login", data={"name": "alice", "password": PASSWORD, "csrf": "x"})
        assert r.status_code == 403


def test_cookies_are_httponly_and_samesite(web):
    with httpx.Client(base_url=web.url) as c:
        page = c.get("/signup")
        r = c.post("/signup", data={"name": "zed", "password": PASSWORD, "csrf": csrf_of(page.text)})
        cookies = r.headers.get_list("set-cookie")
        session = next(x for x in cookies if x.startswith("engine_session="))
        assert "HttpOnly" in session and "SameSite=lax" in session
        assert all("HttpOnly" in x and "SameSite" in x for x in cookies)


def test_log_out_ends_the_session_and_wrong_passwords_fail(web):
    with httpx.Client(base_url=web.url) as c:
        page = c.get("/signup")
        c.post("/signup", data={"name": "yves", "password": PASSWORD, "csrf": csrf_of(page.text)})
        assert c.get("/history").status_code == 200
        stolen = c.cookies.get("engine_session")
        c.post("/logout", data={"csrf": csrf_of(c.get("/history").text)})
        assert c.get("/history").status_code == 303
    with httpx.Client(base_url=web.url, cookies={"engine_session": stolen}) as replay:
        assert replay.get("/api/v1/jobs").status_code == 401
    with httpx.Client(base_url=web.url) as c:
        page = c.get("/login")
        r = c.post("/login", data={"name": "yves", "password": "wrong password", "csrf": csrf_of(page.text)})
        assert r.status_code == 401 and "Wrong user name or password" in r.text
        r = c.post("/signup", data={"name": "yves", "password": PASSWORD, "csrf": csrf_of(page.text)})
        assert r.status_code == 400 and "taken" in r.text
