"""Shared by the security tests: a key folder made with the real key tool, a CURVE cluster,
and a loopback TCP proxy that records every byte between a client and the broker."""
from __future__ import annotations

import select
import socket
import threading
from pathlib import Path

from cluster_helpers import FAST_HEARTBEAT_S, Cluster

from engine import Client
from engine import keys as keytool
from engine.security import PeerKeys

REFUSED_TIMEOUT_S = 2.0  # a refused CURVE handshake never connects: this is how long a client tries


class KeyRing:
    """``python -m engine.keys`` run for real: the broker's folder, and named peer key pairs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "broker-keys"
        assert keytool.main(["init", "--keys-dir", str(self.dir)]) == 0
        self.broker_public = self.dir / "broker.key"

    def new(self, name: str, role: str | None = None) -> Path:
        """Make NAME's pair; with ``role`` ("clients" or "workers") allow it. Returns the secret file."""
        assert keytool.main(["new", name, "--dir", str(self.root)]) == 0
        if role is not None:
            assert keytool.main(["allow", f"--{role}", str(self.root / f"{name}.key"), "--keys-dir",
                                 str(self.dir)]) == 0
        return self.root / f"{name}.key_secret"

    def peer(self, name: str, *, broker_public: Path | None = None) -> PeerKeys:
        return PeerKeys.load(self.root / f"{name}.key_secret", broker_public or self.broker_public)

    def worker_flags(self, name: str) -> list[str]:
        return ["--key", str(self.root / f"{name}.key_secret"), "--broker-key", str(self.broker_public)]


class SecureCluster(Cluster):
    """A CURVE broker; ``info`` and ``client`` speak as ``as_`` (a key name in the ring)."""

    def __init__(self, ring: KeyRing, *, as_: str = "alice", extra: list[str] | None = None, **kwargs) -> None:
        super().__init__(extra=["--keys-dir", str(ring.dir), "--secure", *(extra or [])], **kwargs)
        self.ring = ring
        self.as_ = as_

    def info(self, timeout_s: float = 5.0) -> dict:
        with self.client(timeout_s=timeout_s) as client:
            return client.info(timeout_s)

    def client(self, who: str | None = None, **kwargs) -> Client:
        kwargs.setdefault("timeout_s", 60.0)
        kwargs.setdefault("heartbeat_interval_s", FAST_HEARTBEAT_S)
        kwargs.setdefault("keys", self.ring.peer(who or self.as_))
        return Client(self.front, **kwargs)




class Recorder:
    """A TCP proxy on loopback: clients connect to ``endpoint``; every byte both ways is kept."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.captured = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="recorder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        pairs: dict[socket.socket, socket.socket] = {}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.listener, *pairs], [], [], 0.1)
                for sock in ready:
                    if sock is self.listener:
                        inside, _ = self.listener.accept()
                        outside = socket.create_connection(self.target, timeout=5)
                        pairs[inside], pairs[outside] = outside, inside
                        continue
                    try:
                        data = sock.recv(1 << 16)
                    except OSError:
                        data = b""
                    peer = pairs.get(sock)
                    if not data or peer is None:
                        for s in (sock, peer):
                            if s is not None:
                                pairs.pop(s, None)
                                s.close()
                        continue
                    with self._lock:
                        self.captured += data
                    peer.sendall(data)
        finally:
            for s in pairs:
                s.close()
            self.listener.close()

    def bytes(self) -> bytes:
        with self._lock:
            return bytes(self.captured)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
