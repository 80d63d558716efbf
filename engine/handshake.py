"""Why the broker will not talk to us: libzmq's connection and handshake events, read for a person.

A refused ZMTP handshake is silent on the socket itself (nothing is ever received),
so a client or worker without this would only see its timeout. libzmq reports the
outcome on a monitor socket instead; ``HandshakeWatch`` turns those events into a
verdict: ``OK``, or a message that says what is wrong and how to fix it.

Measured with libzmq 4.3.5 against a CURVE broker: a key missing from the allow-list
gives ``HANDSHAKE_FAILED_AUTH`` (ZAP status 400) once; a plaintext peer gives
``HANDSHAKE_FAILED_PROTOCOL`` (mechanism mismatch) once; a wrong broker public key
gives ``HANDSHAKE_FAILED_NO_DETAIL`` (an errno) on every reconnect, and so does a
plaintext peer of a CURVE broker (only the broker sees the mechanism mismatch). A broker dying
mid-handshake can give that last one too, so only ``NO_DETAIL_REPEATS`` in a row, with
no success between them, count as a verdict.

A connection that nobody accepts is silent too: ZeroMQ's ``connect`` never fails, it retries.
On a local address (loopback TCP, ``ipc://``) a failed attempt can only mean that nothing
listens there (the kernel refuses it at once), so the watch keeps ``unreachable``, a message
saying so, from a refused attempt until one connects (``EVENT_CONNECTED``). On a remote address
a failed attempt proves less (a host still booting, a route still coming up): nothing is
concluded there. Measured with libzmq 4.3.5: a refused attempt gives ``EVENT_CLOSED`` (its
descriptor) then ``EVENT_CONNECT_RETRIED``, every ``RECONNECT_IVL`` (100 ms); a connection the
peer closed gives ``EVENT_DISCONNECTED`` then ``EVENT_CONNECT_RETRIED``, which proves nothing
yet (the peer may be back at the next attempt).
"""
from __future__ import annotations

import ipaddress
import uuid
from typing import TypeVar

import zmq
from zmq.utils.monitor import parse_monitor_message

EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
          | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
          | zmq.EVENT_CONNECTED | zmq.EVENT_CLOSED | zmq.EVENT_CONNECT_RETRIED)
NO_DETAIL_REPEATS = 3
OK = "ok"  # the verdict of a handshake that succeeded

SocketT = TypeVar("SocketT", bound=zmq.Socket)  # zmq.Socket or zmq.asyncio.Socket


def local(address: str) -> bool:
    """True for an endpoint on this host, where a refused connection means nothing listens:
    ``ipc://``, and ``tcp://`` to 127.0.0.0/8, ::1 or localhost."""
    transport, _, rest = address.partition("://")
    if transport == "ipc":
        return True
    if transport != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].rsplit(";", 1)[-1].strip("[]")  # tcp://[src;]host:port
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, or *
        return False


def monitor(sock: SocketT) -> SocketT:
    """A PAIR socket (same class as ``sock``) that receives ``sock``'s connection and handshake events.
    Owned by the thread that owns ``sock``; ``stop`` it before closing ``sock``."""
    return sock.get_monitor_socket(EVENTS, addr=f"inproc://engine-handshake-{uuid.uuid4().hex}")


def stop(sock: zmq.Socket, mon: zmq.Socket) -> None:
    try:
        sock.disable_monitor()
    except zmq.ZMQError:
        pass  # the socket is closed already
    mon.close(linger=0)


class HandshakeWatch:
    """Feed it monitor messages; it answers ``OK``, a failure message, or None (no verdict) about
    the handshake, and keeps ``unreachable`` about the connection (see the module's docstring)."""

    def __init__(self, *, role: str, curve: bool, address: str) -> None:
        self.role = role  # "client" or "worker": names the allow-list in the advice
        self.curve = curve
        self.address = address
        self.local = local(address)
        self.unreachable: str | None = None  # nothing listens at a local address: why, until one connects
        self._no_detail = 0
        self._attempt_failed = False  # EVENT_CLOSED seen: the retry that follows is after a refused attempt

    def feed(self, frames: list) -> str | None:
        event = parse_monitor_message([bytes(f) for f in frames])
        kind, value = int(event["event"]), int(event["value"])
        if kind == zmq.EVENT_CONNECTED:
            self.unreachable, self._attempt_failed = None, False
            return None
        if kind == zmq.EVENT_CLOSED:
            self._attempt_failed = True
            return None
        if kind == zmq.EVENT_CONNECT_RETRIED:
            if self.local and self._attempt_failed:
                self.unreachable = f"no broker listens on {self.address} (connection refused)"
            self._attempt_failed = False
            return None
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._no_detail = 0
            return OK
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (f"the broker at {self.address} refused this {self.role}'s key (ZAP status {value}): its "
                    f"public key is not in the broker's allow-list for {self.role}s (on the broker: "
                    f"python -m engine.keys allow --{self.role}s KEY.key --keys-dir DIR)")
        if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                if self.curve:
                    return (f"the broker at {self.address} does not use CURVE, but this {self.role} was given "
                            "keys: drop the keys, or start the broker with --keys-dir")
                return (f"the broker at {self.address} requires CURVE: give this {self.role} its key pair and "
                        "the broker's public key (see SECURITY.md)")
            return f"the handshake with {self.address} broke the ZMTP protocol (libzmq error {value:#x})"
        if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # the same words each time: logged once
            self._no_detail += 1
            if self._no_detail < NO_DETAIL_REPEATS:
                return None
            if self.curve:
                return (f"the CURVE handshake with {self.address} failed {NO_DETAIL_REPEATS} times in a row: the "
                        f"broker public key this {self.role} was given is most likely not the broker's")
            return (f"the peer at {self.address} closed the connection during the handshake {NO_DETAIL_REPEATS} "
                    f"times in a row: the broker most likely requires CURVE; give this {self.role} its key "
                    "pair and the broker's public key (see SECURITY.md)")
        return None
