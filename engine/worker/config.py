"""Worker settings: one dataclass, every default with its unit."""
from __future__ import annotations

import os
from dataclasses import dataclass

from .. import protocol as P
from ..ops.codec import MAX_DECODED_BYTES, MAX_INPUT_BYTES, MAX_MEMORY_BYTES, MAX_PIXELS, Limits
from ..security import PeerKeys
from ..settings import fixed, positive_int, setting

CONNECT = "tcp://127.0.0.1:5556"
# Used until the broker announces its own (``protocol.Pace``): the defaults live with the wire format.
HEARTBEAT_INTERVAL_S = P.HEARTBEAT_INTERVAL_S
HEARTBEAT_LIVENESS = P.HEARTBEAT_LIVENESS
TASK_TIMEOUT_S = 60.0  # a pool process still busy after this is killed and replaced
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 8.0
DRAIN_TIMEOUT_S = 30.0
PREFETCH = 1  # tasks held ready per process, so it never waits for a broker round trip
MAX_CREDIT = 16  # tasks a process far from its broker may ask to keep at hand (its link's round trip in tasks)
MIB = 2**20


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """Every field a flag of ``python -m engine.worker`` sets is declared with it (``setting``);
    the others say why none does (``fixed``)."""

    connect: str = setting(CONNECT, env="ENGINE_WORKER_CONNECT", help="the broker's worker endpoint")
    processes: int = setting(os.cpu_count() or 1, env="ENGINE_WORKER_PROCESSES", type=positive_int,
                             help="pool processes (tasks run at once)")
    prefetch: int = setting(
        PREFETCH, env="ENGINE_WORKER_PREFETCH",
        help="tasks kept waiting per process, so a process starts its next task without a round trip "
             "to the broker (0: only as many tasks as processes)")
    max_credit: int = setting(
        MAX_CREDIT, env="ENGINE_WORKER_MAX_CREDIT",
        help="most tasks a pool process keeps at hand: it starts at 1 + --prefetch and grows when it finds "
             "itself waiting on a slow link while the broker has work (a round trip's worth of tasks); "
             "set it to 1 + --prefetch to turn that off")
    heartbeat_interval_s: float = setting(
        HEARTBEAT_INTERVAL_S, env="ENGINE_HEARTBEAT_INTERVAL_S",
        help="seconds between heartbeats until the broker announces its own (it does in its first answer); "
             "the broker is presumed gone after 3 of its silent intervals")
    heartbeat_liveness: int = fixed(HEARTBEAT_LIVENESS, why="the heartbeat contract: the broker announces its "
                                                            "own, which the worker follows")
    task_timeout_s: float = setting(
        TASK_TIMEOUT_S, env="ENGINE_TASK_TIMEOUT_S",
        help="a pool process busy longer than this on one task is killed and replaced; the task is answered "
             "deadline_exceeded and not retried (it would hold another process as long)")
    reconnect_min_s: float = fixed(RECONNECT_MIN_S, why="the back-off of a lost link, not a deployment's choice")
    reconnect_max_s: float = fixed(RECONNECT_MAX_S, why="the back-off of a lost link, not a deployment's choice")
    drain_timeout_s: float = setting(
        DRAIN_TIMEOUT_S, env="ENGINE_WORKER_DRAIN_TIMEOUT_S",
        help="on SIGTERM, seconds to finish tasks in hand before disconnecting anyway")
    max_pixels: int = setting(
        MAX_PIXELS, env="ENGINE_MAX_PIXELS", type=positive_int,
        help="largest image accepted, in pixels (checked from the header, before decoding)")
    max_input_bytes: int = setting(
        MAX_INPUT_BYTES, flag="--max-input-mb", scale=MIB, env="ENGINE_MAX_INPUT_MB", type=positive_int,
        help="largest encoded input accepted, in MiB")
    max_decoded_bytes: int = setting(
        MAX_DECODED_BYTES, flag="--max-decoded-mb", scale=MIB, env="ENGINE_MAX_DECODED_MB", type=positive_int,
        help="largest decoded image accepted, in MiB: pixels x channels x bytes per sample "
             "(and a progressive JPEG's coefficients), estimated from the header")
    max_memory_bytes: int = setting(  # what one task may hold at once (see codec.MAX_MEMORY_BYTES)
        MAX_MEMORY_BYTES, flag="--memory-budget-mb", scale=MIB, env="ENGINE_MEMORY_BUDGET_MB", type=positive_int,
        help="most memory one task may hold at once in a pool process, in MiB: its input, the decoded image, "
             "and one step's intermediates and output, estimated from the image's shape and the step's "
             "parameters before decoding and before each step; a task over it is refused as image_too_large "
             "naming the step. The default fits a Raspberry Pi 4 (4 GiB, 4 cores): 4 pool processes of "
             "~100 MiB with the models, each holding 512 MiB, leave ~1.4 GiB for the system, the broker and "
             "the page cache; and a 64 MP colour image (192 MB) goes through a step with its output. "
             "Per process: multiply by --processes for the host")
    # this worker's key pair and the broker's public key (None: plaintext)
    curve: PeerKeys | None = fixed(None, why="read from the files --key and --broker-key name")
    learned: bool = setting(  # load the learned models in each pool process and offer their operations
        True, env="ENGINE_WORKER_LEARNED",
        help="load the learned models (face detection, person segmentation) in every pool process. "
             "--no-learned: each process starts faster and uses less memory, and this host does not offer "
             "faces, anonymize and background (the broker sends those tasks to hosts that do). A host whose "
             "processes die loading them turns them off by itself after two such deaths")
    test_ops: bool = setting(  # engine.ops.testing, registered in each pool process
        False, env="ENGINE_WORKER_TEST_OPS",
        help="TEST ONLY: also offer the fault-injection operations sleep, crash and hang "
             "(engine/ops/testing.py); the fault tests and tools/chaos.py use them")

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
