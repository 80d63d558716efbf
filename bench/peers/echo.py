"""An echo worker: speaks the worker side of the wire protocol and sends every payload
straight back, doing no image work. With it, what is measured is the broker alone:
how many tasks per second it routes, and how many bytes per second with zero copy."""
from __future__ import annotations

import os
import socket
import time

HEARTBEAT_EVERY_S = 1.0


def echo_main(connect: str, capacity: int) -> None:
    import zmq

    from engine import protocol as P
    from engine.errors import ProtocolError
    from engine.ops import describe

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(connect)
    ready = P.encode(P.Ready(capacity=capacity, ops=describe(), host=socket.gethostname(), pid=os.getpid()))
    sock.send_multipart(ready)
    last_sent_s = time.monotonic()
    try:
        while True:
            if sock.poll(int(HEARTBEAT_EVERY_S * 500)):
                frames = sock.recv_multipart(copy=False)
                try:
                    msg, payloads = P.decode(frames)
                except ProtocolError:
                    continue
                if isinstance(msg, P.Request):
                    reply = P.Reply(task_id=msg.task_id, meta={"pipeline_ms": 0.0, "worker": "echo"})
                    sock.send_multipart(P.encode(reply, payloads[0]), copy=False)
                    last_sent_s = time.monotonic()
                elif isinstance(msg, P.Disconnect):
                    sock.send_multipart(ready)
                    last_sent_s = time.monotonic()
            if time.monotonic() - last_sent_s > HEARTBEAT_EVERY_S:
                sock.send_multipart(P.encode(P.Heartbeat()))
                last_sent_s = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(linger=0)
        ctx.term()
