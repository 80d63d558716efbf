"""Slow clients cannot crowd real users out of the web gateway: ``python -m engine.web`` as a
real process, with a soft descriptor limit of 256 (as a small host's 1,024, scaled down),
against hundreds of real sockets that trickle header lines and never finish them.

Settings travel as environment variables (ENGINE_WEB_*), so the same test runs against a
gateway that does not know them: there, the slow connections take every descriptor and a
normal GET /login gets no answer."""
import socket
import threading
import time

import pytest

from bench.web_slowloris import Trickler, free_port, get_login, start_gateway

pytestmark = pytest.mark.timeout(90)

FD_LIMIT = 256
SLOW = 300  # more than the gateway's descriptors
MAX_CONNECTIONS = 64
HEADER_TIMEOUT_S = 2.0
KEEP_ALIVE_S = 1.0
START_TIMEOUT_S = 30.0
ANSWER_TIMEOUT_S = 10.0  # generous: a normal request's answer, never a speed check
SETTINGS = {"ENGINE_WEB_MAX_CONNECTIONS": str(MAX_CONNECTIONS), "ENGINE_WEB_LISTEN_BACKLOG": "32",
            "ENGINE_WEB_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "ENGINE_WEB_KEEP_ALIVE_S": str(KEEP_ALIVE_S)}


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline_s = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    port = free_port()
    proc = start_gateway(port, str(tmp_path_factory.mktemp("web")), FD_LIMIT, [], env=SETTINGS)
    try:
        wait_for(lambda: proc.poll() is not None or get_login(port, 1.0) is not None, START_TIMEOUT_S,
                 "the gateway answers GET /login")
        assert proc.poll() is None, "the gateway exited at start"
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def trickling(gateway):
    """SLOW connections trickling a header line every 0.3 s, not reopened once closed."""
    attacker = Trickler(gateway, SLOW, trickle_s=0.3, reopen_after_s=None)
    thread = threading.Thread(target=attacker.run, daemon=True)
    thread.start()
    try:
        yield attacker
    finally:
        attacker.stop.set()
        thread.join(10)


def test_a_normal_request_is_answered_while_slow_clients_trickle_and_they_are_closed(gateway, trickling):
    wait_for(lambda: trickling.trickling() + trickling.closed_by_gateway >= SLOW, ANSWER_TIMEOUT_S,
             "every slow connection sent its request line")
    assert get_login(gateway, ANSWER_TIMEOUT_S) is not None, "GET /login got no answer under slow clients"
    # Each slow connection is closed: the oldest ones to make room for newer ones, the rest
    # when their header deadline passes, however often they send a line.
    wait_for(lambda: trickling.closed_by_gateway == SLOW, HEADER_TIMEOUT_S + ANSWER_TIMEOUT_S,
             "the gateway closed every slow connection")
    assert max(trickling.lived_s) >= HEADER_TIMEOUT_S * 0.9  # the last ones lived to their deadline


def test_a_kept_alive_connection_that_trickles_is_closed(gateway):
    with socket.create_connection(("127.0.0.1", gateway), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = b""
        while b"</html>" not in answer:
            more = sock.recv(65536)
            assert more, "closed before the whole page came"
            answer += more
        assert answer.startswith(b"HTTP/1.1 200")
        # Uvicorn's keep-alive timer stops at the first byte: one byte at a time must not keep it open.
        sock.settimeout(0.25)
        deadline_s = time.monotonic() + HEADER_TIMEOUT_S + ANSWER_TIMEOUT_S
        closed = False
        while not closed and time.monotonic() < deadline_s:
            try:
                sock.sendall(b"G")
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed, "a connection trickling its second request's headers was never closed"


def test_when_every_connection_is_busy_a_new_one_gets_busy(gateway):
    """Requests with bodies that never come hold every connection: the next gets 503 busy."""
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", gateway), timeout=ANSWER_TIMEOUT_S)
            held.append(sock)
            sock.sendall(b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded"
                         b"\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n")
            # "100 Continue" comes when the app asks for the body: its headers were read, it is busy
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        with socket.create_connection(("127.0.0.1", gateway), timeout=ANSWER_TIMEOUT_S) as sock:
            answer = b""
            while more := sock.recv(65536):
                answer += more
        assert answer.startswith(b"HTTP/1.1 503") and b"busy:" in answer, answer[:200]
    finally:
        for sock in held:
            sock.close()
    assert get_login(gateway, ANSWER_TIMEOUT_S) is not None  # room again once they close
