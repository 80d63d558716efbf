"""Worker settings: one dataclass, every default with its unit."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..ops.codec import MAX_DECODED_BYTES, MAX_INPUT_BYTES, MAX_MEMORY_BYTES, MAX_PIXELS, Limits
from ..security import PeerKeys

CONNECT = "tcp://127.0.0.1:5556"
HEARTBEAT_INTERVAL_S = 2.0
HEARTBEAT_LIVENESS = 3
TASK_TIMEOUT_S = 60.0  # a pool process still busy after this is killed and replaced
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 8.0
DRAIN_TIMEOUT_S = 30.0
PREFETCH = 1  # tasks held ready per process, so it never waits for a broker round trip
MAX_CREDIT = 16  # tasks a process far from its broker may ask to keep at hand (its link's round trip in tasks)


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    connect: str = CONNECT
    processes: int = os.cpu_count() or 1
    prefetch: int = PREFETCH
    max_credit: int = MAX_CREDIT
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    heartbeat_liveness: int = HEARTBEAT_LIVENESS
    task_timeout_s: float = TASK_TIMEOUT_S
    reconnect_min_s: float = RECONNECT_MIN_S
    reconnect_max_s: float = RECONNECT_MAX_S
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    max_pixels: int = MAX_PIXELS
    max_input_bytes: int = MAX_INPUT_BYTES
    max_decoded_bytes: int = MAX_DECODED_BYTES
    max_memory_bytes: int = MAX_MEMORY_BYTES  # what one task may hold at once (see codec.MAX_MEMORY_BYTES)
    curve: PeerKeys | None = None  # this worker's key pair and the broker's public key (None: plaintext)
    learned: bool = True  # load the learned models in each pool process and offer their operations

    @property
    def limits(self) -> Limits:
        """What a pool process checks in an image's header before decoding it, and before each step."""
        return Limits(max_pixels=self.max_pixels, max_input_bytes=self.max_input_bytes,
                      max_decoded_bytes=self.max_decoded_bytes, max_memory_bytes=self.max_memory_bytes)

    @property
    def slots_per_process(self) -> int:
        """Tasks each pool process announces to the broker: one running and ``prefetch`` waiting."""
        return 1 + self.prefetch

    @property
    def slots(self) -> int:
        return self.processes * self.slots_per_process
