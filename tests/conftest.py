"""Shared fixtures: real brokers and workers in real processes, on free loopback ports.

The plain helpers they use (Cluster, Proc, free_port, recv_within, FAST_HEARTBEAT_S...) are in
cluster_helpers.py, web_helpers.py and security_helpers.py: a test imports those from there, and
gets these fixtures by name (never by importing them, which ruff's TID251 and F811 refuse).
"""
from __future__ import annotations

import os

# Every image of every test client goes through shared memory where the broker offers it (not only
# those over the 16 KiB that do by default): the fault, hardening and hostile suites run with it.
# Set before the imports below, which import engine.shm (it reads the variable once).
os.environ.setdefault("ENGINE_SHM_MIN_BYTES", "0")

import pytest
import zmq
from browser_helpers import launched
from cluster_helpers import Cluster, sample_jpegs
from security_helpers import KeyRing, SecureCluster
from web_helpers import User, WebServer


@pytest.fixture
def cluster_factory():
    made: list[Cluster] = []

    def make(**kwargs) -> Cluster:
        c = Cluster(**kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def cluster(cluster_factory) -> Cluster:
    """A broker with two local worker processes, ready to take tasks."""
    return cluster_factory(local_workers=2).start_broker()


@pytest.fixture
def zctx():
    """A ZeroMQ context for raw sockets in a test; closed without waiting (linger 0)."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture(scope="session")
def jpegs() -> dict[str, bytes]:
    return sample_jpegs()


# The web gateway's tests: one broker (two local workers) and one gateway per test module.
@pytest.fixture(scope="module")
def broker():
    """A real broker with two local worker processes on free loopback ports."""
    cluster = Cluster(local_workers=2)
    try:
        yield cluster.start_broker()
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def web(broker, tmp_path_factory):
    server = WebServer(tmp_path_factory.mktemp("web"), broker.front).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def users(web):
    """Two independent accounts on the module's gateway."""
    made = [User(web, "alice"), User(web, "bob")]
    try:
        yield made
    finally:
        for u in made:
            u.close()


# CURVE: a key folder per test and secured clusters built on it.
@pytest.fixture
def ring(tmp_path) -> KeyRing:
    """A broker key folder with clients alice and bob, worker edge1, and mallory known to nobody."""
    ring = KeyRing(tmp_path)
    ring.new("alice", "clients")
    ring.new("bob", "clients")
    ring.new("edge1", "workers")
    ring.new("mallory")
    return ring


@pytest.fixture
def secure_factory(ring):
    made: list[SecureCluster] = []

    def make(**kwargs) -> SecureCluster:
        c = SecureCluster(ring, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


# The browser tests: one Chromium per module; screenshots go to the module's SHOTS folder.
@pytest.fixture(scope="module")
def chromium(request):
    with launched(request.module.SHOTS) as browser:
        yield browser


@pytest.fixture(scope="module")
def cached_web(tmp_path_factory):
    """A broker with its result cache on and a gateway (pages that show where a result came from)."""
    cluster = Cluster(local_workers=2, cache=True)
    server = None
    try:
        cluster.start_broker()
        server = WebServer(tmp_path_factory.mktemp("web"), cluster.front).start()
        yield server
    finally:
        if server is not None:
            server.stop()
        cluster.stop()
