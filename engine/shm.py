"""Same-host payloads: image bytes through shared memory, only names through ZeroMQ.

A client or a pool process on the broker's host need not push an image through two
sockets and libzmq's I/O threads: it writes the bytes once into a POSIX shared-memory
segment (a file of ``/dev/shm``, mode 0600) and sends its name; the peer reads it once.
Ray's object store, Arrow's Plasma and PyTorch's DataLoader pass local buffers the same way.

**Who may.** The broker writes a key segment at start (``BrokerKey``: 32 random bytes and
its PID namespace, mode 0600) and names it in every heartbeat it sends on a plaintext
socket (never with CURVE). A peer that can read it (the same host, the same user, the same
PID namespace) answers with ``prove``: an HMAC of its routing id under the key. Only a peer
whose proof the broker checked may send a task by reference (header ``ref``), and such a
task goes only to a worker that proved it too; the broker reads the bytes itself for any
other worker. A remote or CURVE peer never sees a key it can read, so it is never offered.

**Names.** ``engine-<pid>-<token>-<n>``: the client's PID and a random token of its own,
then a counter. A worker writes the result beside it as ``<input name>-r<worker pid>``.
Names are checked against that pattern before any file is opened, and a file is read
only if it is a regular file of this user no larger than the caller's limit.

**Who frees what, after which fault** (a test runs each of them and counts the files):
- the client unlinks a task's input and its result when the task ends, however it ends
  (result, error, timeout, cancel, ``close``);
- a result of a task that ended already (a straggler's second copy, an answer after a
  timeout) is unlinked by the client's periodic ``Segments.sweep``;
- a client that dies (SIGKILL) leaves its segments: every broker sweeps the segments whose
  PID is no longer alive (``sweep_dead``, every ``SWEEP_INTERVAL_S``), and so does every
  client at start. A worker that dies mid-write leaves a result under the client's PID:
  the client's sweep removes it once its task has ended;
- a broker that dies leaves its key segment: the next sweep of any broker removes it.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import sys
from collections.abc import Iterable

from .errors import EngineError

log = logging.getLogger("engine.shm")

SHM_DIR = "/dev/shm"
ENV_NO_SHM = "ENGINE_NO_SHM"  # set: no peer of this process offers or uses shared memory
ENV_MIN_BYTES = "ENGINE_SHM_MIN_BYTES"
# Smaller images cost the machine less through ZeroMQ than through /dev/shm (page cache work per
# file): measured with noop tasks, all processes' CPU per image, shared memory against sockets:
# +3 % at photo size (34-70 KB JPEGs), -43 % at 1080p (250-490 KB). docs/benchmarks.md.
MIN_BYTES = int(os.environ.get(ENV_MIN_BYTES, "") or 128 * 1024)
SWEEP_INTERVAL_S = 10.0  # how often a broker removes dead processes' segments, a client its ended tasks'
KEY_BYTES = 32
POOL_FILES = 32  # a client's files kept for reuse after their task ended
POOL_BYTES = 32 * 1024 * 1024  # ... and the bytes they may hold in /dev/shm
_NAME = re.compile(r"engine-(\d{1,10})-([0-9a-f]{16})-(\d{1,20})(?:-r(\d{1,10}))?\Z")
_KEY_NAME = re.compile(r"engine-key-(\d{1,10})-([0-9a-f]{16})\Z")
_ANY = re.compile(r"engine-(?:key-)?(\d{1,10})-[0-9a-f]{16}(?:-\d{1,20}(?:-r\d{1,10})?)?\Z")


class ShmError(EngineError, OSError):
    """A segment could not be written or read (gone, not ours, too large, no space)."""


def available() -> bool:
    """Shared memory can be offered here: Linux's /dev/shm, and not turned off."""
    return sys.platform.startswith("linux") and os.path.isdir(SHM_DIR) and not os.environ.get(ENV_NO_SHM)


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def _write_new(name: str, data) -> None:
    """Create ``name`` (0600, never an existing file) holding ``data``; on failure nothing is left."""
    path = _path(name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ShmError(exc.errno, f"cannot create shared-memory segment {name}: {exc.strerror}") from exc
    try:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
    except OSError as exc:
        os.close(fd)
        unlink(name)
        raise ShmError(exc.errno, f"cannot write shared-memory segment {name}: {exc.strerror}") from exc
    os.close(fd)


def _open_own(name: str, flags: int) -> tuple[int, os.stat_result]:
    """Open a segment that must be a regular file of this user (never through a symlink)."""
    try:
        fd = os.open(_path(name), flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ShmError(exc.errno, f"shared-memory segment {name} cannot be opened: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise ShmError(errno.EPERM, f"shared-memory segment {name} is not a file of this user")
    return fd, st


def _overwrite(name: str, data) -> None:
    """Write ``data`` over a file of ours (it keeps its pages: no allocation, no zeroing)."""
    fd, st = _open_own(name, os.O_WRONLY)
    try:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], done)
        if st.st_size > done:
            os.ftruncate(fd, done)
    except OSError as exc:
        raise ShmError(exc.errno, f"cannot write shared-memory segment {name}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _rename(old: str, new: str) -> bool:
    try:
        os.rename(_path(old), _path(new))
        return True
    except OSError:
        return False


def _read(name: str, max_bytes: int) -> bytes:
    fd, st = _open_own(name, os.O_RDONLY)
    try:
        if st.st_size > max_bytes:
            raise ShmError(errno.EFBIG, f"shared-memory segment {name} holds {st.st_size} bytes; "
                                        f"the limit is {max_bytes}")
        data = os.read(fd, st.st_size) if st.st_size else b""
        if len(data) != st.st_size:  # tmpfs reads whole; anything else is a file changing under us
            raise ShmError(errno.EIO, f"shared-memory segment {name}: short read")
        return data
    finally:
        os.close(fd)


def unlink(name: str) -> bool:
    """Remove a segment; False if it was gone already (or not ours to remove)."""
    try:
        os.unlink(_path(name))
        return True
    except OSError:
        return False


# ---- the broker's key, and a peer's proof ---------------------------------------------------
class BrokerKey:
    """The broker's proof-of-host secret, in a segment only this user can read."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(KEY_BYTES)
        self.name = f"engine-key-{os.getpid()}-{secrets.token_hex(8)}"
        _write_new(self.name, self._secret + _pid_namespace().encode())

    def verify(self, proof: str | None, route: bytes) -> bool:
        """The peer at ``route`` read this key (same host, user and PID namespace)."""
        return isinstance(proof, str) and hmac.compare_digest(proof, _mac(self._secret, route))

    def close(self) -> None:
        unlink(self.name)


def _mac(secret: bytes, route: bytes) -> str:
    return hmac.new(secret, route, hashlib.sha256).hexdigest()


def prove(key_name: str | None, route: bytes) -> str | None:
    """The proof for a broker's key segment, or None when this process cannot read it (another
    host, another user, another PID namespace, shared memory off)."""
    if not key_name or not _KEY_NAME.match(key_name) or not available():
        return None
    try:
        raw = _read(key_name, KEY_BYTES + 256)
    except ShmError:
        return None
    if len(raw) < KEY_BYTES or raw[KEY_BYTES:].decode(errors="replace") != _pid_namespace():
        return None
    return _mac(raw[:KEY_BYTES], route)


# ---- a client's segments -----------------------------------------------------------------------
class Segments:
    """One client's segments: inputs it wrote, results written for it. Not thread-safe: the
    client's IO thread owns it.

    A file of an ended task is kept for the next input (up to ``POOL_FILES`` files and
    ``POOL_BYTES`` bytes) instead of being unlinked: writing over pages tmpfs already holds
    costs a sixth of allocating and zeroing new ones (``bench/shm_cost.py``). Only a file no
    live task names is reused, so a worker still reading it is one whose answer is dropped."""

    def __init__(self) -> None:
        self.prefix = f"engine-{os.getpid()}-{secrets.token_hex(8)}-"
        self._next = 0
        self._sizes: dict[str, int] = {}  # live inputs -> bytes
        self._free: list[tuple[str, int]] = []  # files kept for reuse (name, bytes they hold)
        self._free_bytes = 0

    @property
    def live(self) -> int:
        """Inputs written and not yet released."""
        return len(self._sizes)

    def _new_name(self) -> str:
        self._next += 1
        return f"{self.prefix}{self._next}"

    def put(self, data) -> str:
        """Write an input; its name travels instead of the bytes."""
        size = memoryview(data).nbytes
        while self._free:
            name, held = self._free.pop()
            self._free_bytes -= held
            try:
                _overwrite(name, data)
            except ShmError:
                unlink(name)
                continue
            self._sizes[name] = size
            return name
        name = self._new_name()
        _write_new(name, data)
        self._sizes[name] = size
        return name

    def spare(self) -> str | None:
        """A spare file for a task's result (a worker claims it by renaming it): one kept for
        reuse, or None when none is kept (the worker then writes a new file)."""
        if not self._free:
            return None
        name, held = self._free.pop()
        self._free_bytes -= held
        return name

    def drop_spare(self, name: str) -> None:
        """A task ended: its spare file goes if no worker claimed it. Never kept for reuse: a
        worker still running the task (cancelled, timed out, a straggler's copy) may claim it
        later, and must not take a file that holds another task's input by then."""
        unlink(name)

    def read(self, name: str) -> bytes:
        """An input of ours back (a task resent inline, to a broker without shared memory)."""
        return _read(name, 1 << 62)

    def take_result(self, input_name: str, result_name: str, max_bytes: int) -> bytes:
        """A result a worker wrote for ``input_name``: read, then kept for a later input (or unlinked)."""
        if not result_name.startswith(input_name + "-r") or not _NAME.match(result_name):
            raise ShmError(errno.EPERM, f"a result named {result_name!r} is not one of this task's")
        try:
            data = _read(result_name, max_bytes)
        except ShmError:
            unlink(result_name)
            raise
        name = self._new_name()
        if not self._keep(len(data)) or not _rename(result_name, name):
            unlink(result_name)
        else:
            self._add_free(name, len(data))
        return data

    def release(self, input_name: str) -> None:
        """A task ended: its input is kept for a later one, or unlinked (a worker still reading
        it keeps its open copy)."""
        size = self._sizes.pop(input_name, None)
        if size is None:
            return
        if self._keep(size):
            self._add_free(input_name, size)
        else:
            unlink(input_name)

    def _keep(self, size: int) -> bool:
        return len(self._free) < POOL_FILES and self._free_bytes + size <= POOL_BYTES

    def _add_free(self, name: str, size: int) -> None:
        self._free.append((name, size))
        self._free_bytes += size

    def sweep(self, live_inputs: Iterable[str]) -> int:
        """Remove our segments of tasks that ended (a result that came after its task ended,
        a straggler's second copy): every file under our prefix not of a live input or kept
        for reuse."""
        live = set(live_inputs)
        free = {name for name, _ in self._free}
        removed = 0
        for name in _listdir():
            if not name.startswith(self.prefix):
                continue
            if "-r" in name[len(self.prefix):]:  # a result: of a task still running, or garbage
                stale = name.split("-r", 1)[0] not in live
            else:
                stale = name not in live and name not in free
            if stale and unlink(name):
                removed += 1
        return removed

    def close(self) -> int:
        self._sizes.clear()
        self._free.clear()
        self._free_bytes = 0
        return self.sweep(())


# ---- what the worker does ------------------------------------------------------------------
def read_input(name: str, max_bytes: int) -> bytes:
    """A task's input, by the name its client sent."""
    match = _NAME.match(name)
    if match is None or match.group(4) is not None:
        raise ShmError(errno.EINVAL, f"{name[:80]!r} is not a shared-memory input name")
    return _read(name, max_bytes)


def parse_ref(payload: str) -> tuple[str, str | None]:
    """A task's reference: its input's name and, if its client gave one, a spare file of its own
    for the result (``"<input> <spare>"``)."""
    name, _, spare = payload.partition(" ")
    return name, spare or None


def write_result(input_name: str, data, spare: str | None = None) -> str:
    """Write a task's result beside its input; the name is what the reply carries. With a
    ``spare`` (a spare file of the same client), the worker claims it by renaming it to the
    result's name, atomically: one writer only (a straggler's copy finds it gone and writes a
    file of its own), over pages already there (no allocation, no zeroing)."""
    name = f"{input_name}-r{os.getpid()}"
    match = _NAME.match(name)
    if match is None:
        raise ShmError(errno.EINVAL, f"{input_name[:80]!r} is not a shared-memory input name")
    unlink(name)  # this process's earlier try at the same task (it was requeued to it)
    if spare is not None and _claimable(spare, input_name) and _rename(spare, name):
        try:
            _overwrite(name, data)
            return name
        except ShmError:
            unlink(name)
    _write_new(name, data)
    return name


def _claimable(spare: str, input_name: str) -> bool:
    """A spare file of the input's own client (its PID and token), not a result."""
    match = _NAME.match(spare)
    return match is not None and match.group(4) is None and \
        spare.rsplit("-", 1)[0] == input_name.rsplit("-", 1)[0]


# ---- garbage: segments of processes that died ------------------------------------------------
def _listdir() -> list[str]:
    try:
        return [n for n in os.listdir(SHM_DIR) if n.startswith("engine-")]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def footprint() -> tuple[int, int]:
    """(segments, bytes) of this engine's segments in /dev/shm now, any process's."""
    count = size = 0
    for name in _listdir():
        if _ANY.match(name):
            try:
                size += os.stat(_path(name)).st_size
                count += 1
            except OSError:
                pass
    return count, size


def sweep_dead() -> int:
    """Unlink this user's segments whose owning process is gone (a client or broker that died)."""
    removed = 0
    uid = os.geteuid()
    alive: dict[int, bool] = {}
    for name in _listdir():
        match = _ANY.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid not in alive:
            alive[pid] = _alive(pid)
        if alive[pid]:
            continue
        try:
            if os.lstat(_path(name)).st_uid != uid:
                continue
        except OSError:
            continue
        if unlink(name):
            removed += 1
    if removed:
        log.info("removed %d shared-memory segment(s) left by processes that are gone", removed)
    return removed


_swept = False


def sweep_once() -> None:
    """``sweep_dead`` the first time a process asks (each client does, at start)."""
    global _swept
    if not _swept:
        _swept = True
        sweep_dead()


def read_result(name: str, max_bytes: int) -> bytes:
    """A result by its name, left in place (the broker keeps a copy for its result cache)."""
    match = _NAME.match(name)
    if match is None or match.group(4) is None:
        raise ShmError(errno.EINVAL, f"{name[:80]!r} is not a shared-memory result name")
    return _read(name, max_bytes)
