"""Lines a stranger can make the broker write are bounded per minute, however many keys it uses.

Refused CURVE handshakes come from anyone who can reach the port, each with a fresh key if
it likes: the broker writes a few of them in full per minute and one summary line with the
counts (engine/logbound.py), counts every one in INFO, and keeps serving allowed clients.
"""
import logging
import re
import time
import tracemalloc

import zmq
from faults_helpers import wait_until
from zmq.utils.monitor import recv_monitor_message

from engine import logbound
from engine.logbound import LogBound

FLOOD = 2000  # refused connections, each with a fresh key
BATCH = 100  # connections open at once in the test process (each takes 3 sockets and 4 descriptors)
HANDSHAKE_TIMEOUT_S = 60.0  # the broker answers a batch's handshakes well within this, even under load
BAD_MESSAGES = 500  # from one peer on the workers socket
SUMMARY = re.compile(r"refused clients connections: (\d+) in \d+ s from (at least )?(\d+) key\(s\), "
                     r"(\d+) of them not logged one by one")


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def _bound(clock: Clock, name: str) -> LogBound:
    return LogBound(logging.getLogger(name), "knocks", lines=3, window_s=60.0, keys=5, clock=clock)


def _messages(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_a_bound_writes_a_few_lines_per_window_then_one_summary_with_the_counts(caplog):
    clock, name = Clock(), "test.logbound.window"
    bound = _bound(clock, name)
    with caplog.at_level(logging.WARNING, logger=name):
        written = []
        for i in range(100):  # 100 knocks from 50 keys, the first key knocking twice at once
            clock.now_s += 0.1
            written.append(bound.log(i // 2, "knock from %d", i // 2))
        assert written[:6] == [True, False, True, False, True, False] and not any(written[6:])
        assert _messages(caplog, name) == ["knock from 0", "knock from 1", "knock from 2"]
        bound.flush()  # the window is not over: nothing yet
        assert len(_messages(caplog, name)) == 3
        clock.now_s += 60
        bound.flush()
        bound.flush()  # once
        assert _messages(caplog, name)[3:] == [
            ("knocks: 100 in 60 s from at least 5 key(s), 97 of them not logged one by one "
             "(each key's first, up to 3 lines per 60 s)")]
        assert bound.total == 100

        # A new window: written in full again; a window all written has no summary.
        assert bound.log("late", "knock from %s", "late") is True
        clock.now_s += 61
        bound.flush()
        assert _messages(caplog, name)[4:] == ["knock from late"]

        # The summary of a window that is over also comes with the first event after it.
        for key in ("a", "a", "b"):
            bound.log(key, "knock from %s", key)
        clock.now_s += 120
        assert bound.log("c", "knock from %s", "c") is True
        assert _messages(caplog, name)[5:] == [
            "knock from a", "knock from b",
            ("knocks: 3 in 60 s from 2 key(s), 1 of them not logged one by one "
             "(each key's first, up to 3 lines per 60 s)"),
            "knock from c"]


def test_flush_all_writes_the_summary_of_an_open_window(caplog):
    clock, name = Clock(), "test.logbound.final"
    bound = _bound(clock, name)
    with caplog.at_level(logging.WARNING, logger=name):
        for key in range(4):
            bound.log(key, "knock from %s", key)
        clock.now_s += 12
        logbound.flush_due()  # its window is not over
        assert len(_messages(caplog, name)) == 3
        logbound.flush_all()  # the process stops
        assert _messages(caplog, name)[3:] == [
            ("knocks: 4 in 12 s from 4 key(s), 1 of them not logged one by one "
             "(each key's first, up to 3 lines per 60 s)")]


def test_a_bound_holds_a_bounded_set_of_keys_however_many_it_sees():
    clock = Clock()
    bound = LogBound(logging.getLogger("test.logbound.memory"), "knocks", clock=clock)
    keys = [i.to_bytes(32, "big") for i in range(50_000)]
    tracemalloc.start()
    try:
        for key in keys:
            bound.log(key, "knock")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bound.total == len(keys)
    assert peak < 256 * 1024, f"{peak} bytes held for {len(keys)} keys"  # remembering them all: over 2 MB


def _refused_batch(front: str, broker_key: bytes, count: int) -> int:
    """Connect ``count`` sockets with fresh keys at once (no reconnects); how many the broker refused."""
    ctx = zmq.Context()
    ctx.max_sockets = 4 * count + 16
    socks, monitors = [], {}
    try:
        for _ in range(count):
            sock = ctx.socket(zmq.DEALER)
            sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
            sock.curve_serverkey = broker_key
            sock.reconnect_ivl = -1  # one handshake per key
            mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
            sock.connect(front)
            socks.append(sock)
            monitors[mon] = sock
        poller = zmq.Poller()
        for mon in monitors:
            poller.register(mon, zmq.POLLIN)
        refused, deadline_s = 0, time.monotonic() + HANDSHAKE_TIMEOUT_S
        while monitors and time.monotonic() < deadline_s:
            for mon, _ in poller.poll(1000):
                event = recv_monitor_message(mon)
                assert event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH, event  # never let in
                refused += 1
                poller.unregister(mon)
                monitors.pop(mon).disable_monitor()
                mon.close(linger=0)
        assert not monitors, f"{len(monitors)} handshakes of {count} not answered in {HANDSHAKE_TIMEOUT_S} s"
        return refused
    finally:
        for mon, sock in monitors.items():
            sock.disable_monitor()
            mon.close(linger=0)
        for sock in socks:
            sock.close(linger=0)
        ctx.term()


def _refusal_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "refused a clients connection" in line]


def test_a_flood_of_fresh_keys_writes_a_bounded_log_and_every_refusal_is_counted(secure_factory, ring, jpegs):
    cluster = secure_factory(local_workers=1).start_broker(wait_slots=1)
    photo = next(iter(jpegs.values()))
    broker_key = ring.peer("alice").server
    refused = 0
    with cluster.client("alice", timeout_s=120.0) as alice:
        started_s = time.monotonic()
        for _ in range(FLOOD // BATCH):
            served = alice.submit(photo, "noop")  # sent as the batch knocks
            refused += _refused_batch(cluster.front, broker_key, BATCH)
            assert served.result(timeout=120).data == photo  # the allowed client is still served
        flood_s = time.monotonic() - started_s
        windows = 1 + int(flood_s // logbound.WINDOW_S)  # the flood takes seconds: one window, unless very slow
        written = _refusal_lines(cluster.broker.stderr_text())
        assert refused == FLOOD and len(written) <= windows * logbound.LINES_PER_WINDOW, (len(written), written[-3:])
        wait_until(lambda: alice.info()["security"]["refused_connections"]["clients"] >= refused, 30,
                   "the broker to count every refusal")
        assert alice.info()["security"]["refused_connections"] == {"clients": refused, "workers": 0}
    cluster.broker.stop()  # the summary of the open window is written as it stops
    log = cluster.broker.stderr_text()
    lines = _refusal_lines(log)
    summaries = [SUMMARY.search(line) for line in log.splitlines() if "refused clients connections:" in line]
    assert len(lines) + len(summaries) <= windows * (logbound.LINES_PER_WINDOW + 1), (len(lines), log[-3000:])
    assert all(summaries) and summaries, log[-3000:]
    assert len(lines) + sum(int(s.group(4)) for s in summaries) == refused  # each written or counted
    assert all(int(s.group(3)) <= logbound.KEYS_COUNTED for s in summaries)


def test_a_peer_sending_bad_messages_to_the_workers_socket_gets_a_bounded_log(cluster_factory):
    cluster = cluster_factory(local_workers=0).start_broker(wait_slots=0)
    peer = zmq.Context.instance().socket(zmq.DEALER)
    try:
        peer.connect(cluster.back)
        for i in range(BAD_MESSAGES):
            peer.send(b"not msgpack %d" % i)
        wait_until(lambda: cluster.info()["bad_messages"] >= BAD_MESSAGES, 30, "the broker to read them all")
    finally:
        peer.close(linger=0)
    written = [line for line in cluster.broker.stderr_text().splitlines() if "bad message from worker" in line]
    assert len(written) == 1  # each peer's first in full, a few peers a minute
    cluster.broker.stop()
    summaries = [line for line in cluster.broker.stderr_text().splitlines() if "bad messages from workers:" in line]
    assert len(summaries) == 1 and f"{BAD_MESSAGES} in " in summaries[0], summaries
    assert f"{BAD_MESSAGES - 1} of them not logged one by one" in summaries[0]


def test_closed_connections_on_the_workers_socket_cost_a_bounded_number_of_probes():
    """Each refused handshake on the workers' socket is a closed connection: the broker looks for
    unreachable workers after one (at DISCONNECT_PROBES_S), but a flood of them must not mean a
    probe list (sorted at each event) and probes that grow with the flood."""
    from types import SimpleNamespace

    from engine.broker.workers import DISCONNECT_PROBES_S, PROBE_GRID_S, WorkerSide

    side = SimpleNamespace(_probes_s=[], _closed_s=0.0)
    started_s = time.monotonic()
    for _ in range(5000):
        WorkerSide._on_disconnect(side, [])
    spread_s = time.monotonic() - started_s
    cells = len(DISCONNECT_PROBES_S) * (2 + int(spread_s / PROBE_GRID_S))
    assert len(side._probes_s) <= cells, (len(side._probes_s), spread_s)  # one probe per event: 15000
    assert side._probes_s == sorted(side._probes_s) and side._probes_s[0] >= started_s + DISCONNECT_PROBES_S[0]
