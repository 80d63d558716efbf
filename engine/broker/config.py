"""Broker settings: one dataclass, every default with its unit."""
from __future__ import annotations

from dataclasses import dataclass

FRONT = "tcp://*:5555"
BACK = "tcp://*:5556"
COMPAT_PULL = "tcp://127.0.0.1:5558"
COMPAT_PUSH = "tcp://127.0.0.1:5559"
COMPAT_ROUTER = "tcp://127.0.0.1:5560"
HEARTBEAT_INTERVAL_S = 2.0
HEARTBEAT_LIVENESS = 3  # missed intervals before a peer is dead
MAX_QUEUE = 1000  # tasks waiting for a worker; beyond this, clients get "busy"
MAX_RETRIES = 2  # times a task may take a worker down with it before it is failed
MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # ZMQ_MAXMSGSIZE on every broker socket
DRAIN_TIMEOUT_S = 10.0  # on SIGTERM, how long in-flight tasks get to finish
CACHE_BYTES = 256 * 1024 * 1024  # result cache size; 0 turns the cache off


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    front: str = FRONT
    back: str = BACK
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    heartbeat_liveness: int = HEARTBEAT_LIVENESS
    max_queue: int = MAX_QUEUE
    max_retries: int = MAX_RETRIES
    max_message_bytes: int = MAX_MESSAGE_BYTES
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    cache_bytes: int = CACHE_BYTES
    compat: bool = False
    compat_pull: str = COMPAT_PULL
    compat_push: str = COMPAT_PUSH
    compat_router: str = COMPAT_ROUTER
