"""INFO always answers, whatever the number of clients, identities or workers, and never
publishes what would let one plaintext client take another's replies."""
import time

import msgpack
import zmq
from cluster_helpers import recv_within

from engine import protocol as P


def test_info_stays_under_the_header_limit_with_thousands_of_identities_and_a_bloated_worker(cluster, zctx, jpegs):
    identities = 3000
    for n in range(identities):  # short-lived clients, each with its own routing id
        sock = zctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.routing_id = f"client-{n:05d}-".encode() + b"x" * 100
        sock.connect(cluster.front)
        sock.send_multipart(P.encode(P.Request(task_id="t", pipeline="no-such-op"), b"x"))
        recv_within(sock, 30)  # its error: unknown operation
        sock.close()
    # A worker announcing a huge operation schema and host name (within the header limit).
    worker = zctx.socket(zmq.DEALER)
    worker.linger = 0
    worker.connect(cluster.back)
    ops = {f"op{n:04d}": {"help": "h" * 40} for n in range(900)}
    worker.send_multipart(P.encode(P.Ready(capacity=1, ops=ops, host="h" * 5000)))
    with cluster.client() as client:
        deadline_s = time.monotonic() + 120
        while (info := client.info(30))["received"] < identities and time.monotonic() < deadline_s:
            time.sleep(0.5)
        assert client.process(jpegs["coins.jpg"], "grayscale").width == 384
    size = len(msgpack.packb(P.Info(data=info).header(), use_bin_type=True))
    print(f"FIGURES INFO with {info['identities_total']} identities and a bloated worker: {size} bytes")
    assert info["received"] >= identities and info["identities_total"] >= identities
    assert size < P.MAX_HEADER_BYTES
    assert len(info["identities"]) <= 20 and info["workers_total"] == 2  # the local worker and the bloated one
    assert all(len(w["host"]) <= 64 for w in info["workers"])


def test_info_does_not_publish_client_routing_ids_without_curve(cluster, zctx, jpegs):
    victim = zctx.socket(zmq.DEALER)
    victim.linger = 0
    victim.routing_id = b"victim-routing-id"
    victim.connect(cluster.front)
    victim.send_multipart(P.encode(P.Request(task_id="v1", pipeline="grayscale"), jpegs["coins.jpg"]))
    assert isinstance(P.decode(recv_within(victim, 30))[0], P.Reply)
    info = cluster.info()
    assert "victim-routing-id" not in repr(info)
    victim.send_multipart(P.encode(P.Info()))
    own = P.decode(recv_within(victim, 30))[0].data
    assert own["you"] == "victim-routing-id"  # a client may see its own


def _dealer(zctx, endpoint: str, routing_id: bytes) -> zmq.Socket:
    """A raw client that says hello (a heartbeat) at once."""
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = routing_id
    sock.connect(endpoint)
    sock.send_multipart(P.encode(P.Heartbeat()))
    return sock


def test_a_second_connection_with_a_live_clients_routing_id_cannot_take_its_replies(cluster_factory, zctx, jpegs):
    from faults_helpers import add_worker, tiny_jpeg

    cluster = cluster_factory(local_workers=0).start_broker(wait_slots=0)
    add_worker(cluster, 1)
    cluster.wait_ready(1)
    victim = _dealer(zctx, cluster.front, b"victim")
    recv_within(victim, 10)
    victim.send_multipart(P.encode(P.Request(task_id="slow", pipeline="sleep:ms=1500|grayscale"), tiny_jpeg(40)))
    time.sleep(0.3)
    thief = _dealer(zctx, cluster.front, b"victim")  # learnt, or guessed
    got = []
    deadline_s = time.monotonic() + 20
    while time.monotonic() < deadline_s and not got:
        victim.send_multipart(P.encode(P.Heartbeat()))  # alive, as a real client is
        if victim.poll(100):
            msg, _ = P.decode(victim.recv_multipart())
            if isinstance(msg, P.Reply):
                got.append(msg)
        while thief.poll(0):
            msg, _ = P.decode(thief.recv_multipart())
            assert not isinstance(msg, P.Reply), "the thief received the victim's result"
    assert got and got[0].task_id == "slow" and got[0].meta["width"] == 40
