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
CLIENT_MAX_IN_FLIGHT = 0  # tasks one client may have at the broker at once (0: no limit)
CLIENT_RATE_PER_S = 0.0  # tasks a second one client may send on average (0: no limit)
CLIENT_BURST = 0  # tasks above the rate one client may send at once (0: one second's worth)


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
    compat_token: str = ""  # when set, every compat JSON request must carry it as "token"
    keys_dir: str = ""  # CURVE on every socket: broker.key_secret, clients/, workers/ (see engine.security)
    secure: bool = False  # refuse to start without keys_dir
    client_max_in_flight: int = CLIENT_MAX_IN_FLIGHT
    client_rate_per_s: float = CLIENT_RATE_PER_S
    client_burst: int = CLIENT_BURST
