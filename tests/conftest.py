"""Shared fixtures: real brokers and workers in real processes, on free loopback ports.

The plain helpers they use (Cluster, Proc, free_port, recv_within, FAST_HEARTBEAT_S...) are in
cluster_helpers.py: a test imports those from there, and gets these fixtures by name.
"""
from __future__ import annotations

import os

import pytest
import zmq

from cluster_helpers import Cluster, sample_jpegs

# Every image of every test client goes through shared memory where the broker offers it (not only
# those over the 16 KiB that do by default): the fault, hardening and hostile suites run with it.
os.environ.setdefault("ENGINE_SHM_MIN_BYTES", "0")


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
