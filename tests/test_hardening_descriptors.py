"""Descriptors: idle TCP connections cannot starve the broker. It raises its soft open-file
limit to the hard one at start, warns once when most are in use, and closes connections that
never finish the ZMTP handshake (``HANDSHAKE_TIMEOUT_MS``)."""
import socket

from cluster_helpers import Proc
from faults_helpers import tiny_jpeg, wait_until

from engine.sockutil import HANDSHAKE_TIMEOUT_MS

SOFT, HARD = 128, 512  # the broker starts with 128 allowed, and may raise it to 512
IDLE = 400  # more than the soft limit, within the hard one


def _soft_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        row = next(line for line in f if line.startswith("Max open files"))
    return int(row.split()[3])


def test_idle_connections_cannot_starve_the_broker_of_descriptors(cluster_factory):
    cluster = cluster_factory(local_workers=1)
    start = (f"import resource, runpy; resource.setrlimit(resource.RLIMIT_NOFILE, ({SOFT}, {HARD})); "
             "runpy.run_module('engine.broker', run_name='__main__', alter_sys=True)")
    cluster.broker = Proc(["-c", start, *cluster.broker_args()[2:]])  # the broker's flags, under those limits
    cluster.wait_ready(2)
    assert _soft_limit(cluster.broker.pid) == HARD
    idle = [socket.create_connection(("127.0.0.1", cluster.front_port), timeout=10) for _ in range(IDLE)]
    try:
        with cluster.client(timeout_s=20) as client:  # before: the broker could not accept it
            assert client.process(tiny_jpeg(16), "grayscale").width == 16
        wait_until(lambda: "file descriptors are open" in cluster.broker.stderr_text(), timeout_s=15,
                   what="the broker's warning that descriptors run short")
        # The idle connections never sent a ZMTP greeting: the broker closes them.
        sock = idle[0]
        sock.settimeout(HANDSHAKE_TIMEOUT_MS / 1000 + 10)
        while sock.recv(4096):  # the broker's greeting, then the end of the stream (else: socket.timeout)
            pass
    finally:
        for sock in idle:
            sock.close()
    assert cluster.broker.stderr_text().count("file descriptors are open") == 1
    assert cluster.broker.alive()
