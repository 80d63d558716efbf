"""What an eavesdropper on the network sees: the bytes between a client and the broker,
recorded by a TCP proxy on loopback (no packet capture tool needed)."""
import pytest
import zmq
from cluster_helpers import FAST_HEARTBEAT_S
from faults_helpers import wait_until
from security_helpers import Recorder

from engine import Client

SNIPPETS = 8  # slices of the photo looked for in the recorded traffic
SNIPPET_BYTES = 32
PIPELINE = "grayscale|jpeg:quality=95"


def _snippets(data: bytes) -> list[bytes]:
    """Slices from the entropy-coded middle of a JPEG: present only if the image crossed in clear."""
    step = len(data) // (SNIPPETS + 1)
    return [data[i * step: i * step + SNIPPET_BYTES] for i in range(1, SNIPPETS + 1)]


@pytest.mark.parametrize("curve", [False, True], ids=["plaintext", "curve"])
def test_loopback_traffic_carries_the_jpeg_in_clear_only_without_curve(cluster_factory, secure_factory, jpegs, curve):
    """The bytes a client on another machine would send (a local one sends none: below)."""
    if curve and not zmq.has("curve"):
        pytest.skip("libzmq built without CURVE")
    cluster = (secure_factory if curve else cluster_factory)(local_workers=1).start_broker()
    photo = jpegs["astronaut.jpg"]
    recorder = Recorder(cluster.front_port)
    keys = {"keys": cluster.ring.peer("alice")} if curve else {}
    try:
        with Client(recorder.endpoint, timeout_s=30, heartbeat_interval_s=FAST_HEARTBEAT_S, shared_memory=False,
                    **keys) as client:
            result = client.process(photo, PIPELINE)
    finally:
        recorder.close()
    captured = recorder.bytes()
    assert len(captured) > len(photo) + len(result.data)  # the image went both ways through the proxy
    clear = [s in captured for s in _snippets(photo) + _snippets(result.data) + [PIPELINE.encode()]]
    assert all(clear) if not curve else not any(clear)


def test_a_client_on_the_broker_s_host_sends_no_image_bytes_through_the_socket(cluster_factory, jpegs):
    cluster = cluster_factory(local_workers=1).start_broker()
    photo = jpegs["astronaut.jpg"]
    recorder = Recorder(cluster.front_port)
    try:
        with Client(recorder.endpoint, timeout_s=30, heartbeat_interval_s=FAST_HEARTBEAT_S) as client:
            wait_until(lambda: client.info() and client.shared_memory, 10, "the broker's offer and our proof")
            result = client.process(photo, PIPELINE)
            assert client.stats["by_reference"] == 1
    finally:
        recorder.close()
    captured = recorder.bytes()
    assert result.format == "jpeg" and len(captured) < len(photo) // 2  # names, headers, INFO and heartbeats
    assert not any(s in captured for s in _snippets(photo) + _snippets(result.data))
