"""CurveZMQ for the engine: key files, the broker's authenticator, the peers' side.

Every broker socket is a CURVE server when the broker has keys; ZeroMQ then encrypts
each connection and asks a ZAP handler (``ZapHandler``, in its own thread with its own
socket) whether the peer's public key may connect. Each broker
socket names the allow-list it is checked against by its ZAP domain:

    KEYS_DIR/broker.key          the broker's public key: give it to clients and workers
    KEYS_DIR/broker.key_secret   the broker's secret key (mode 0600, never leaves the host)
    KEYS_DIR/clients/NAME.key    clients allowed to submit tasks   (ZAP domain "clients")
    KEYS_DIR/workers/NAME.key    workers allowed to register       (ZAP domain "workers")

so a client key cannot register as a worker and a worker key cannot submit tasks. A
connection is authenticated once, in its handshake; ZAP answers with the peer's public
key as the User-Id, which ZeroMQ attaches to every message of that connection. The
broker looks that key up in the allow-list for each message (``CurveServer.identity``):
its NAME is the client's identity (quotas, ``info()``), and a key no longer listed
loses service at its next message. The lists are read again when their folder changes
(an added key works at its next connection).

Clients and workers load their own key pair and the broker's public key
(``PeerKeys.load``), by argument, flag or environment variable. ``python -m engine.keys``
makes and manages the files.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from .errors import ConfigError
from .logbound import LogBound

log = logging.getLogger("engine.security")

CLIENTS = "clients"  # ZAP domain of the client sockets, and the folder of their keys
WORKERS = "workers"  # ZAP domain of the worker socket, and the folder of their keys
ROLES = (CLIENTS, WORKERS)
BROKER_NAME = "broker"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
RECHECK_S = 1.0  # an allow-list folder is looked at (one stat) at most this often

# Environment variables (each command line also has a flag for them).
ENV_KEYS_DIR = "ENGINE_KEYS_DIR"  # broker: the folder laid out as above
ENV_CLIENT_KEY = "ENGINE_CLIENT_KEY"  # client: its secret key file
ENV_WORKER_KEY = "ENGINE_WORKER_KEY"  # worker: its secret key file
ENV_BROKER_KEY = "ENGINE_BROKER_KEY"  # client and worker: the broker's public key file

HOW_TO_MAKE_KEYS = (
    "make them with:\n"
    "    python -m engine.keys init --keys-dir KEYS             # the broker's key pair and allow-list folders\n"
    "    python -m engine.keys new alice --dir .                # a client's pair: alice.key, alice.key_secret\n"
    "    python -m engine.keys allow --clients alice.key --keys-dir KEYS\n"
    "    python -m engine.keys new edge1 --dir . && python -m engine.keys allow --workers edge1.key --keys-dir KEYS\n"
    "then start the broker with --keys-dir KEYS (or ENGINE_KEYS_DIR=KEYS); see SECURITY.md")


# ---- key files ---------------------------------------------------------------------------
def write_key_pair(directory: str | os.PathLike, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (mode 0600) in ``directory``.

    Both are written in a private temporary folder first and moved into place, so the
    secret is never readable by others, not even for a moment.
    """
    if not name or "/" in name or name.startswith(".") or os.sep in name:
        raise ConfigError(f"key name {name!r} must be a plain file name (letters, digits, '-', '_')")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = folder / f"{name}{PUBLIC_SUFFIX}", folder / f"{name}{SECRET_SUFFIX}"
    if not force and (public.exists() or secret.exists()):
        raise ConfigError(f"{public} or {secret} exists already; pass --force to replace the pair")
    staging = tempfile.mkdtemp(prefix=".keys-", dir=folder)  # mode 0700
    try:
        made_public, made_secret = zmq.auth.create_certificates(staging, name)
        os.chmod(made_secret, 0o600)
        os.chmod(made_public, 0o644)
        os.replace(made_secret, secret)
        os.replace(made_public, public)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return public, secret


def load_public_key(path: str | os.PathLike) -> bytes:
    """The z85 public key in a key file (public or secret)."""
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read a public key from {path}: {exc}") from None
    return _checked(public, path)


def load_key_pair(path: str | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a secret key file, refusing one others can read."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read a key pair from {path}: {exc}") from None
    if secret is None:
        raise ConfigError(f"{path} holds only a public key; give the secret key file "
                          f"(NAME{SECRET_SUFFIX}) made by python -m engine.keys new NAME")
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}")
    return _checked(public, path), _checked(secret, path)


def _checked(key: bytes, path: str | os.PathLike) -> bytes:
    try:
        if len(z85.decode(key)) == 32:
            return key
    except (ValueError, KeyError, TypeError):
        pass
    raise ConfigError(f"{path}: {key[:12]!r}... is not a 40-character z85 CURVE key")


def key_name(path: str | os.PathLike) -> str:
    """NAME from NAME.key or NAME.key_secret."""
    name = Path(path).name
    for suffix in (SECRET_SUFFIX, PUBLIC_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# ---- the connecting side ------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class PeerKeys:
    """A client's or worker's key pair and the broker's public key (all z85)."""

    public: bytes
    secret: bytes
    server: bytes

    @classmethod
    def load(cls, key_file: str | os.PathLike, broker_key_file: str | os.PathLike) -> PeerKeys:
        """From this peer's secret key file and the broker's public key file."""
        public, secret = load_key_pair(key_file)
        return cls(public=public, secret=secret, server=load_public_key(broker_key_file))

    @classmethod
    def from_files(cls, key_file: str | None, broker_key_file: str | None, *, key_env: str) -> PeerKeys | None:
        """Keys from two paths, both or neither (None: plaintext); ``key_env`` names the flag's variable."""
        if not key_file and not broker_key_file:
            return None
        if not key_file or not broker_key_file:
            missing = (f"this peer's secret key (--key, {key_env})" if not key_file
                       else f"the broker's public key (--broker-key, {ENV_BROKER_KEY})")
            raise ConfigError(f"CURVE needs both this peer's secret key and the broker's public key; "
                              f"{missing} is missing")
        return cls.load(key_file, broker_key_file)

    @classmethod
    def from_env(cls, key_env: str, environ: Mapping[str, str] = os.environ) -> PeerKeys | None:
        """Keys named by ``key_env`` (ENGINE_CLIENT_KEY or ENGINE_WORKER_KEY) and ENGINE_BROKER_KEY."""
        return cls.from_files(environ.get(key_env), environ.get(ENV_BROKER_KEY), key_env=key_env)

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client of the broker (before it connects)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server

    def __repr__(self) -> str:  # never print a secret key
        return f"PeerKeys(public={self.public.decode()!r}, server={self.server.decode()!r})"


def client_keys(keys: PeerKeys | None) -> PeerKeys | None:
    """A client's keys: the argument, else ENGINE_CLIENT_KEY and ENGINE_BROKER_KEY, else None."""
    return keys if keys is not None else PeerKeys.from_env(ENV_CLIENT_KEY)


# ---- the broker's side --------------------------------------------------------------------
class AllowList:
    """Public keys allowed in one ZAP domain: the ``*.key`` files of a folder, read again
    when the folder changes, plus keys granted in memory (the broker's own companions)."""

    def __init__(self, domain: str, folder: Path) -> None:
        self.domain = domain
        self.folder = folder
        self._granted: dict[bytes, str] = {}
        self._from_folder: dict[bytes, str] = {}
        self._by_key: dict[bytes, str] = {}  # z85 key -> name, both sources
        self._stamp: int | None = None
        self._checked_s = 0.0
        self._lock = threading.Lock()  # the ZAP thread and the broker thread both read it
        # Refused peers retry, and anyone can knock with a fresh key each time: a line per key at
        # most, a few a minute in all, then a summary with the counts (engine/logbound.py).
        self.refusals = LogBound(log, f"refused {domain} connections")
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> dict[bytes, str]:
        """Key -> name, read again if the folder changed (looked at once per RECHECK_S)."""
        now_s = time.monotonic()
        with self._lock:
            if force or now_s - self._checked_s >= RECHECK_S:
                self._checked_s = now_s
                try:
                    stamp: int | None = self.folder.stat().st_mtime_ns
                except OSError:
                    stamp = None
                if force or stamp != self._stamp:
                    self._stamp = stamp
                    self._from_folder = self._read()
                    self._merge()
            return self._by_key

    def _merge(self) -> None:
        self._by_key = {**self._from_folder, **self._granted}

    def _read(self) -> dict[bytes, str]:
        found: dict[bytes, str] = {}
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob(f"*{PUBLIC_SUFFIX}")):
            try:
                found[load_public_key(path)] = key_name(path)
            except ConfigError as exc:
                log.warning("allow-list %s: skipped %s", self.domain, exc)
        return found

    def grant(self, key: bytes, name: str) -> None:
        with self._lock:
            self._granted[key] = name
            self._merge()

    def name_of(self, key: bytes) -> str | None:
        return self.refresh().get(key)

    # called in the ZAP thread (pyzmq's configure_curve_callback interface)
    def callback(self, domain: str, key: bytes) -> bool:
        name = self.name_of(key)
        if name is None:
            self.refusals.log(key, "refused a %s connection: key %s is not in %s", domain, key.decode(), self.folder)
        return name is not None


class ZapHandler:
    """Answers libzmq's ZAP requests (RFC 27) for one context: may this CURVE key connect to
    a socket of this ZAP domain? Yes (200) with the peer's z85 public key as the User-Id
    that ZeroMQ attaches to every message of the connection, or no (400).

    A plain blocking loop in a thread of its own, with its own sockets. pyzmq's
    ``ThreadAuthenticator`` runs an asyncio loop that took about 150 us of the interpreter
    per handshake, taken from the broker's thread under a flood of refused keys; this takes
    about 30 us. A NULL (plaintext) socket of the context is let through, as pyzmq does.
    """

    ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks, fixed by RFC 27
    VERSION = b"1.0"

    def __init__(self, context: zmq.Context, lists: Mapping[str, AllowList]) -> None:
        self._ctx = context
        self._lists = {role.encode(): allow for role, allow in lists.items()}
        self._stop_endpoint = f"inproc://engine-zap-stop-{uuid.uuid4().hex}"
        self._thread = threading.Thread(target=self._run, name="engine-zap", daemon=True)
        self._bound = threading.Event()
        self._error: zmq.ZMQError | None = None
        self._failures = LogBound(log, "ZAP requests that failed", by="kind of error")

    def start(self) -> None:
        """Bind the ZAP endpoint (in its thread) and return once it answers."""
        self._thread.start()
        self._bound.wait()
        if self._error is not None:
            raise ConfigError(f"cannot answer CURVE handshakes: {self.ENDPOINT}: {self._error}")

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        pipe = self._ctx.socket(zmq.PAIR)
        try:
            pipe.connect(self._stop_endpoint)
            pipe.send(b"")
            self._thread.join(5)
        finally:
            pipe.close(linger=0)

    def _run(self) -> None:
        zap, stop = self._ctx.socket(zmq.REP), self._ctx.socket(zmq.PAIR)
        try:
            try:
                zap.bind(self.ENDPOINT)
                stop.bind(self._stop_endpoint)
            except zmq.ZMQError as exc:
                self._error = exc
                return
            finally:
                self._bound.set()
            poller = zmq.Poller()
            poller.register(zap, zmq.POLLIN)
            poller.register(stop, zmq.POLLIN)
            while stop not in dict(poller.poll()):
                zap.send_multipart(self._answer_safely(zap.recv_multipart()))
        finally:
            zap.close(linger=0)
            stop.close(linger=0)

    def _answer_safely(self, request: list[bytes]) -> list[bytes]:
        try:
            return self.answer(request)
        except Exception as exc:
            self._failures.log(type(exc).__qualname__,
                               "a ZAP request could not be answered; refused it (a bug: please report)", exc_info=True)
            return self._reply(request[1] if len(request) > 1 else b"", b"500", b"internal error")

    def answer(self, request: list[bytes]) -> list[bytes]:
        """The reply to one request: version, request id, domain, address, identity, mechanism, credentials."""
        if len(request) < 6 or request[0] != self.VERSION:
            return self._reply(request[1] if len(request) > 1 else b"", b"400", b"bad ZAP request")
        _, request_id, domain, _address, _identity, mechanism, *credentials = request
        if mechanism == b"NULL":
            return self._reply(request_id, b"200", b"OK", b"anonymous")
        allow = self._lists.get(domain)
        if mechanism != b"CURVE" or allow is None or len(credentials) != 1 or len(credentials[0]) != 32:
            return self._reply(request_id, b"400", b"not a CURVE peer of a known domain")
        key = z85.encode(credentials[0])
        if allow.callback(allow.domain, key):
            return self._reply(request_id, b"200", b"OK", key)
        return self._reply(request_id, b"400", b"Unknown key")

    def _reply(self, request_id: bytes, status: bytes, text: bytes, user_id: bytes = b"") -> list[bytes]:
        return [self.VERSION, request_id, status, text, user_id, b""]


class CurveServer:
    """The broker's CURVE setup: its key pair, the ZAP thread and the two allow-lists."""

    def __init__(self, context: zmq.Context, keys_dir: str | os.PathLike) -> None:
        self.keys_dir = Path(keys_dir)
        secret_file = self.keys_dir / f"{BROKER_NAME}{SECRET_SUFFIX}"
        if not secret_file.is_file():
            raise ConfigError(f"no broker key pair in {self.keys_dir} ({secret_file} is missing); "
                              + HOW_TO_MAKE_KEYS)
        self.public, self._secret = load_key_pair(secret_file)
        self.lists = {role: AllowList(role, self.keys_dir / role) for role in ROLES}
        self._zap = ZapHandler(context, self.lists)
        self._zap.start()  # before any socket binds: without a ZAP handler CURVE admits any key
        counts = {role: len(allow.refresh()) for role, allow in self.lists.items()}
        log.info("CURVE on: broker key %s; %d client key(s), %d worker key(s) allowed (%s)",
                 self.public.decode(), counts[CLIENTS], counts[WORKERS], self.keys_dir)

    def secure(self, sock: zmq.Socket, role: str) -> None:
        """Make ``sock`` a CURVE server whose peers must hold a key of ``role`` (before bind)."""
        sock.curve_server = True
        sock.curve_secretkey = self._secret
        sock.curve_publickey = self.public
        sock.zap_domain = role.encode()

    def identity(self, frame: zmq.Frame, role: str) -> str | None:
        """The name of the key a frame's connection was authenticated with, or None once
        that key has left the ``role`` allow-list (read again at most every RECHECK_S)."""
        user_id = frame.get("User-Id")  # a string property of a message from a ZAP-authenticated peer
        return self.lists[role].name_of(str(user_id).encode())

    def grant_companion(self, role: str, name: str, folder: str | os.PathLike) -> tuple[Path, Path]:
        """A fresh key pair for a process the broker starts itself, allowed in memory only.

        Returns (its secret key file, the broker's public key file), both written in
        ``folder`` (which the caller makes private and removes).
        """
        _, secret_file = write_key_pair(folder, name, force=True)
        self.lists[role].grant(load_public_key(secret_file), name)
        broker_file = Path(folder) / f"{BROKER_NAME}{PUBLIC_SUFFIX}"
        broker_file.write_text(f'curve\n    public-key = "{self.public.decode()}"\n')
        return secret_file, broker_file

    def describe(self) -> dict:
        return {"curve": True, "broker_key": self.public.decode(),
                **{f"{role}_allowed": sorted(set(allow.refresh().values())) for role, allow in self.lists.items()}}

    def refused(self) -> dict[str, int]:
        """Handshakes refused since the start, by role (for INFO)."""
        return {role: allow.refusals.total for role, allow in self.lists.items()}

    def close(self) -> None:
        self._zap.stop()
