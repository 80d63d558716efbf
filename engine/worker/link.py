"""One DEALER to the broker, owned by one thread: connect, register, heartbeats, reconnect.

Both kinds of worker peer use it: each pool process (its tasks and answers) and the
supervisor (the host's control connection). The owner passes ``register`` (it sends READY),
which ``connect`` calls after every (re)connection; it calls ``tick`` when ``next_due_s``
comes (a heartbeat out, with what ``beat_fields`` adds, or a new socket when the broker has
been silent), ``heard`` for each message received (the broker is alive; its heartbeats carry
its pace, limit and clock), and ``on_handshake`` for the supervisor's handshake events. A
broker silent for ``liveness`` intervals means a new socket, with back-off, until it answers.
The interval and liveness are the broker's, from its heartbeats (``protocol.Pace``); the
worker's own are used until it speaks.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import zmq

from .. import handshake
from .. import protocol as P
from ..sockutil import NOBLOCK, dealer, send_frames
from .config import WorkerConfig

log = logging.getLogger("engine.worker")


class BrokerLink:
    def __init__(self, ctx: zmq.Context, config: WorkerConfig, routing_id: bytes, *, name: str,
                 register: Callable[[], None], watch_handshakes: bool = False,
                 beat_fields: Callable[[], dict] | None = None) -> None:
        self.ctx = ctx
        self.config = config
        self.routing_id = routing_id
        self.name = name
        self._register = register
        self._watch = watch_handshakes
        self._beat_fields = beat_fields  # what each heartbeat carries besides the sender (the supervisor's host load)
        self.sock: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None  # handshake events (the supervisor's link only)
        self._handshakes = handshake.HandshakeWatch(role="worker", curve=config.curve is not None,
                                                    address=config.connect)
        self._refused: str | None = None
        self.pace = P.Pace(config.heartbeat_interval_s, config.heartbeat_liveness)  # the broker's, once it spoke
        self._backoff_s = config.reconnect_min_s
        self.expiry_s = 0.0
        self.next_beat_s = 0.0
        self.max_message_bytes: int | None = None  # the broker's limit, from its first heartbeat
        self.clock_offset_s: float | None = None  # the broker's wall clock less ours, from a heartbeat read at once

    def connect(self) -> None:
        """(Re)connect and register; each call backs off further until the broker answers."""
        self.close(linger_s=0)
        self.sock, self.monitor = dealer(self.ctx, self.config.connect, self.routing_id, keys=self.config.curve,
                                         monitor=self._watch)
        self._register()
        now_s = time.monotonic()
        self.expiry_s = now_s + self.pace.silence_s + self._backoff_s
        self.next_beat_s = now_s + self.pace.interval_s
        self._backoff_s = min(self._backoff_s * 2, self.config.reconnect_max_s)

    def close(self, linger_s: float = 0.0) -> None:
        if self.monitor is not None and self.sock is not None:
            handshake.stop(self.sock, self.monitor)
            self.monitor = None
        if self.sock is not None:
            self.sock.close(linger=int(linger_s * 1000))
            self.sock = None

    def send(self, frames: list) -> None:
        if self.sock is None:
            return
        try:
            send_frames(self.sock, frames, NOBLOCK)
        except zmq.Again:  # no connection at all: the broker refused our CURVE handshake, or is not there
            log.debug("%s: not connected to the broker: a message was dropped (the broker requeues lost tasks)",
                      self.name)

    def heard(self, msg: P.Message, *, fresh: bool = True) -> None:
        """Any message from the broker: it is alive; its heartbeats carry its limit and its pace.
        A heartbeat read as it arrived (``fresh``: not after a long task) sets the clock offset."""
        now_s = time.monotonic()
        self._backoff_s = self.config.reconnect_min_s
        if isinstance(msg, P.Heartbeat):
            pace = self.pace.follow(msg)
            if pace is not self.pace:
                log.debug("%s: the broker beats every %g s (liveness %d): following it", self.name,
                          pace.interval_s, pace.liveness)
                self.pace = pace
                self.next_beat_s = min(self.next_beat_s, now_s + pace.interval_s)
            if msg.max_message_bytes is not None and msg.max_message_bytes > 0:
                self.max_message_bytes = msg.max_message_bytes
            if msg.clock_s is not None and fresh:
                self.clock_offset_s = msg.clock_s - time.time()
        self.expiry_s = now_s + self.pace.silence_s

    def age_s(self, sent_s: float | None) -> float:
        """How long ago the broker sent a message stamped ``sent_s`` (0 if unknown)."""
        if sent_s is None or self.clock_offset_s is None:
            return 0.0
        return max(0.0, time.time() + self.clock_offset_s - sent_s)

    def tick(self, now_s: float, sender: str) -> None:
        """Heartbeat out when due; reconnect if the broker has been silent too long."""
        if now_s >= self.expiry_s:
            log.warning("%s: broker silent for %.1f s: reconnecting to %s", self.name, self.pace.silence_s,
                        self.config.connect)
            self.connect()
        elif now_s >= self.next_beat_s:
            extra = self._beat_fields() if self._beat_fields is not None else {}
            self.send(P.encode(P.Heartbeat(sender=sender, **extra)))
            self.next_beat_s = now_s + self.pace.interval_s

    def next_due_s(self) -> float:
        return min(self.expiry_s, self.next_beat_s)

    def on_handshake(self, frames: list) -> None:
        """A refused key would otherwise look like a broker that is down: say why, once."""
        verdict = self._handshakes.feed(frames)
        if verdict == handshake.OK:
            if self._refused:
                log.info("the broker at %s accepted this worker's key", self.config.connect)
            self._refused = None
        elif verdict is not None and verdict != self._refused:
            log.error("%s; retrying with back-off", verdict)
            self._refused = verdict
