"""Limits against a hostile peer: message size, header size, pipeline length, compat token."""
import base64
import json

import pytest
import zmq
from cluster_helpers import recv_within

from engine import protocol as P
from engine.errors import BrokerUnavailable, PipelineError, TaskTimeout


def test_oversized_header_long_pipeline_and_huge_message_are_refused(cluster_factory, zctx, jpegs):
    cluster = cluster_factory(local_workers=1, extra=["--max-message-mb", "1"]).start_broker()
    photo = jpegs["coins.jpg"]
    with cluster.client() as client:  # refused by the client itself, never sent
        with pytest.raises(PipelineError, match="limit is 32"):
            client.process(photo, "|".join(["grayscale"] * 33))
    with cluster.client(validate=False) as client:  # and by the worker, for a client that does not check
        with pytest.raises(PipelineError, match="limit is 32"):
            client.process(photo, "|".join(["grayscale"] * 33))
    raw = zctx.socket(zmq.DEALER)
    raw.linger = 0
    raw.connect(cluster.front)
    big = P.encode(P.Request(task_id="h1", pipeline=[{"op": "grayscale", "params": {"x" * 70_000: 1}}]), photo)
    raw.send_multipart(big)
    msg, _ = P.decode(recv_within(raw, 10))
    assert isinstance(msg, P.Error) and msg.code == "bad_message" and "limit is 65536" in msg.message
    with cluster.client(timeout_s=3, shared_memory=False) as client:  # ZMQ_MAXMSGSIZE: the broker drops the connection
        with pytest.raises((TaskTimeout, BrokerUnavailable)):
            client.process(b"\xff\xd8" + bytes(2 * 2**20), "grayscale")
    with cluster.client() as client:
        assert client.process(photo, "grayscale").width == 384
        assert client.info()["received"] == 2  # the long pipeline and the last photo; the rest never got in


def test_compat_json_requests_need_the_shared_token(cluster_factory, zctx, jpegs):
    cluster = cluster_factory(local_workers=1, compat=True, extra=["--compat-token", "s3cret"]).start_broker()
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{cluster.compat_ports['router']}")
    image = base64.b64encode(jpegs["coins.jpg"]).decode()
    for token in (None, "guess"):
        body = {"task_id": 1, "task": "grayscale", "image": image, **({"token": token} if token else {})}
        sock.send(json.dumps(body).encode())
        answer = json.loads(recv_within(sock, 10)[-1])
        assert answer["code"] == "unauthorized" and "token" in answer["error"] and "image" not in answer
    sock.send(json.dumps({"task_id": 2, "task": "grayscale", "image": image, "token": "s3cret"}).encode())
    answer = json.loads(recv_within(sock, 30)[-1])
    assert answer["task_id"] == 2 and base64.b64decode(answer["image"])[:2] == b"\xff\xd8"
    assert cluster.info()["received"] == 1  # the refused requests never became tasks
