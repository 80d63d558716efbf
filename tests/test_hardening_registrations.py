"""Registrations cannot slow everyone down: workers per host and in all, free slots per host and
distinct declarations are bounded; an idle registration that does not heartbeat is dropped even
while its host's control connection does; and picking a worker, or checking a new pipeline,
costs one look per kind of worker, however many idle workers are registered (counted, socket-free)."""
import time

import pytest
import zmq
from cluster_helpers import FAST_HEARTBEAT_S, recv_within
from faults_helpers import wait_until

from engine import pipeline_syntax
from engine import protocol as P
from engine.broker.pipelines import PipelineChecker
from engine.broker.state import Dispatcher, Task
from engine.logbound import LINES_PER_WINDOW

NOOP = {"noop": {"params": []}}
BLUR = {"blur": {"params": []}}


class _Origin:
    key, client = ("test", b"c"), "c"

    @staticmethod
    def dedup_key(task_id):
        return None


def _task(d: Dispatcher, needs: frozenset) -> Task:
    task = Task(jid=d.new_jid(), origin=_Origin(), task_id="t", request=None, payload=b"x", received_s=0.0,
                needs=needs)
    d.admit(task)
    return task


def _looks_per_task(idle_workers: int, tasks: int = 100) -> float:
    """One worker runs noop; ``idle_workers`` others (all free, registered after it) run only blur."""
    d = Dispatcher(max_queue=1000, liveness_s=10.0, max_workers_per_host=10**6, max_workers=10**6,
                   max_slots_per_host=10**7)
    d.ready(b"runner", 1, 0.0, host="a", ops=NOOP)
    for n in range(idle_workers):
        d.ready(f"idle-{n}".encode(), 2, 0.0, host="b", ops=BLUR)
    for _ in range(tasks):
        task = _task(d, frozenset({"noop"}))
        ((given, worker),) = list(d.assignments())
        assert given is task and worker.wid == b"runner"
        d.release(b"runner", task.jid)  # its slot back: the runner is the most recently used again
        d.finish(task.jid)
    return d.looks / tasks


def test_picking_a_worker_costs_one_look_per_kind_however_many_idle_workers_are_registered():
    few, many = _looks_per_task(10), _looks_per_task(5000)
    assert few == many <= 2  # two kinds of worker: noop's and blur's (before: one look per idle worker)


def test_the_hot_path_picks_with_one_look_per_kind(rig_factory):
    for impl in rig_factory.impls:
        rig = rig_factory(impl)
        rig.core.add_pipeline("grayscale", 1, False)
        for n in range(3000):  # idle lent slots of another kind, lent before the one that runs grayscale
            rig.core.lend(f"idle-{n}".encode(), 3, 1)
        rig.core.lend(b"worker-1", 0, 50)
        for n in range(50):
            rig.request(f"t{n}")
        rig.pump_until(lambda: rig.core.tasks() == 50 and rig.core.queued() == 0)
        assert rig.core.looks == 50, impl  # one kind in grayscale's mask: one look per task
        rig.close()


def test_workers_slots_and_declarations_are_bounded():
    d = Dispatcher(max_queue=10, liveness_s=10.0, max_workers=8, max_workers_per_host=3, max_slots_per_host=100,
                   max_declarations=2)
    for n in range(3):
        assert d.refusal(f"a{n}".encode(), "host-a", NOOP) is None
        d.ready(f"a{n}".encode(), 1024, 0.0, host="host-a", ops=NOOP)
    assert "--max-workers-per-host" in d.refusal(b"a3", "host-a", NOOP)
    assert sum(w.free for w in d.workers.values()) == 100  # 3 x 1024 claimed, 100 per host kept
    assert d.refusal(b"b0", "host-b", BLUR) is None  # a second declaration
    d.ready(b"b0", 1, 0.0, host="host-b", ops=BLUR)
    assert "--max-declarations" in d.refusal(b"b1", "host-b", {"sharpen": {"params": []}})
    assert d.refusal(b"b1", "host-b", BLUR) is None  # one already declared is welcome
    for n in range(1, 5):
        d.ready(f"b{n}".encode(), 1, 0.0, host=f"host-{n}", ops=BLUR)
    assert "--max-workers" in d.refusal(b"c0", "host-c", NOOP)


def test_a_new_pipeline_is_checked_once_per_declaration_whatever_was_tried(monkeypatch):
    d = Dispatcher(max_queue=10, liveness_s=10.0, max_declarations=4)
    registered = 0
    for n in range(2000):  # 2,000 distinct declarations tried: only 4 get in
        ops = {f"op{n}": {"params": []}, **NOOP}
        if d.refusal(f"w{n}".encode(), f"h{n}", ops) is None:
            d.ready(f"w{n}".encode(), 1, 0.0, host=f"h{n}", ops=ops)
            registered += 1
    assert registered == 4 and len(d.declarations()) == 4
    calls = []
    real = pipeline_syntax.check
    monkeypatch.setattr(pipeline_syntax, "check", lambda *a, **k: calls.append(1) or real(*a, **k))
    checker = PipelineChecker(d)
    assert checker.check("noop").canonical == "noop"
    assert len(calls) == 4


def _dealer(zctx, endpoint: str, ident: bytes) -> zmq.Socket:
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = ident
    sock.connect(endpoint)
    return sock


def _refused(sock: zmq.Socket) -> bool:
    """Whether the broker answered this registration with a refusal (else it sent a heartbeat)."""
    while True:
        msg, _ = P.decode(recv_within(sock, 5))
        if isinstance(msg, P.Disconnect):
            return "registration refused" in (msg.reason or "")
        if isinstance(msg, P.Heartbeat):
            return False


def test_a_peer_cannot_register_more_workers_than_a_host_may_have(cluster_factory, zctx):
    cluster = cluster_factory(local_workers=0, extra=["--max-workers-per-host", "4"]).start_broker(wait_slots=0)
    socks = [_dealer(zctx, cluster.back, f"fake-{n}".encode()) for n in range(12)]
    for sock in socks:
        sock.send_multipart(P.encode(P.Ready(capacity=1000, host="one-host", ops=NOOP)))
    refused = [_refused(sock) for sock in socks]
    info = cluster.info()
    assert refused.count(False) == 4 and refused.count(True) == 8
    assert len(info["workers"]) == 4
    assert info["workers_refused"] == 8
    log = cluster.broker.stderr_text()
    assert 1 <= log.count("refused to register worker") <= LINES_PER_WINDOW  # then a summary a minute


def test_an_idle_pool_process_that_does_not_heartbeat_is_dropped_while_its_control_lives(cluster_factory, zctx):
    cluster = cluster_factory(local_workers=0).start_broker(wait_slots=0)
    control = _dealer(zctx, cluster.back, b"control-1")
    control.send_multipart(P.encode(P.Ready(capacity=0, host="h", control=True, processes=1)))
    member = _dealer(zctx, cluster.back, b"member-1")
    member.send_multipart(P.encode(P.Ready(capacity=2, host="h", group="control-1", ops=NOOP)))
    wait_until(lambda: sum(w["free"] for w in cluster.info()["workers"]) == 2, timeout_s=10)
    end_s = time.monotonic() + 10 * FAST_HEARTBEAT_S
    while time.monotonic() < end_s:  # the control heartbeats; its idle member says nothing
        control.send_multipart(P.encode(P.Heartbeat()))
        time.sleep(FAST_HEARTBEAT_S / 2)
    rows = cluster.info()["workers"]  # one row per host: its control, its processes summed
    assert len(rows) == 1 and rows[0]["free"] == 0, rows


@pytest.fixture
def rig_factory(zctx):
    from test_broker_hotpath import IMPLS, Rig

    def make(impl):
        return Rig(impl, zctx, max_queue=1000)

    make.impls = [p if isinstance(p, str) else p.values[0] for p in IMPLS
                  if isinstance(p, str) or not any(m.args and m.args[0] for m in p.marks)]
    return make
