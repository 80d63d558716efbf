"""Hostile input on the compat JSON sockets and on a worker's own socket: every message
gets an answer or is dropped, no process stops, and every compat answer is strict JSON."""
import base64
import json
import time

import msgpack
import pytest
import zmq
from cluster_helpers import FAST_HEARTBEAT_S, free_port, recv_within
from faults_helpers import tiny_jpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import protocol as P

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _strict(raw: bytes) -> dict:
    """Parse as a strict JSON reader would: NaN and Infinity are not JSON."""
    def refuse(text):
        raise ValueError(f"non-finite number {text} in an answer")

    obj = json.loads(raw, parse_constant=refuse)
    assert isinstance(obj, dict)
    return obj


def _socket(zctx, kind: int, port: int) -> zmq.Socket:
    sock = zctx.socket(kind)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def _image_b64() -> str:
    return base64.b64encode(tiny_jpeg(16)).decode()


HOSTILE = [
    b"[" * 100_000,  # deep nesting: the parser's recursion
    b'{"task_id": ' + b"[" * 50_000 + b"]" * 50_000 + b', "task": "grayscale", "image": ""}',
    b'{"task_id": NaN, "task": "grayscale", "image": "' + _image_b64().encode() + b'"}',
    b'{"task_id": 1e400, "task": "grayscale", "image": "' + _image_b64().encode() + b'"}',
    b'{"task_id": Infinity, "task": "grayscale", "image": "x"}',
    b'{"task_id": 1, "task": "grayscale", "image": "' + _image_b64().encode() + b'", "x": -Infinity}',
    json.dumps({"task_id": "t", "task": "grayscale|" * 50_000, "image": _image_b64()}).encode(),
    json.dumps({"task_id": "x" * 10_000, "task": "grayscale", "image": _image_b64()}).encode(),
    json.dumps({"task_id": 10**30, "task": "grayscale", "image": _image_b64()}).encode(),
    json.dumps({"task_id": True, "task": "grayscale", "image": _image_b64()}).encode(),
    b"\xff\xfe not utf-8",
    b"",
    json.dumps({"task_id": 7, "task": "grayscale", "image": "not base64!"}).encode(),
    json.dumps([1, 2, 3]).encode(),
]


@pytest.fixture
def compat_cluster(cluster_factory):
    return cluster_factory(local_workers=1, compat=True).start_broker()


def test_hostile_json_on_the_compat_router_gets_strict_json_errors_and_the_broker_keeps_serving(compat_cluster, zctx):
    router = _socket(zctx, zmq.DEALER, compat_cluster.compat_ports["router"])
    for raw in HOSTILE:
        router.send(raw)
        answer = _strict(recv_within(router, 15)[-1])
        assert answer["code"] in ("bad_message", "bad_pipeline", "unknown_operation", "bad_parameter"), (raw[:60],
                                                                                                         answer)
        assert answer["error"]
    router.send(json.dumps({"task_id": "ok", "task": "grayscale", "image": _image_b64()}).encode())
    assert _strict(recv_within(router, 30)[-1])["task_id"] == "ok"
    assert compat_cluster.broker.alive()
    with compat_cluster.client() as client:
        assert client.process(tiny_jpeg(24), "grayscale").width == 24


def test_hostile_json_on_the_compat_pull_socket_cannot_stop_the_broker(compat_cluster, zctx):
    push = _socket(zctx, zmq.PUSH, compat_cluster.compat_ports["pull"])
    pull = _socket(zctx, zmq.PULL, compat_cluster.compat_ports["push"])
    for raw in HOSTILE:
        push.send(raw)
    answers = [_strict(recv_within(pull, 15)[-1]) for _ in HOSTILE]
    assert all(a.get("error") for a in answers)
    assert compat_cluster.broker.alive()
    push.send(json.dumps({"task_id": 5, "task": "grayscale", "image": _image_b64()}).encode())
    assert _strict(recv_within(pull, 30)[-1])["task_id"] == 5


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=20)


@st.composite
def compat_requests(draw):
    """A request with one field replaced by anything JSON can say (NaN included), or raw bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    obj = {"task_id": 1, "task": "grayscale", "image": _image_b64()}
    obj[draw(st.sampled_from(["task_id", "task", "image", "token", "extra"]))] = draw(JSON_VALUES)
    return json.dumps(obj).encode()  # Python writes NaN/Infinity for non-finite floats


def test_fuzzed_compat_requests_each_get_a_strict_json_answer(compat_cluster, zctx):
    router = _socket(zctx, zmq.DEALER, compat_cluster.compat_ports["router"])
    counts = {"errors": 0, "results": 0}

    @FUZZ
    @given(compat_requests())
    def check(raw):
        router.send(raw)
        answer = _strict(recv_within(router, 30)[-1])
        counts["errors" if "error" in answer else "results"] += 1

    check()
    assert compat_cluster.broker.alive()
    print(f"FIGURES compat fuzz: {counts}")


# ---- a worker against a hostile broker ------------------------------------------------------
@pytest.fixture
def fake_broker(zctx):
    """A ROUTER standing in for the broker; a real worker (one process) connects to it."""
    from cluster_helpers import Proc

    port = free_port()
    router = zctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(f"tcp://127.0.0.1:{port}")
    worker = Proc(["-m", "engine.worker", "--connect", f"tcp://127.0.0.1:{port}", "--processes", "1",
                   "--heartbeat-interval-s", str(FAST_HEARTBEAT_S)])
    try:
        yield router, worker
    finally:
        worker.stop()


def _next(router: zmq.Socket, want: type, timeout_s: float = 60.0):
    """The worker's next message of type ``want`` (heartbeats answered, as a broker would)."""
    end_s = time.monotonic() + timeout_s
    while time.monotonic() < end_s:
        frames = recv_within(router, max(0.1, end_s - time.monotonic()))
        msg, payloads = P.decode(frames[1:])
        if isinstance(msg, P.Heartbeat):
            router.send_multipart([frames[0], *P.encode(P.Heartbeat(sender="fake"))])
        if isinstance(msg, want):
            return frames[0], msg, payloads
    raise AssertionError(f"no {want.__name__} from the worker within {timeout_s} s")


def _registered(router: zmq.Socket) -> tuple[bytes, P.Ready, bytes]:
    """The pool process's READY and the supervisor's (its host's control connection), in either order."""
    process = control = None
    while process is None or control is None:
        wid, ready, _ = _next(router, P.Ready)
        if ready.control:
            control = wid
        else:
            process = (wid, ready)
    return process[0], process[1], control


def test_a_worker_survives_whatever_a_hostile_broker_sends(fake_broker):
    """Its pool process and its supervisor (the host's control connection) both get it all."""
    router, worker = fake_broker
    wid, ready, control = _registered(router)
    assert ready.capacity >= 1 and ready.group == control.decode()
    hostile = [
        [b"garbage"], [b"", b"", b""], [msgpack.packb({"v": 1, "t": P.REQUEST})],
        [msgpack.packb({"v": 1, "t": P.REQUEST, "id": "n1", "pipeline": [[[[[]]]]] * 50, "opts": {}}), b"x"],
        P.encode(P.Request(task_id="n2", pipeline="grayscale", options={"deadline_ms": "soon"}), b"x"),
        P.encode(P.Request(task_id="n3", pipeline="grayscale", options={"deadline_ms": float("nan")}), b"x"),
        P.encode(P.Request(task_id="n4", pipeline=[{"op": {"x": 1}}]), b"x"),
        P.encode(P.Request(task_id="n5", pipeline="grayscale"), b"\xff\xd8 not a jpeg"),
        P.encode(P.Heartbeat(max_message_bytes=-5)), P.encode(P.Cancel(task_id="nobody")),
        P.encode(P.Reply(task_id="n6", meta={}), b"x"), P.encode(P.Info(data={"a": 1})),
    ]
    for frames in hostile:
        router.send_multipart([control, *frames])
        router.send_multipart([wid, *frames])
    answered = set()
    for _ in range(5):  # n1..n5 each get an ERROR; the rest are dropped
        _, msg, _ = _next(router, P.Error)
        answered.add(msg.task_id)
    assert answered == {"n1", "n2", "n3", "n4", "n5"}
    router.send_multipart([wid, *P.encode(P.Request(task_id="good", pipeline="grayscale"), tiny_jpeg(20))])
    _, reply, _payloads = _next(router, P.Reply)
    assert reply.task_id == "good" and reply.meta["width"] == 20
    assert worker.alive()


def test_fuzzed_frames_from_a_hostile_broker_never_stop_a_worker(fake_broker):
    from test_faults_hostile import RANDOM, mutated

    router, worker = fake_broker
    wid, _, control = _registered(router)
    sent = []

    @FUZZ
    @given(st.one_of(RANDOM, mutated()))
    def check(frames):
        router.send_multipart([control, *frames])
        router.send_multipart([wid, *frames])
        sent.append(frames)

    check()
    router.send_multipart([wid, *P.encode(P.Request(task_id="after-fuzz", pipeline="grayscale"), tiny_jpeg(24))])
    deadline_s = time.monotonic() + 60
    while True:  # answers to fuzzed requests may come first
        _, msg, _ = _next(router, (P.Reply, P.Error), max(1.0, deadline_s - time.monotonic()))
        if msg.task_id == "after-fuzz":
            break
    assert isinstance(msg, P.Reply) and msg.meta["width"] == 24
    assert worker.alive()
    print(f"FIGURES hostile broker fuzz: {len(sent)} messages to one worker; it kept serving")
