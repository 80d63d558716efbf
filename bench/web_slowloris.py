"""python bench/web_slowloris.py: how long a normal ``GET /login`` takes while slow clients trickle headers.

examples:
    python bench/web_slowloris.py                          # 1,100 slow connections, 30 s, gateway fd limit 1,024
    python bench/web_slowloris.py --slow 400 --duration-s 15

It starts ``python -m engine.web`` (no broker is needed for /login) with a soft descriptor
limit of --fd-limit (1,024 is the usual default), opens --slow connections that each send a
request line and then one header line every --trickle-s seconds without ever ending the
headers, and reopens any the gateway closes (after --reopen-after-s, as an attacker would).
Meanwhile it sends one normal ``GET /login`` a second on a fresh connection and prints how
long each took, or that it got no answer within --probe-timeout-s. Extra arguments after
``--`` go to the gateway (e.g. ``-- --header-timeout-s 5``).
"""
from __future__ import annotations

import argparse
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers.base import free_port

# python -c: lower the soft descriptor limit (argv[1]), then run python -m engine.web with the rest
LIMITED = ("import resource, runpy, sys; n = int(sys.argv.pop(1)); "
           "resource.setrlimit(resource.RLIMIT_NOFILE, (n, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
           "runpy.run_module('engine.web', run_name='__main__', alter_sys=True)")


def start_gateway(port: int, data_dir: str, fd_limit: int, extra: list[str],
                  env: dict[str, str] | None = None) -> subprocess.Popen:
    """python -m engine.web on 127.0.0.1:port, with a soft descriptor limit of fd_limit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, "-c", LIMITED, str(fd_limit), "--listen", f"127.0.0.1:{port}", "--broker",
           f"tcp://127.0.0.1:{free_port()}", "--data-dir", data_dir, "--log-level", "warning", *extra]
    return subprocess.Popen(cmd, env=env)


def get_login(port: int, timeout_s: float) -> float | None:
    """Seconds a plain GET /login took to answer completely, or None without an answer."""
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while more := sock.recv(65536):
                data += more
                if time.monotonic() - start > timeout_s:
                    return None
    except OSError:
        return None
    return time.monotonic() - start if data.startswith(b"HTTP/1.1 200") else None


class Trickler:
    """``count`` connections that never finish their headers, reopened when the gateway closes
    them (unless ``reopen_after_s`` is None). ``lived_s``: how long each closed one had lived."""

    def __init__(self, port: int, count: int, trickle_s: float, reopen_after_s: float | None) -> None:
        self.port, self.count, self.trickle_s, self.reopen_after_s = port, count, trickle_s, reopen_after_s
        self.sel = selectors.DefaultSelector()
        self.closed_by_gateway = 0
        self.opened = 0
        self.lived_s: list[float] = []
        self.stop = threading.Event()

    def _open(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        self.sel.register(sock, selectors.EVENT_WRITE, time.monotonic())  # the request line goes once connected
        self.opened += 1

    def trickling(self) -> int:
        """Connections that sent their request line and are trickling headers now."""
        return sum(1 for key in list(self.sel.get_map().values()) if key.events == selectors.EVENT_READ)

    def _gone(self, sock: socket.socket, reopen_at: list[float]) -> None:
        self.lived_s.append(time.monotonic() - self.sel.unregister(sock).data)
        sock.close()
        self.closed_by_gateway += 1
        if self.reopen_after_s is not None:
            reopen_at.append(time.monotonic() + self.reopen_after_s)

    def run(self) -> None:
        for _ in range(self.count):
            self._open()
        reopen_at: list[float] = []
        next_line = time.monotonic() + self.trickle_s
        while not self.stop.is_set():
            for key, events in self.sel.select(0.2):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    if events & selectors.EVENT_WRITE:
                        sock.send(b"GET /login HTTP/1.1\r\nHost: bench\r\n")
                        self.sel.modify(sock, selectors.EVENT_READ, key.data)
                    elif sock.recv(4096) == b"":
                        self._gone(sock, reopen_at)
                except OSError:
                    self._gone(sock, reopen_at)
            now = time.monotonic()
            while reopen_at and reopen_at[0] <= now:
                reopen_at.pop(0)
                self._open()
            if now >= next_line:
                next_line = now + self.trickle_s
                for key in list(self.sel.get_map().values()):
                    if key.events == selectors.EVENT_READ:
                        try:
                            key.fileobj.send(b"X-Trickle: 1\r\n")  # type: ignore[union-attr]
                        except OSError:
                            pass
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slow", type=int, default=1100, help="slow connections held open (default 1100)")
    p.add_argument("--duration-s", type=float, default=30.0, help="seconds of probing under the attack (default 30)")
    p.add_argument("--trickle-s", type=float, default=10.0, help="seconds between header lines (default 10)")
    p.add_argument("--reopen-after-s", type=float, default=1.0,
                   help="seconds before a slow connection the gateway closed is reopened (default 1)")
    p.add_argument("--probe-timeout-s", type=float, default=10.0, help="seconds a probe waits (default 10)")
    p.add_argument("--fd-limit", type=int, default=1024, help="the gateway's soft descriptor limit (default 1024)")
    p.add_argument("gateway_args", nargs="*", help="after --: flags for python -m engine.web")
    args = p.parse_args(argv)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds the slow connections

    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        gateway = start_gateway(port, data_dir, args.fd_limit, args.gateway_args)
        try:
            deadline = time.monotonic() + 30
            while get_login(port, 1.0) is None:
                if time.monotonic() > deadline or gateway.poll() is not None:
                    raise SystemExit("the gateway did not start")
                time.sleep(0.2)
            quiet = [get_login(port, args.probe_timeout_s) for _ in range(5)]
            attacker = Trickler(port, args.slow, args.trickle_s, args.reopen_after_s)
            thread = threading.Thread(target=attacker.run, daemon=True)
            thread.start()
            time.sleep(2.0)  # let the slow connections in
            probes: list[float | None] = []
            end = time.monotonic() + args.duration_s
            while time.monotonic() < end:
                started = time.monotonic()
                probes.append(get_login(port, args.probe_timeout_s))
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
            attacker.stop.set()
            thread.join(10)
        finally:
            gateway.terminate()
            gateway.wait(10)

    answered = [t for t in probes if t is not None]
    ms = [round(t * 1000, 1) for t in answered]
    print(f"quiet: GET /login {statistics.median(t for t in quiet if t) * 1000:.1f} ms median of {len(quiet)}")
    print(f"under {args.slow} slow connections (one header line every {args.trickle_s:g} s), {args.duration_s:g} s:")
    print(f"  probes answered: {len(answered)} of {len(probes)} (each waits up to {args.probe_timeout_s:g} s)")
    if ms:
        print(f"  GET /login: median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms")
    print(f"  slow connections opened {attacker.opened}, closed by the gateway {attacker.closed_by_gateway}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
