"""Log-in cannot be guessed at or used to stall the gateway: failed attempts are limited
per account and per address (HTTP 429 + Retry-After), the bookkeeping is bounded, and
password hashing runs off the event loop, a bounded number at a time. Real gateway, real
HTTP; the hashing test counts hashes in progress instead of timing anything."""
import threading
import time

import httpx
import pytest
from web_helpers import PASSWORD, User, WebServer, csrf_of, log_in

from engine.web import WebSettings

pytestmark = pytest.mark.timeout(120)

PER_ACCOUNT = 5  # the defaults the tests below rely on
PER_ADDRESS = 20
WAIT_FOR_S = 15.0  # how long a test waits for something it expects (a liveness bound, not a speed claim)


def test_the_defaults_are_the_documented_ones():
    d = WebSettings()
    assert (d.login_fails_per_account, d.login_fails_per_address) == (PER_ACCOUNT, PER_ADDRESS)
    assert d.login_fail_window_s == 300.0 and d.login_limit_max_keys >= 1000


def test_failed_logins_are_limited_per_account_then_per_address(broker, tmp_path):
    server = WebServer(tmp_path, broker.front).start()
    try:
        for name in ("alice", "victim"):
            User(server, name).close()
        with httpx.Client(base_url=server.url, timeout=30.0) as guesser:
            for _ in range(PER_ACCOUNT):
                assert log_in(guesser, "victim", "wrong guess").status_code == 401
            # The account is locked for a while, even for the right password (no more guesses).
            r = log_in(guesser, "VICTIM", PASSWORD)
            assert r.status_code == 429, r.text
            wait_s = int(r.headers["retry-after"])
            assert 0 < wait_s <= 300
            assert "Too many failed log-ins for this account" in r.text and "wait" in r.text
        # Another account, from the same address, is not blocked by the victim's failures.
        with httpx.Client(base_url=server.url, timeout=30.0) as other:
            assert log_in(other, "alice", PASSWORD).status_code == 303
            # Failures spread over many names count against the address.
            for i in range(PER_ADDRESS - PER_ACCOUNT):
                assert log_in(other, f"nobody{i}", "wrong guess").status_code == 401
            r = log_in(other, "alice", PASSWORD)
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
            assert "from your address" in r.text
    finally:
        server.stop()


def test_login_bookkeeping_is_bounded(broker, tmp_path):
    server = WebServer(tmp_path, broker.front, login_limit_max_keys=4).start()
    try:
        limiter = server.parts.auth.login_limiter
        with httpx.Client(base_url=server.url, timeout=30.0) as guesser:
            for i in range(10):
                assert log_in(guesser, f"name{i}", "wrong guess").status_code == 401
                assert len(limiter) <= 4
        assert len(limiter) == 4  # the oldest were evicted, the newest kept
    finally:
        server.stop()


class GatedHasher:
    """Wraps the real argon2 hasher: each hash or verify waits at a gate the test opens,
    and counts how many are in progress at once."""

    def __init__(self, real) -> None:
        self.real = real
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0

    def _gated(self, fn, *args):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            self.gate.wait(60)
            return fn(*args)
        finally:
            with self.lock:
                self.inside -= 1

    def hash(self, password):
        return self._gated(self.real.hash, password)

    def verify(self, pw_hash, password):
        return self._gated(self.real.verify, pw_hash, password)

    def check_needs_rehash(self, pw_hash):
        return self.real.check_needs_rehash(pw_hash)


def wait_until(predicate, what: str) -> None:
    deadline_s = time.monotonic() + WAIT_FOR_S
    while not predicate():
        assert time.monotonic() < deadline_s, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_password_hashing_does_not_block_other_requests(broker, tmp_path, monkeypatch):
    import engine.web.auth as auth_module

    bound = getattr(WebSettings(), "max_concurrent_hashes", 4)  # (getattr: the test predates the setting)
    server = WebServer(tmp_path, broker.front).start()
    gated = GatedHasher(auth_module._hasher)
    results: list[int] = []
    threads: list[threading.Thread] = []
    try:
        User(server, "alice").close()
        monkeypatch.setattr(auth_module, "_hasher", gated)

        def one_login(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=60.0) as client:
                results.append(log_in(client, "alice", PASSWORD).status_code)

        def one_signup(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=60.0) as client:
                page = client.get("/signup")
                r = client.post("/signup", data={"name": f"new{i}", "password": PASSWORD,
                                                 "csrf": csrf_of(page.text)})
                results.append(r.status_code)

        threads += [threading.Thread(target=one_login if i % 2 else one_signup, args=(i,))
                    for i in range(bound + 3)]
        for t in threads:
            t.start()
        # Several hashes are in progress at once: the event loop is not running them.
        wait_until(lambda: gated.inside == bound, f"{bound} hashes in progress")
        with httpx.Client(base_url=server.url, timeout=WAIT_FOR_S) as probe:
            assert probe.get("/api/v1/operations").status_code == 200
            assert probe.get("/static/app.js").status_code == 200
            assert probe.get("/login").status_code == 200
        assert gated.inside == bound  # the probes were answered while those hashes were still running
    finally:
        gated.gate.set()
        for t in threads:
            t.join(60)
        server.stop()
    assert sorted(results) == [303] * (bound + 3)
    assert gated.most == bound  # never more than the bound at once


def test_a_lock_ends_with_its_window_and_says_how_long_to_wait():
    from engine.web.limits import LoginLimited, LoginLimiter

    now = [1000.0]
    limiter = LoginLimiter(per_account=2, per_address=10, window_s=300.0, max_keys=100, clock=lambda: now[0])
    for _ in range(2):
        limiter.check("Eve", "10.0.0.1")
        limiter.failed("Eve", "10.0.0.1")
    now[0] += 100.0
    with pytest.raises(LoginLimited) as refused:
        limiter.check("eve", "10.0.0.2")  # names are case-insensitive, like accounts
    assert refused.value.retry_after_s == 200 and "wait 4 minutes" in str(refused.value)
    limiter.check("mallory", "10.0.0.1")  # another account from that address may still try
    now[0] += 200.0
    limiter.check("eve", "10.0.0.1")  # the window is over
