"""The older JSON/base64 format over PUSH/PULL and over the ROUTER."""
import base64
import json

import cv2
import numpy as np
import pytest
import zmq
from cluster_helpers import recv_within


@pytest.fixture
def compat_cluster(cluster_factory):
    return cluster_factory(local_workers=2, compat=True).start_broker()


def _request(task_id, task, data: bytes) -> bytes:
    return json.dumps({"task_id": task_id, "task": task, "image": base64.b64encode(data).decode()}).encode()


def _image(reply: dict) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(reply["image"]), np.uint8), cv2.IMREAD_UNCHANGED)


def _socket(zctx, kind: int, port: int) -> zmq.Socket:
    sock = zctx.socket(kind)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def test_push_pull_clients_of_the_older_design_keep_working(compat_cluster, zctx, jpegs):
    push = _socket(zctx, zmq.PUSH, compat_cluster.compat_ports["pull"])
    pull = _socket(zctx, zmq.PULL, compat_cluster.compat_ports["push"])
    sent = {1: ("grayscale", "astronaut.jpg"), "two": ("edge", "coffee.jpg"), 3: ("grayscale", "coins.jpg")}
    for task_id, (task, name) in sent.items():
        push.send(_request(task_id, task, jpegs[name]))
    replies = {}
    for _ in sent:
        reply = json.loads(recv_within(pull, 30)[0])
        replies[reply["task_id"]] = reply
    assert set(replies) == set(sent)
    for task_id, (task, name) in sent.items():
        assert set(replies[task_id]) == {"task_id", "task", "image"}
        assert replies[task_id]["task"] == task
        assert base64.b64decode(replies[task_id]["image"])[:3] == b"\xff\xd8\xff"  # JPEG, as before
        want = cv2.imdecode(np.frombuffer(jpegs[name], np.uint8), cv2.IMREAD_GRAYSCALE).shape
        assert _image(replies[task_id]).shape == want


@pytest.mark.parametrize("kind", [zmq.REQ, zmq.DEALER])
def test_router_gives_each_json_client_its_own_reply(compat_cluster, zctx, jpegs, kind):
    socks = [_socket(zctx, kind, compat_cluster.compat_ports["router"]) for _ in range(2)]
    names = ["chelsea.jpg", "rocket.jpg"]
    for n, (sock, name) in enumerate(zip(socks, names)):
        frames = [_request(f"job-{n}", "grayscale", jpegs[name])]
        sock.send_multipart(frames if kind == zmq.REQ else [b"", *frames])
    for n, (sock, name) in enumerate(zip(socks, names)):
        reply = json.loads(recv_within(sock, 30)[-1])
        assert reply["task_id"] == f"job-{n}"
        want = cv2.imdecode(np.frombuffer(jpegs[name], np.uint8), cv2.IMREAD_GRAYSCALE).shape
        assert _image(reply).shape == want


@pytest.mark.parametrize("body, task_id, fragment", [
    (b"{not json", None, "not valid JSON"),
    (b"[1, 2]", None, "must be a JSON object"),
    (json.dumps({"task_id": 7, "task": "grayscale"}).encode(), 7, "\"image\""),
    (json.dumps({"task_id": 8, "task": "grayscale", "image": "***"}).encode(), 8, "base64"),
    (json.dumps({"task": "grayscale", "image": "aGk="}).encode(), None, "task_id"),
])
def test_malformed_json_gets_a_json_error_never_silence(compat_cluster, zctx, body, task_id, fragment):
    req = _socket(zctx, zmq.REQ, compat_cluster.compat_ports["router"])
    req.send(body)
    reply = json.loads(recv_within(req, 10)[0])
    assert reply["task_id"] == task_id
    assert fragment in reply["error"]


def test_unknown_task_and_corrupt_image_are_errors_not_echoes(compat_cluster, zctx, jpegs):
    push = _socket(zctx, zmq.PUSH, compat_cluster.compat_ports["pull"])
    pull = _socket(zctx, zmq.PULL, compat_cluster.compat_ports["push"])
    push.send(_request("a", "segmentation-of-dreams", jpegs["coins.jpg"]))
    push.send(_request("b", "edge", b"\xff\xd8\xff not really a jpeg"))
    replies = {r["task_id"]: r for r in (json.loads(recv_within(pull, 30)[0]) for _ in range(2))}
    assert replies["a"]["code"] == "unknown_operation" and "image" not in replies["a"]
    assert replies["b"]["code"] == "bad_image" and "image" not in replies["b"]
