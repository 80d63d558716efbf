"""The older deep-learning client, unchanged, served end to end: a DEALER whose routing
id is its request id sends one JSON frame to the gateway process, which asks the broker's
workers to run the learned models, and gets one JSON frame with its top-3 predictions."""
from __future__ import annotations

import base64
import itertools
import json
import re
import time
import uuid

import pytest
import zmq
from cluster_helpers import Cluster, Proc, free_port, recv_within
from ops_helpers import sample_bytes
from zmq.utils.monitor import recv_monitor_message

from engine.dlgateway import wire

pytestmark = pytest.mark.timeout(90)

PREDS = re.compile(r"^[a-z_]+ : [01]\.\d\d(, [a-z_]+ : [01]\.\d\d){0,2}$")  # "label : score, ..." top three
REPLY_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def engine():
    cluster = Cluster(local_workers=1).start_broker()
    yield cluster
    cluster.stop()


def _gateway(engine: Cluster, *extra: str) -> tuple[Proc, str]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = Proc(["-m", "engine.dlgateway", "--bind", endpoint, "--connect", engine.front,
                 "--timeout-s", str(REPLY_TIMEOUT_S), *extra])
    return proc, endpoint


@pytest.fixture(scope="module")
def gateway(engine):
    proc, endpoint = _gateway(engine)
    yield endpoint
    assert proc.stop() == 0, proc.stderr_text()[-2000:]


def old_client(zctx, endpoint: str, rid: str) -> zmq.Socket:
    """The older client's socket: a DEALER whose routing id is the request id."""
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = rid.encode()
    sock.connect(endpoint)
    return sock


def ask(zctx, endpoint: str, body: bytes, rid: str | None = None) -> dict:
    rid = rid or uuid.uuid4().hex
    sock = old_client(zctx, endpoint, rid)
    sock.send(body)  # one frame, no empty delimiter
    frames = recv_within(sock, REPLY_TIMEOUT_S)
    sock.close()
    assert len(frames) == 1, frames
    return json.loads(frames[0])


def request(image: bytes, rid: str) -> bytes:
    return json.dumps({"payload": base64.b64encode(image).decode(), "_rid": rid}).encode()


def test_old_client_gets_top_three_predictions_for_a_portrait(zctx, gateway):
    rid = uuid.uuid4().hex
    reply = ask(zctx, gateway, request(sample_bytes("astronaut.jpg"), rid), rid)
    assert "error" not in reply, reply
    assert reply["_rid"] == rid and PREDS.match(reply["preds"]), reply
    labels = [p.split(" : ")[0] for p in reply["preds"].split(", ")]
    scores = [float(p.split(" : ")[1]) for p in reply["preds"].split(", ")]
    assert len(labels) == 3 and "face" in labels and "person" in labels, reply["preds"]
    assert scores == sorted(scores, reverse=True)
    assert reply["model"] and len(reply["faces"]) == 1 and reply["faces"][0]["score"] >= 0.6


def test_no_face_on_a_cat(zctx, gateway):
    rid = "cat-1"
    reply = ask(zctx, gateway, request(sample_bytes("chelsea.jpg"), rid), rid)
    assert reply["_rid"] == rid and PREDS.match(reply["preds"]) and "face" not in reply["preds"], reply
    assert reply["faces"] == []


def test_many_old_clients_each_get_their_own_answer(zctx, gateway):
    photos = {"portrait": "astronaut.jpg", "cat": "chelsea.jpg", "coffee": "coffee.jpg"}
    socks = {}
    for n, (kind, name) in enumerate(photos.items()):
        rid = f"{kind}-{n}-{uuid.uuid4().hex[:6]}"
        socks[rid] = (kind, old_client(zctx, gateway, rid))
        socks[rid][1].send(request(sample_bytes(name), rid))
    for rid, (kind, sock) in socks.items():
        reply = json.loads(recv_within(sock, REPLY_TIMEOUT_S)[0])
        assert reply["_rid"] == rid and ("face" in reply["preds"]) == (kind == "portrait"), reply


@pytest.mark.parametrize("body, fragment, rid", [
    (b"not json", "not strict JSON", None),
    (b'{"payload": NaN, "_rid": "a"}', "not strict JSON", None),
    (b'["payload"]', "JSON object", None),
    (b'{"payload": "aGVsbG8="}', '"_rid"', None),
    (b'{"_rid": "r-7"}', '"payload"', "r-7"),
    (b'{"_rid": "r-8", "payload": "***"}', "not valid base64", "r-8"),
    (b'{"_rid": "r-9", "payload": "aGVsbG8gd29ybGQ="}', "not an image", "r-9"),  # "hello world"
])
def test_a_bad_frame_gets_a_json_error_never_silence(zctx, gateway, body, fragment, rid):
    reply = ask(zctx, gateway, body)
    assert fragment in reply["error"] and reply["_rid"] == rid and reply["code"], reply
    assert "preds" not in reply


def test_size_and_in_flight_limits_answer_with_errors(zctx, engine):
    proc, endpoint = _gateway(engine, "--max-request-mb", "1", "--max-in-flight", "1")
    try:
        too_big = request(b"\xff\xd8" + bytes(1024 * 1024), "big")
        reply = ask(zctx, endpoint, too_big)
        assert "limit" in reply["error"] and reply["code"] == "bad_message", reply
        socks = [old_client(zctx, endpoint, f"burst-{n}") for n in range(8)]
        for n, sock in enumerate(socks):
            sock.send(request(sample_bytes("astronaut.jpg"), f"burst-{n}"))
        replies = [json.loads(recv_within(sock, REPLY_TIMEOUT_S)[0]) for sock in socks]
        assert all(("preds" in r) != ("error" in r) for r in replies)  # every request answered, one way
        assert any("preds" in r for r in replies)
        assert any(r.get("code") == "busy" for r in replies)  # 8 at once with room for 1
    finally:
        assert proc.stop() == 0, proc.stderr_text()[-2000:]


def test_with_its_broker_down_the_gateway_logs_it_and_answers_broker_unavailable_at_once(zctx):
    """Issue 25: it used to log nothing and answer ``busy`` after its whole --timeout-s (30 s)."""
    from faults_helpers import wait_until

    cluster = Cluster(local_workers=0)  # its ports, nothing started: nothing listens at its front yet
    proc, endpoint = _gateway(cluster)
    try:
        wait_until(lambda: "broker is unavailable" in proc.stderr_text(), 30, "the gateway to log its broker down")
        log = proc.stderr_text()
        assert f"no broker listens on {cluster.front} (connection refused)" in log, log
        started_s = time.monotonic()
        reply = ask(zctx, endpoint, request(sample_bytes("astronaut.jpg"), "down"), "down")
        waited_s = time.monotonic() - started_s
        assert reply["code"] == "broker_unavailable" and reply["_rid"] == "down" and "preds" not in reply, reply
        assert "no broker listens" in reply["error"], reply
        assert waited_s < 10, f"answered after {waited_s:.1f} s, as if it waited for its {REPLY_TIMEOUT_S} s timeout"
        cluster.start_broker(wait_slots=0)
        wait_until(lambda: "is back" in proc.stderr_text(), 30, "the gateway to log its broker back")
        log = proc.stderr_text()
        assert log.count("broker is unavailable") == 1, log  # once, however many requests it refused
    finally:
        assert proc.stop() == 0, proc.stderr_text()[-2000:]
        cluster.stop()


def test_gateway_help_explains_the_exchange():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "engine.dlgateway", "--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "routing id" in out.stdout and "--max-in-flight" in out.stdout


def test_a_req_client_with_a_delimiter_gets_its_reply_on_the_same_envelope(zctx, gateway):
    sock = zctx.socket(zmq.REQ)
    sock.linger = 0
    sock.connect(gateway)
    sock.send(request(sample_bytes("astronaut.jpg"), "req-1"))
    reply = json.loads(recv_within(sock, REPLY_TIMEOUT_S)[-1])
    assert reply["_rid"] == "req-1" and "face : 0.9" in reply["preds"], reply


def _peak_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


FLOODERS, FLOOD_FRAMES, FLOOD_MB = 4, 40, 4
FLOOD_BOUND_MIB = 160  # the gateway's growth: about 4 connections x 2 frames in libzmq + 2 frames being read


def test_a_flood_of_large_bad_frames_is_bounded_and_a_normal_request_still_answered(zctx, engine):
    proc, endpoint = _gateway(engine, "--max-request-mb", str(FLOOD_MB))
    try:
        assert "preds" in ask(zctx, endpoint, request(sample_bytes("astronaut.jpg"), "warm"), "warm")
        before_mib = _peak_mib(proc.pid)
        # Valid JSON within --max-request-mb whose payload is base64 up to its last character:
        # each is read to its end before it is refused. 640 MiB in all, sent at once.
        frame = json.dumps({"_rid": "flood", "payload": "A" * (FLOOD_MB * 2**20 - 64) + "AAA*"}).encode()
        flooders = [old_client(zctx, endpoint, f"flood-{n}") for n in range(FLOODERS)]
        for sock in flooders:
            for _ in range(FLOOD_FRAMES):
                sock.send(frame, copy=False)  # the same buffer each time: the flood costs this process nothing
        reply = ask(zctx, endpoint, request(sample_bytes("astronaut.jpg"), "normal"), "normal")
        assert reply["_rid"] == "normal" and PREDS.match(reply["preds"]), reply
        for sock in flooders:  # every flood frame reached the gateway and got its error
            codes = [json.loads(recv_within(sock, REPLY_TIMEOUT_S)[0])["code"] for _ in range(FLOOD_FRAMES)]
            assert set(codes) <= {"bad_message", "busy"} and "bad_message" in codes, codes
        grew_mib = _peak_mib(proc.pid) - before_mib
        print(f"FIGURES dlgateway flood: {FLOODERS} x {FLOOD_FRAMES} x {len(frame) / 2**20:.1f} MiB; "
              f"peak RSS grew {grew_mib:.0f} MiB")
        assert grew_mib < FLOOD_BOUND_MIB, grew_mib
    finally:
        assert proc.stop() == 0, proc.stderr_text()[-2000:]


def test_a_frame_over_the_frame_limit_drops_its_connection_unread(zctx, engine):
    proc, endpoint = _gateway(engine, "--max-request-mb", "1")  # --max-frame-mb: 1.5 by default
    try:
        sock = zctx.socket(zmq.DEALER)
        sock.linger, sock.routing_id = 0, b"over"
        events = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)  # before it connects
        sock.connect(endpoint)
        assert events.poll(10_000) and recv_monitor_message(events)["event"] == zmq.EVENT_CONNECTED
        sock.send(request(bytes(3 << 19), "over"))  # a 2 MiB frame
        assert events.poll(10_000), "the gateway read a frame over its limit"
        assert recv_monitor_message(events)["event"] == zmq.EVENT_DISCONNECTED
        assert not sock.poll(0)  # and answered nothing
        sock.send(request(sample_bytes("astronaut.jpg"), "over"))  # the same client, connected again, is served
        reply = json.loads(recv_within(sock, REPLY_TIMEOUT_S)[0])
        assert reply["_rid"] == "over" and PREDS.match(reply["preds"]), reply
        sock.disable_monitor()
        events.close()
    finally:
        assert proc.stop() == 0, proc.stderr_text()[-2000:]


def _parsed(raw: bytes, large: bool):
    """What one parser makes of a frame: (rid, image) or ("error", rid, message); with the
    large parser, also how many steps it took."""
    try:
        if not large:
            request = wire.parse_request(raw)
            return request.rid, bytes(request.image)
        steps = wire.parse_large(memoryview(raw))
        for n in itertools.count():
            try:
                next(steps)
            except StopIteration as done:
                return done.value.rid, bytes(done.value.image), n
    except wire.RequestError as exc:
        return "error", exc.rid, str(exc)


IMAGE = bytes(range(256)) * (3 * 2**20 // 256) + b"end"  # base64: 4 MiB and 4 characters, padded
B64 = base64.b64encode(IMAGE).decode()


@pytest.mark.parametrize("text", [
    json.dumps({"payload": B64, "_rid": "r-1"}),
    json.dumps({"_rid": "r\u00e9\"2", "payload": B64}),  # id first, with escapes
    json.dumps({"payload": B64, "_rid": "r-3"}, indent=2),
    json.dumps({"payload": B64, "_rid": "r-4"}, separators=(",", ":")),
    json.dumps({"payload": B64.rstrip("="), "_rid": "r-5"}),  # unpadded: refused by both
    json.dumps({"payload": "*" + B64[1:], "_rid": "r-6"}),
    json.dumps({"payload": B64[:-4] + "AA*=", "_rid": "r-7"}),
    json.dumps({"payload": B64[:2**20 - 2] + "==" + B64[2**20:], "_rid": "r-8"}),  # padding at a step's end
    json.dumps({"payload": B64, "_rid": ""}),
    json.dumps({"payload": B64}),
])
def test_a_large_frame_is_read_in_steps_with_the_same_answer(text):
    raw = text.encode()
    whole, steps = _parsed(raw, large=False), _parsed(raw, large=True)
    if whole[0] == "error":
        assert steps[:2] == whole[:2] and steps[0] == "error", (whole, steps)  # the same refusal, the same id
    else:
        assert steps[:2] == whole and steps[2] == -(-len(B64) // wire.STEP_BYTES), (whole[0], steps[0], steps[2])


@pytest.mark.parametrize("text", [
    json.dumps({"payload": B64, "_rid": "r", "more": 1}),
    json.dumps({"payload": B64, "_rid": "r"}).replace("/", "\\/"),
    json.dumps({"payload": B64, "_rid": "r"}) + " x",
    f'{{"_rid": "a", "payload": "{B64}", "_rid": "b"}}',
    f'{{"payload": "{B64}", "_rid": NaN}}',
])
def test_a_large_frame_in_another_shape_is_refused_saying_which_shape(text):
    refused = _parsed(text.encode(), large=True)
    assert refused[0] == "error" and '{"payload": "<base64>", "_rid": "<id>"}' in refused[2], refused


STRICT_BASE64_CASES = [b"", b"aGk=", b"aGVsbG8h", b"aGk", b"aGk==", b"a=Gk", b"aG k=", b"aGk=\n", b"aGk=aGk=",
                       b"aG-k", b"aG_k", b"////", b"++==", b"=aGk", base64.b64encode(bytes(range(256)))]


@pytest.mark.parametrize("chunk", STRICT_BASE64_CASES, ids=repr)
def test_the_python_3_10_base64_check_refuses_what_strict_mode_refuses(chunk):
    """Python 3.10 has no ``strict_mode``: there the gateway checks first; both ways agree."""
    import binascii

    try:
        expected = binascii.a2b_base64(chunk, strict_mode=True)
    except binascii.Error:
        expected = None
    try:
        got = wire.checked_base64(chunk)
    except binascii.Error:
        got = None
    assert got == expected
