"""One pool process: receive a task from the supervisor, run the pipeline, answer.

Any failure becomes an ERROR reply; only a crash of the process itself (a segfault in
C code, SIGKILL) ends it, and the supervisor then reports and replaces it.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time

import zmq

from .. import protocol as P
from ..errors import ImageTooLarge, InternalError, TaskError
from ..sockutil import COPY_THRESHOLD_BYTES

log = logging.getLogger("engine.worker.pool")

PARENT_CHECK_MS = 1000  # how often an idle process checks that its supervisor is alive


def pool_main(endpoint: str, ident: bytes, limits, supervisor_pid: int | None = None) -> None:
    """Entry point of a pool process (started with the 'spawn' method)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the supervisor's to handle
    import cv2

    cv2.setNumThreads(1)  # one process per core: OpenCV threads would only compete
    from .. import ops

    name = f"{socket.gethostname()}:{os.getpid()}"
    parent = supervisor_pid or os.getppid()
    if os.getppid() != parent:
        return  # the supervisor died while this process was starting: os.getppid() is already init's
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = ident
    sock.copy_threshold = COPY_THRESHOLD_BYTES  # results: copy rather than lend (see engine.sockutil)
    sock.connect(endpoint)
    sock.send_multipart(P.encode(P.Ready(capacity=1, pid=os.getpid())))
    cache: dict = {}
    try:
        while True:
            if not sock.poll(PARENT_CHECK_MS):
                if os.getppid() != parent:
                    return  # the supervisor died: do not linger as an orphan
                continue
            frames = sock.recv_multipart(copy=False)
            try:
                msg, payloads = P.decode(frames)
            except Exception as exc:  # the supervisor only forwards checked messages; be safe anyway
                log.error("pool process dropped a bad message: %s", exc)
                continue
            if isinstance(msg, P.Disconnect):
                return
            if isinstance(msg, P.Request):
                sock.send_multipart(_run(msg, payloads[0], ops, limits, cache, name), copy=False)
    finally:
        sock.close(linger=0)
        ctx.term()


def _run(msg: P.Request, payload, ops, limits, cache: dict, name: str) -> list:
    started = time.perf_counter()
    try:
        out, meta = ops.run(payload.buffer, msg.pipeline, limits=limits, cache=cache)
    except TaskError as exc:
        return P.error_frames(msg.task_id, exc.code, exc.message, {"worker": name})
    except MemoryError:
        return P.error_frames(msg.task_id, ImageTooLarge.code, "the worker ran out of memory on this image",
                              {"worker": name})
    except Exception as exc:  # a bug in an operation must not take the worker down
        log.exception("task %s failed unexpectedly", msg.task_id)
        return P.error_frames(msg.task_id, InternalError.code, f"{type(exc).__name__}: {exc}", {"worker": name})
    meta["worker"] = name
    meta["worker_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return P.encode(P.Reply(task_id=msg.task_id, meta=meta), out)
