"""The broker's hot path, both implementations, on real sockets: what it forwards itself, what
it hands to the broker, the tasks it gives back, and byte-for-byte the same frames either way.

The pure-Python twin (engine/broker/hotpath.py) is the specification; the compiled core
(engine/broker/_hotpath.pyx) must behave the same. Tests of the whole broker run with the
compiled core when it is built, and CI runs them again with ENGINE_NO_EXTENSIONS=1.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from engine import protocol as P
from engine.broker import hotpath

try:
    from engine.broker import _hotpath
except ImportError:  # not built here: the twin is tested alone, and the skip says so
    _hotpath = None

RECV_TIMEOUT_MS = 3000
IMPLS = ["python", pytest.param("compiled", marks=pytest.mark.skipif(
    _hotpath is None, reason="the compiled hot path is not built (no Cython or C compiler at install)"))]


class Rig:
    """A front and a back ROUTER driven by a hot path, a client DEALER and a worker DEALER."""

    def __init__(self, impl: str, ctx: zmq.Context, *, max_queue: int = 100, lease_s: float = 60.0) -> None:
        self.ctx = ctx
        self.front = ctx.socket(zmq.ROUTER)
        self.back = ctx.socket(zmq.ROUTER)
        for s in (self.front, self.back):
            s.linger = 0
            s.router_mandatory = 1
        fport = self.front.bind_to_random_port("tcp://127.0.0.1")
        bport = self.back.bind_to_random_port("tcp://127.0.0.1")
        cls = hotpath.HotPath if impl == "python" else _hotpath.HotPath
        self.core = cls(self.front, self.back, instance_id="inst", max_queue=max_queue, lease_s=lease_s)
        self.client = self.dealer(f"tcp://127.0.0.1:{fport}", b"client-1")
        self.worker = self.dealer(f"tcp://127.0.0.1:{bport}", b"worker-1")
        # Let the connections settle: each side says hello through the pump (the broker's part).
        self.client.send_multipart(P.encode(P.Heartbeat()))
        self.worker.send_multipart(P.encode(P.Heartbeat()))
        assert self.wait(self.core.pump_front)[0].bytes == b"client-1"
        assert self.wait(self.core.pump_back)[0].bytes == b"worker-1"
        self.core.add_route(b"client-1")

    def dealer(self, endpoint: str, ident: bytes) -> zmq.Socket:
        s = self.ctx.socket(zmq.DEALER)
        s.linger = 0
        s.routing_id = ident
        s.rcvtimeo = RECV_TIMEOUT_MS
        s.connect(endpoint)
        return s

    def wait(self, pump, timeout_s: float = 3.0):
        """Pump until it hands a message on (or fail)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = pump()
            if out is not None:
                return out
            time.sleep(0.002)
        raise AssertionError("nothing was handed on")

    def pump_until(self, condition, timeout_s: float = 3.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.core.pump_front() is None
            assert self.core.pump_back() is None
            if condition():
                return
            time.sleep(0.002)
        raise AssertionError("the condition never held")

    def request(self, tid: str, pipeline: str = "grayscale", payload: bytes = b"img", opts=None) -> None:
        self.client.send_multipart(P.request_frames(tid, pipeline, opts, payload))

    def close(self) -> None:
        for s in (self.client, self.worker, self.front, self.back):
            s.close(0)


@pytest.fixture(params=IMPLS)
def rig(request, zctx):
    r = Rig(request.param, zctx)
    yield r
    r.close()


def _head(frame) -> dict:
    return msgpack.unpackb(frame, raw=False)


def _forward_one(rig: Rig, tid: str = "t1", payload: bytes = b"img") -> list:
    rig.core.add_pipeline("grayscale", 1, False)
    rig.core.lend(b"worker-1", 0, 1)
    rig.request(tid, payload=payload)
    rig.pump_until(lambda: rig.core.tasks() == 1 and rig.core.queued() == 0)
    return rig.worker.recv_multipart()


def test_a_common_request_goes_to_a_lent_slot_and_its_reply_to_its_client(rig):
    payload = os.urandom(100_000)  # over the copy threshold: lent, not copied
    header, got = _forward_one(rig, payload=payload)
    head = _head(header)
    assert head["t"] == P.REQUEST and head["pipeline"] == "grayscale" and head["id"].endswith("@inst")
    assert got == payload
    rig.worker.send_multipart(P.reply_frames(head["id"], {"worker": "w", "format": "png"}, b"result"))
    rig.pump_until(lambda: rig.core.tasks() == 0)
    reply, out = rig.client.recv_multipart()
    msg, payloads = P.decode([reply, out])
    assert isinstance(msg, P.Reply) and msg.task_id == "t1" and payloads == [b"result"]
    assert msg.meta["worker"] == "w" and msg.meta["format"] == "png" and msg.meta["broker_ms"] >= 0
    counts, samples, returned, held, done = rig.core.collect()
    assert (counts.received, counts.completed, counts.bytes_in, counts.bytes_out) == (1, 1, len(payload), 6)
    assert [s[0] for s in samples] == [b"worker-1"] and all(x >= 0 for x in samples[0][1:])
    assert returned == [] and held == [] and [d[:2] for d in done] == [(b"worker-1", 1)]
    assert rig.core.load_of(b"worker-1") == (1, 0)  # the slot stays lent


@pytest.mark.parametrize("frames_of", [
    lambda: P.encode(P.Heartbeat()),  # not a request
    lambda: P.request_frames("t1", "edge", None, b"img"),  # a pipeline not registered
    lambda: P.request_frames("t1", "grayscale", {"deadline_ms": 5}, b"img"),  # options it leaves alone
    lambda: P.request_frames("t1", "grayscale", {"cache": 0}, b"img"),  # 0 is not false
    lambda: P.request_frames("é" * 3, "grayscale", None, b"img"),  # not ASCII
    lambda: P.request_frames("t1", "grayscale", None, b"img")[:1] + [b"a", b"b"],  # frames
    lambda: [msgpack.packb({"v": 1, "t": 2, "id": "t1", "pipeline": "grayscale", "x": 1}), b"img"],
    lambda: [msgpack.packb({"v": True, "t": 2, "id": "t1", "pipeline": "grayscale"}), b"img"],
    lambda: [b"\xc1", b"img"],
])
def test_every_other_client_message_is_handed_to_the_broker_untouched(rig, frames_of):
    rig.core.add_pipeline("grayscale", 1, False)
    rig.core.lend(b"worker-1", 0, 1)
    frames = frames_of()
    rig.client.send_multipart(frames)
    out = rig.wait(rig.core.pump_front)
    assert [f.bytes for f in out] == [b"client-1", *frames]
    assert rig.core.tasks() == 0 and rig.core.collect()[0].received == 0


def test_a_refused_client_a_resend_of_the_broker_s_and_a_closed_door_go_to_the_broker(rig):
    rig.core.add_pipeline("grayscale", 1, False)
    rig.core.block_route(b"client-1", True, True)
    rig.request("t1")
    assert rig.wait(rig.core.pump_front)[0].bytes == b"client-1"
    rig.core.block_route(b"client-1", True, False)  # replies wait, but under the refuse limits
    rig.request("t1b")
    rig.pump_until(lambda: rig.core.tasks() == 1)
    rig.core.take(b"client-1", "t1b")
    rig.core.block_route(b"client-1", False)
    rig.core.note_held(b"client-1", "t2", True)  # the broker holds this task: a resend is the broker's
    rig.request("t2")
    assert rig.wait(rig.core.pump_front) is not None
    rig.request("t2b")  # another task of the same client is not
    rig.pump_until(lambda: rig.core.tasks() == 1)
    rig.core.note_held(b"client-1", "t2", False)
    rig.core.accepting = False
    rig.request("t3")
    assert rig.wait(rig.core.pump_front) is not None
    rig.core.accepting = True
    rig.request("t4")
    rig.pump_until(lambda: rig.core.tasks() == 2)


def test_a_cached_pipeline_takes_the_hot_path_only_when_the_request_opts_out(rig):
    rig.core.add_pipeline("grayscale", 1, True)
    rig.request("t1")
    assert rig.wait(rig.core.pump_front) is not None
    rig.request("t2", opts={"cache": False})
    rig.pump_until(lambda: rig.core.tasks() == 1)
    assert rig.core.holds(b"client-1", "t2") and not rig.core.holds(b"client-1", "t1")


def test_a_resend_of_a_held_task_is_counted_and_dropped(rig):
    rig.core.add_pipeline("grayscale", 1, False)
    rig.request("t1")
    rig.request("t1")
    rig.pump_until(lambda: rig.core.collect()[0].received == 0 and rig.core.tasks() == 1)
    assert rig.core.queued() == 1  # no slot lent: it waits here


def test_the_queue_is_bounded_and_a_full_one_hands_requests_on(zctx):
    impl = "compiled" if _hotpath is not None else "python"
    for name in ("python", impl):
        r = Rig(name, zctx, max_queue=2)
        try:
            r.core.add_pipeline("grayscale", 1, False)
            for i in range(3):
                r.request(f"t{i}")
            assert r.wait(r.core.pump_front) is not None  # the third
            assert r.core.queued() == 2
        finally:
            r.close()


def test_an_error_answer_gives_the_task_back_with_the_message(rig):
    header, _ = _forward_one(rig)
    jid_text = _head(header)["id"]
    rig.worker.send_multipart(P.error_frames(jid_text, "bad_image", "corrupt"))
    out = rig.wait(rig.core.pump_back)
    assert out[0].bytes == b"worker-1" and _head(out[1].bytes)["code"] == "bad_image"
    (taken,) = rig.core.given()
    assert taken.task_id == "t1" and taken.route == b"client-1" and taken.worker == b"worker-1"
    assert taken.payload.bytes == b"img" and taken.pipeline == "grayscale" and taken.options is None
    assert f"{taken.jid}@inst" == jid_text and rig.core.tasks() == 0
    assert rig.core.load_of(b"worker-1") == (0, 0)  # the slot went with the task


def test_an_answer_from_another_worker_is_handed_on_and_the_task_stays(rig):
    header, _ = _forward_one(rig)
    other = rig.dealer(rig.back.getsockopt_string(zmq.LAST_ENDPOINT), b"worker-2")
    try:
        other.send_multipart(P.reply_frames(_head(header)["id"], {}, b"forged"))
        assert rig.wait(rig.core.pump_back)[0].bytes == b"worker-2"
        assert rig.core.given() == [] and rig.core.tasks() == 1
    finally:
        other.close(0)


def test_a_reply_with_broker_ms_already_in_its_meta_goes_the_broker_s_way(rig):
    header, _ = _forward_one(rig)
    rig.worker.send_multipart(P.reply_frames(_head(header)["id"], {"broker_ms": 1.0}, b"r"))
    assert rig.wait(rig.core.pump_back) is not None
    assert len(rig.core.given()) == 1


def test_tasks_come_back_by_client_worker_lease_and_queue(zctx):
    for impl in [p if isinstance(p, str) else p.values[0] for p in IMPLS]:
        if impl == "compiled" and _hotpath is None:
            continue
        r = Rig(impl, zctx, lease_s=0.0)
        try:
            r.core.add_pipeline("grayscale", 1, False)
            r.core.lend(b"worker-1", 0, 1)
            for i in range(3):
                r.request(f"t{i}")
            r.pump_until(lambda: r.core.tasks() == 3)
            assert r.core.queued() == 2 and r.core.idle_slots() == 0
            (late,) = r.core.take_expired(time.monotonic())  # a lease of 0 s: the running one
            assert late.task_id == "t0" and late.worker == b"worker-1"
            assert r.core.take(b"client-1", "t1").task_id == "t1"
            assert r.core.take(b"client-1", "t1") is None
            assert [t.task_id for t in r.core.take_queued()] == ["t2"]
            assert r.core.tasks() == 0 and r.core.queued() == 0
        finally:
            r.close()


def test_retire_and_remove_route_give_back_what_they_held(rig):
    rig.core.add_pipeline("grayscale", 1, False)
    rig.core.lend(b"worker-1", 0, 2)
    rig.request("t1")
    rig.request("t2")
    rig.pump_until(lambda: rig.core.tasks() == 2 and rig.core.queued() == 0)
    assert sorted(t.task_id for t in rig.core.retire(b"worker-1")) == ["t1", "t2"]
    assert rig.core.load_of(b"worker-1") == (0, 0) and rig.core.reclaim() == []
    rig.core.lend(b"worker-1", 0, 1)
    rig.request("t3")
    rig.pump_until(lambda: rig.core.tasks() == 1)
    assert [t.task_id for t in rig.core.remove_route(b"client-1")] == ["t3"]
    assert rig.core.reclaim() == [(b"worker-1", 0)] or rig.core.load_of(b"worker-1") == (0, 0)


def test_replies_to_a_blocked_client_are_held_for_the_broker_in_order(rig):
    header, _ = _forward_one(rig)
    rig.core.block_route(b"client-1", True)
    rig.worker.send_multipart(P.reply_frames(_head(header)["id"], {"k": 1}, b"r1"))
    rig.pump_until(lambda: rig.core.tasks() == 0)
    (route, frames), = rig.core.collect()[3]
    assert route == b"client-1" and _head(frames[0])["id"] == "t1" and frames[1].bytes == b"r1"


def test_a_hungry_broker_gets_each_freed_slot_back(rig):
    header, _ = _forward_one(rig)
    rig.core.hungry = True
    rig.worker.send_multipart(P.reply_frames(_head(header)["id"], {}, b"r"))
    rig.pump_until(lambda: rig.core.tasks() == 0)
    assert rig.core.collect()[2] == [b"worker-1"] and rig.core.load_of(b"worker-1") == (0, 0)


def test_only_workers_of_a_kind_the_pipeline_takes_get_it(rig):
    rig.core.add_pipeline("faces", 1 << 5, False)
    rig.core.lend(b"worker-1", 3, 1)
    rig.request("t1", pipeline="faces")
    rig.pump_until(lambda: rig.core.tasks() == 1)
    assert rig.core.queued() == 1  # worker-1 is of kind 3; only kind 5 offers faces
    rig.core.reclaim()
    rig.core.lend(b"worker-1", 5, 1)
    rig.pump_until(lambda: rig.core.queued() == 0)
    assert _head(rig.worker.recv_multipart()[0])["pipeline"] == "faces"


def _ref_request(rig: Rig, tid: str, name: bytes = b"engine-1-0123456789abcdef-1") -> None:
    rig.client.send_multipart(P.request_frames(tid, "grayscale", None, name, ref=True))


def test_a_task_by_reference_goes_only_to_a_worker_that_reads_shared_memory(rig):
    rig.core.add_pipeline("grayscale", (1 << 2) | (1 << 4), False)  # kind 2 reads shared memory, kind 4 not
    rig.core.ref_mask = 1 << 2
    rig.core.set_route_shm(b"client-1", True)
    rig.core.lend(b"worker-1", 4, 1)
    _ref_request(rig, "t1")
    rig.pump_until(lambda: rig.core.tasks() == 1)
    assert rig.core.queued() == 1  # worker-1 is of kind 4: it cannot read the segment
    rig.core.set_kind(b"worker-1", 2)  # it proved it reads shared memory
    rig.pump_until(lambda: rig.core.queued() == 0)
    header, payload = rig.worker.recv_multipart()
    head = _head(header)
    assert head["ref"] is True and payload == b"engine-1-0123456789abcdef-1"
    taken = rig.core.take_jid(int(head["id"].split("@")[0]))
    assert taken.ref is True and taken.payload.bytes == payload


@pytest.mark.parametrize("case", ["unproven", "no_worker_reads", "ref_false"])
def test_a_task_by_reference_the_hot_path_cannot_serve_goes_to_the_broker(rig, case):
    rig.core.add_pipeline("grayscale", 1 << 4, False)
    rig.core.ref_mask = 1 << 4 if case != "no_worker_reads" else 1 << 2
    rig.core.set_route_shm(b"client-1", case != "unproven")
    rig.core.lend(b"worker-1", 4, 1)
    if case == "ref_false":
        rig.client.send_multipart([msgpack.packb({"v": 1, "t": 2, "id": "t1", "pipeline": "grayscale",
                                                  "ref": False}), b"name"])
    else:
        _ref_request(rig, "t1")
    frames = rig.wait(rig.core.pump_front)
    assert _head(frames[1]).get("ref") in (True, False) and rig.core.tasks() == 0


@pytest.mark.skipif(_hotpath is None, reason="the compiled hot path is not built")
def test_both_implementations_send_the_same_bytes_by_reference(zctx):
    seen = {}
    for impl in ("python", "compiled"):
        r = Rig(impl, zctx)
        try:
            r.core.add_pipeline("grayscale", 1, False)
            r.core.ref_mask = 1
            r.core.set_route_shm(b"client-1", True)
            r.client.send_multipart(P.request_frames("t1", "grayscale", {"cache": False}, b"seg", ref=True))
            r.client.send_multipart(P.request_frames("t2", "grayscale", None, b"seg2", ref=True))
            r.pump_until(lambda: r.core.queued() == 2)
            r.core.lend(b"worker-1", 0, 1)
            to_worker = r.worker.recv_multipart()
            head = _head(to_worker[0])
            jid = head["id"].split("@")[0]
            seen[impl] = (to_worker[0].replace(jid.encode(), b"JID"), to_worker[1], dict(head, id="JID"))
        finally:
            r.close()
    assert seen["python"] == seen["compiled"]
    assert seen["python"][2] == {"v": 1, "t": 2, "id": "JID", "pipeline": "grayscale", "opts": {"cache": False},
                                 "more": True, "ref": True}


@pytest.mark.skipif(_hotpath is None, reason="the compiled hot path is not built")
def test_both_implementations_send_the_same_bytes(zctx):
    seen = {}
    for impl in ("python", "compiled"):
        r = Rig(impl, zctx)
        try:
            r.core.add_pipeline("resize:width=64|jpeg:quality=80", 1, True)
            r.request("t" * 40, pipeline="resize:width=64|jpeg:quality=80", payload=b"x" * 70_000,
                      opts={"cache": False})
            r.request("u", pipeline="resize:width=64|jpeg:quality=80", opts={"cache": False})
            r.pump_until(lambda: r.core.queued() == 2)  # both wait: the first goes with "more"
            r.core.lend(b"worker-1", 0, 1)
            to_worker = r.worker.recv_multipart()
            jid_text = _head(to_worker[0])["id"]
            r.worker.send_multipart(P.reply_frames(jid_text, {"worker": "w", "nested": {"a": [1, 2.5, None]}},
                                                   b"result"))
            r.pump_until(lambda: r.core.tasks() == 1)
            to_client = r.client.recv_multipart()
            head = _head(to_client[0])
            head["meta"]["broker_ms"] = 0.0
            jid = jid_text.split("@")[0]
            seen[impl] = (to_worker[0].replace(jid.encode(), b"JID"), to_worker[1], head, to_client[1],
                          len(jid_text))
        finally:
            r.close()
    assert seen["python"][:4] == seen["compiled"][:4]


@pytest.mark.skipif(_hotpath is None, reason="the compiled hot path is not built")
def test_the_compiled_core_uses_the_one_libzmq_pyzmq_loaded():
    """pyzmq's wheel ships libzmq under a hashed name with no zmq.h: linking -lzmq would map a
    second copy, whose functions reject pyzmq's socket handles (ENOTSOCK). The core links none
    and calls the copy pyzmq loaded: one libzmq in the process, and sockets that work."""
    code = ("import zmq, sys; from engine.broker import _hotpath\n"
            "ctx = zmq.Context(); a = ctx.socket(zmq.ROUTER); b = ctx.socket(zmq.ROUTER)\n"
            "core = _hotpath.HotPath(a, b, instance_id='x', max_queue=1, lease_s=1.0)\n"
            "assert core.pump_front() is None and core.pump_back() is None\n"
            "maps = {l.split()[-1] for l in open('/proc/self/maps') if 'libzmq' in l.rsplit('/', 1)[-1]}\n"
            "print(len(maps), sorted(maps))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] in ("0", "1"), out.stdout  # 0: libzmq linked into pyzmq's own module
    needed = subprocess.run(["readelf", "-d", _hotpath.__file__], capture_output=True, text=True)
    if needed.returncode == 0:
        assert "libzmq" not in needed.stdout  # no DT_NEEDED entry that could map another copy


def test_the_broker_says_which_hot_path_it_runs(tmp_path):
    env = {**os.environ, hotpath.ENV_NO_EXTENSIONS: "1"}
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
            "from engine.broker.config import BrokerConfig; from engine.broker.core import Broker\n"
            "b = Broker(BrokerConfig(front='tcp://127.0.0.1:0', back='tcp://127.0.0.1:0')); b.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert "broker hot path: pure Python (ENGINE_NO_EXTENSIONS is set)" in out.stdout, out.stdout + out.stderr
    env.pop(hotpath.ENV_NO_EXTENSIONS)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    want = "broker hot path: compiled" if _hotpath is not None else "broker hot path: pure Python"
    assert want in out.stdout, out.stdout + out.stderr


def test_without_a_c_compiler_the_build_still_succeeds_on_the_python_path(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        (tmp_path / name).write_bytes(Path(root, name).read_bytes())
    broker = tmp_path / "engine" / "broker"
    broker.mkdir(parents=True)
    for name in ("_hotpath.pyx", "_hotpath_core.h"):
        (broker / name).write_bytes(Path(root, "engine", "broker", name).read_bytes())
    env = {k: v for k, v in os.environ.items() if k != hotpath.ENV_NO_EXTENSIONS}
    env.update(CC="/bin/false", LDSHARED="/bin/false")
    out = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "compiled hot path was not built" in out.stderr and "pure-Python twin" in out.stderr
    assert not list(broker.glob("*.so"))


def test_a_real_broker_answers_most_of_a_batch_on_the_hot_path(cluster, jpegs):
    """Not only correct but used: after a pipeline's first task (the Python path checks it),
    a batch from one client is answered by the hot path (a regression once sent all of them
    the slow way, unnoticed, because every answer was still right)."""
    image = jpegs["coins.jpg"]
    with cluster.client() as client:
        results = list(client.imap_unordered([image] * 60, "grayscale", window=16))
        info = client.info()
    assert len(results) == 60 and all(r.format == "jpeg" for r in results)
    hot = info["hot_path"]
    assert hot is not None and hot["answered"] >= 30, hot
    assert hot["compiled"] == (_hotpath is not None and not os.environ.get(hotpath.ENV_NO_EXTENSIONS))
    assert hot["tasks"] == 0 and info["queue_depth"] == 0 and info["in_flight"] == 0
