"""Malformed frames on the broker's sockets: errors back, nobody crashes."""
import msgpack
import zmq
from cluster_helpers import recv_within

from engine import protocol as P


def _dealer(zctx, endpoint: str) -> zmq.Socket:
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    return sock


def test_malformed_client_frames_get_error_replies_and_the_broker_keeps_serving(cluster, zctx, jpegs):
    sock = _dealer(zctx, cluster.front)
    cases = [
        ([b"garbage"], "bad_message", None),
        ([msgpack.packb({"v": 2, "t": P.HEARTBEAT})], "unsupported_version", None),
        ([msgpack.packb({"v": 1, "t": P.REQUEST, "id": "x1", "pipeline": "grayscale"})], "bad_message", "x1"),
        (P.encode(P.Reply(task_id="x2", meta={}), b"img"), "bad_message", "x2"),
        (P.encode(P.Request(task_id="x3", pipeline="grayscale"), b"img") + [b"extra"], "bad_message", "x3"),
    ]
    for frames, code, task_id in cases:
        sock.send_multipart(frames)
        msg, _ = P.decode(recv_within(sock, 10))
        assert isinstance(msg, P.Error), frames
        assert (msg.code, msg.task_id) == (code, task_id)
        assert msg.message
    with cluster.client() as client:
        assert client.process(jpegs["coins.jpg"], "grayscale").width == 384
        assert client.info()["bad_messages"] == len(cases) - 1  # the REPLY decodes; it is refused by role


def test_garbage_on_the_worker_socket_is_dropped_and_workers_keep_working(cluster, zctx, jpegs):
    before = cluster.info()["workers"]
    sock = _dealer(zctx, cluster.back)
    for frames in ([b"\x00"], [b"", b""], [msgpack.packb({"v": 1, "t": P.REPLY, "id": "9@nobody", "meta": {}}),
                                          b"x"], P.encode(P.Heartbeat())):
        sock.send_multipart(frames)
    assert P.decode(recv_within(sock, 10))[0] == P.Disconnect(reason="unknown worker: send READY")
    with cluster.client() as client:
        results = list(client.map([jpegs["camera.jpg"]] * 6, "edge", window=3))
        info = client.info()
    assert len(results) == 6 and all(r.width == 512 for r in results)
    assert [w["id"] for w in info["workers"]] == [w["id"] for w in before]
