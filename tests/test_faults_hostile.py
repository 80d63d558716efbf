"""Hostile input over real sockets: fuzzed frames, oversize messages, bad images, bombs.

The broker and every worker process must stay up (same pids, still serving) and each
bad request from a client must get an error.
"""
import struct
import zlib

import msgpack
import psutil
import pytest
import zmq
from cluster_helpers import recv_within
from faults_helpers import tiny_jpeg, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import protocol as P
from engine.errors import ImageError, ImageTooLarge, PipelineError, ProtocolError, TaskError, TaskTimeout

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
HEADER_KEYS = ["v", "t", "id", "pipeline", "opts", "cap", "ops", "sid", "code", "msg", "meta", "data", "reason"]
ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=40),
                      st.binary(max_size=40), st.lists(st.integers(), max_size=4),
                      st.dictionaries(st.text(max_size=8), st.integers(), max_size=3))
VALID = [P.encode(P.Request(task_id="t1", pipeline="grayscale"), tiny_jpeg(16)),
         P.encode(P.Request(task_id="t2", pipeline=[{"op": "resize", "params": {"width": 8}}], options={}), b"x"),
         P.encode(P.Heartbeat()), P.encode(P.Info()), P.encode(P.Ready(capacity=1)),
         P.encode(P.Reply(task_id="t3", meta={}), b"y"), P.encode(P.Error(task_id="t4", code="x", message="m"))]


@st.composite
def mutated(draw):
    """A valid message with one thing broken: a flipped byte, a field, a cut, a frame more or less."""
    frames = list(draw(st.sampled_from(VALID)))
    how = draw(st.sampled_from(["flip", "field", "cut", "frames"]))
    if how == "flip":
        head = bytearray(frames[0])
        i = draw(st.integers(0, len(head) - 1))
        head[i] ^= draw(st.integers(1, 255))
        frames[0] = bytes(head)
    elif how == "field":
        head = msgpack.unpackb(frames[0])
        head[draw(st.sampled_from(HEADER_KEYS))] = draw(ANY_VALUE)
        frames[0] = msgpack.packb(head, use_bin_type=True)
    elif how == "cut":
        frames[0] = frames[0][:draw(st.integers(0, len(frames[0]) - 1))]
    elif len(frames) > 1 and draw(st.booleans()):
        frames.pop()
    else:
        frames.append(draw(st.binary(max_size=64)))
    return frames


RANDOM = st.lists(st.binary(max_size=200), min_size=1, max_size=4)


def _family(pid: int) -> set[int]:
    proc = psutil.Process(pid)
    return {proc.pid, *(c.pid for c in proc.children(recursive=True))}


def _dealer(zctx, endpoint: str) -> zmq.Socket:
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    return sock


def _expected(frames):
    """What the broker must answer, worked out with the same decoder: (reply type, error code)."""
    try:
        msg, _ = P.decode(frames)
    except ProtocolError as exc:
        return P.Error, exc.code
    if isinstance(msg, P.Request):
        return (P.Reply, P.Error), None
    if isinstance(msg, (P.Heartbeat, P.Info)):
        return type(msg), None
    if isinstance(msg, (P.Cancel, P.Disconnect)):
        return None, None  # nothing to answer for an unknown task, or a goodbye
    return P.Error, "bad_message"  # a type clients may not send


def test_fuzzed_frames_on_the_client_socket_each_get_an_answer_and_nothing_crashes(cluster, zctx, jpegs):
    family = _family(cluster.broker.pid)
    sock = _dealer(zctx, cluster.front)
    counts = {"sent": 0, "errors": 0, "replies": 0, "silent": 0}

    @FUZZ
    @given(st.one_of(RANDOM, mutated()))
    def check(frames):
        want, code = _expected(frames)
        sock.send_multipart(frames)
        counts["sent"] += 1
        if want is None:
            counts["silent"] += 1
            return
        msg, _ = P.decode(recv_within(sock, 15))
        assert isinstance(msg, want), (frames, msg)
        if isinstance(msg, P.Error):
            counts["errors"] += 1
            assert msg.message and (code is None or msg.code == code), (frames, msg)
        else:
            counts["replies"] += 1

    check()
    with cluster.client() as client:
        assert client.process(jpegs["coins.jpg"], "grayscale").width == 384
    assert cluster.broker.alive() and _family(cluster.broker.pid) == family  # no process died or was replaced
    print(f"FIGURES client-socket fuzz: {counts}")


def test_fuzzed_frames_on_the_worker_socket_are_dropped_and_nothing_crashes(cluster, zctx, jpegs):
    family = _family(cluster.broker.pid)
    before = cluster.info()["bad_messages"]
    sock = _dealer(zctx, cluster.back)
    undecodable = []

    @FUZZ
    @given(st.one_of(RANDOM, mutated()))
    def check(frames):
        try:
            P.decode(frames)
        except ProtocolError:
            undecodable.append(frames)
        sock.send_multipart(frames)

    check()
    sock.send_multipart(P.encode(P.Disconnect(reason="fuzz over")))  # in case a fuzzed READY registered it
    wait_until(lambda: cluster.info()["bad_messages"] - before >= len(undecodable), 30, "the broker to read them all")
    with cluster.client() as client:
        results = list(client.map([jpegs["camera.jpg"]] * 4, "grayscale", window=4))
        info = client.info()
    assert len(results) == 4 and info["bad_messages"] - before == len(undecodable)
    assert cluster.broker.alive() and _family(cluster.broker.pid) == family
    print(f"FIGURES worker-socket fuzz: 150 messages, {len(undecodable)} undecodable, all dropped and counted")


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def _jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    at = jpeg.index(b"\xff\xc0") + 5  # SOF0: length (2), precision (1), then height and width
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4:]


@pytest.fixture
def small_message_cluster(cluster_factory):
    return cluster_factory(local_workers=2, extra=["--max-message-mb", "1"]).start_broker()


def test_bad_images_bombs_and_absurd_pipelines_each_get_an_error(small_message_cluster, zctx, jpegs):
    cluster = small_message_cluster
    family = _family(cluster.broker.pid)
    photo = jpegs["camera.jpg"]
    cases = [
        (photo[:len(photo) // 2], "grayscale", ImageError),
        (photo[:100], "grayscale", ImageError),
        (b"\0" * 1000, "grayscale", ImageError),
        (_png_claiming(100_000, 100_000), "grayscale", ImageTooLarge),
        (_jpeg_claiming(photo, 65_000, 65_000), "grayscale", ImageTooLarge),
        (photo, "grayscale|" * 5000 + "grayscale", PipelineError),
        (photo, [{"op": "grayscale"}] * 1000, PipelineError),
        (photo, "resize:width=60000,height=60000", TaskError),
        (photo, "no_such_op", PipelineError),
    ]
    with cluster.client(timeout_s=30) as client:
        errors = [client.submit(data, pipeline).exception(60) for data, pipeline, _ in cases]
        for (_, pipeline, want), exc in zip(cases, errors):
            assert isinstance(exc, want), (str(pipeline)[:40], exc)
        # A 20,000-step pipeline (a header over 64 KiB) is refused by the client before sending.
        huge = client.submit(photo, [{"op": "grayscale"}] * 20_000).exception(60)
        assert isinstance(huge, PipelineError), huge
        # Over --max-message-mb by shared memory (this client shares the broker's host): the worker
        # reads no more than the broker would take and says so.
        over = client.submit(b"\xff\xd8" + b"\0" * (2 << 20), "grayscale", timeout_s=30).exception(30)
        assert isinstance(over, ImageTooLarge) and "--max-message-mb" in over.message, over
        assert client.process(photo, "grayscale").width == 512
    with cluster.client(timeout_s=30, shared_memory=False) as client:
        # Through the socket: ZeroMQ drops the connection (ZMQ_MAXMSGSIZE) before the broker
        # reads anything, so the client's own timeout is the error it gets.
        over = client.submit(b"\xff\xd8" + b"\0" * (2 << 20), "grayscale", timeout_s=3).exception(30)
        assert isinstance(over, TaskTimeout), over
        assert client.process(photo, "grayscale").width == 512
    raw = _dealer(zctx, cluster.front)
    # The broker's own check: a header over 64 KiB from a client that does not check is a bad message.
    raw.send_multipart(P.encode(P.Request(task_id="huge", pipeline=[{"op": "grayscale"}] * 20_000), photo))
    answer, _ = P.decode(recv_within(raw, 30))
    assert (answer.code, answer.task_id) == ("bad_message", "huge"), answer
    raw.send_multipart(P.encode(P.Request(task_id="big", pipeline="grayscale"), b"\0" * (2 << 20)))
    raw.send_multipart(P.encode(P.Heartbeat()))
    with cluster.client() as client:
        assert client.process(photo, "grayscale").width == 512
    assert cluster.broker.alive() and _family(cluster.broker.pid) == family
    print(f"FIGURES hostile inputs: {len(cases) + 2} bad requests, {len(cases) + 1} errors from the engine, "
          "1 client timeout (oversize); no process died")
