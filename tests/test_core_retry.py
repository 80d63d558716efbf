"""One retry rule (``errors.is_retryable``), read the same by the broker and the client, over
real sockets: every wire code is answered once by a scripted worker (the broker requeues it or
passes it on) and once by a scripted broker (the client resends it or raises it).

Before the rule was one predicate the two disagreed: the client resent ``busy`` only, the broker
requeued every class flagged ``retryable`` (``busy``, ``quota``, ``worker_crashed``). Now both
retry exactly the ``TransientError`` codes: the client also resends ``worker_crashed`` (this
broker never sends it: it answers ``task_failed`` once retries are spent), and the broker no
longer requeues ``quota`` (no worker sends it).
"""
import threading
from collections import Counter

import zmq
from cluster_helpers import FAST_HEARTBEAT_S

from engine import Client
from engine import protocol as P
from engine.errors import ERRORS_BY_CODE, ProtocolError, TaskError, VersionError, is_retryable

WIRE_CODES = sorted({*ERRORS_BY_CODE, ProtocolError.code, VersionError.code})
RETRYABLE = {c for c in WIRE_CODES if is_retryable(c)}
WAIT_S = 30.0


class Scripted:
    """A peer on one socket (its own thread) that answers each task whose payload names a code
    with an ERROR of that code the first time, and with a REPLY when the task comes again."""

    def __init__(self, sock: zmq.Socket, greet: list | None = None) -> None:
        self.sock, self.greet = sock, greet
        self.seen: Counter = Counter()  # payload (the code) -> times the task arrived
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self.sock.close(0)

    def _send(self, route: list, frames: list) -> None:
        self.sock.send_multipart([*route, *frames])

    def _run(self) -> None:
        if self.greet is not None:
            self._send([], self.greet)
        while not self._stop.is_set():
            if self.sock.type == zmq.DEALER:
                self._send([], P.encode(P.Heartbeat()))
            if not self.sock.poll(int(FAST_HEARTBEAT_S * 500)):
                continue
            frames = self.sock.recv_multipart(copy=False)
            route = [f.bytes for f in frames[:1]] if self.sock.type == zmq.ROUTER else []
            msg, payloads = P.decode(frames[len(route):])
            if isinstance(msg, P.Heartbeat) and route:  # a client: answer as a broker does
                self._send(route, P.encode(P.Heartbeat(sender="scripted-broker")))
            elif isinstance(msg, P.Request):
                code = bytes(payloads[0].bytes if hasattr(payloads[0], "bytes") else payloads[0]).decode()
                self.seen[code] += 1
                answer = (P.error_frames(msg.task_id, code, f"scripted {code}") if self.seen[code] == 1
                          else P.reply_frames(msg.task_id, {"width": 1}, b"ok"))
                self._send(route, answer)


def _outcomes(client: Client) -> dict[str, str]:
    """code -> "retried" (a result came after the ERROR) or the code of the error the caller got."""
    futures = {code: client.submit(code.encode(), "grayscale") for code in WIRE_CODES}
    out = {}
    for code, future in futures.items():
        exc = future.exception(WAIT_S)
        out[code] = "retried" if exc is None else exc.code if isinstance(exc, TaskError) else repr(exc)
    return out


def test_the_broker_requeues_exactly_the_retryable_codes_of_its_workers(cluster_factory, zctx):
    cluster = cluster_factory(local_workers=0, extra=["--max-retries", "1"]).start_broker(wait_slots=0)
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(cluster.back)
    with Scripted(sock, greet=P.encode(P.Ready(capacity=len(WIRE_CODES), host="scripted"))) as worker:
        cluster.wait_ready(len(WIRE_CODES))
        with cluster.client(shared_memory=False, retry_busy=False) as client:
            outcomes = _outcomes(client)
    assert {c for c, o in outcomes.items() if o == "retried"} == RETRYABLE == {"busy", "worker_crashed"}
    assert all(outcomes[c] == c for c in set(WIRE_CODES) - RETRYABLE), outcomes  # passed on as it came
    assert all(worker.seen[c] == (2 if c in RETRYABLE else 1) for c in WIRE_CODES), worker.seen


def test_the_client_resends_exactly_the_retryable_codes_of_its_broker(zctx):
    sock = zctx.socket(zmq.ROUTER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    with Scripted(sock) as broker, Client(f"tcp://127.0.0.1:{port}", timeout_s=WAIT_S, shared_memory=False,
                                          heartbeat_interval_s=FAST_HEARTBEAT_S) as client:
        outcomes = _outcomes(client)
    assert {c for c, o in outcomes.items() if o == "retried"} == RETRYABLE
    assert all(outcomes[c] == c for c in set(WIRE_CODES) - RETRYABLE), outcomes  # raised as it came
    assert all(broker.seen[c] == (2 if c in RETRYABLE else 1) for c in WIRE_CODES), broker.seen


def test_busy_resends_back_off_doubling_and_spread_out():
    """The client's wait before resending a busy task: between half and all of a ceiling that doubles
    from BUSY_RETRY_S to BUSY_RETRY_MAX_S, and drawn, so tasks refused together do not return together."""
    from engine.client.core import BUSY_RETRY_MAX_S, BUSY_RETRY_S, busy_retry_delay_s

    for retries in range(8):
        ceiling_s = min(BUSY_RETRY_S * 2 ** retries, BUSY_RETRY_MAX_S)
        delays = [busy_retry_delay_s(retries) for _ in range(200)]
        assert all(ceiling_s / 2 <= d <= ceiling_s for d in delays), (retries, min(delays), max(delays))
        assert len(set(delays)) > 150 and max(delays) - min(delays) > ceiling_s / 4  # spread, not one wave
