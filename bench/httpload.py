"""A closed-loop HTTP load client: N threads, each with one keep-alive connection.

Every thread sends its next request as soon as its previous answer is read in full, so
``concurrency`` requests are in flight at all times (the way wrk, hey and imgproxy's
image-servers-benchmark drive a server). Latency is from just before the request is
written to the moment the last byte of the answer is read. The same client drives every
HTTP peer, so its own cost (it shares the machine with the servers) is the same for all.
"""
from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .measure import latency_summary

REQUEST_TIMEOUT_S = 60.0  # connect, each send and each read; a server silent for longer is a failure
JOIN_POLL_S = 0.2  # the main thread wakes this often, so Ctrl-C is seen while threads run
MAX_ERRORS_KEPT = 20


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Load:
    """What one run of the client saw."""

    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # transport failures and bad answers, first few
    error_count: int = 0
    out_bytes: int = 0
    started_s: float = 0.0
    finished_s: float = 0.0

    @property
    def wall_s(self) -> float:
        return max(self.finished_s - self.started_s, 1e-9)

    def summary(self) -> dict:
        n = len(self.latencies_s)
        return {"concurrency": self.concurrency, "requests": n + self.error_count, "ok": n,
                "errors": self.error_count, "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "first_errors": self.errors[:5], "wall_s": round(self.wall_s, 3),
                "requests_per_s": round(n / self.wall_s, 2), "latency_ms": latency_summary(self.latencies_s),
                "out_bytes_mean": round(self.out_bytes / n) if n else 0}


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"


def fetch(host: str, port: int, request: Request, *, timeout_s: float = REQUEST_TIMEOUT_S
          ) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request(request.method, request.path, body=request.body, headers=request.headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def run_load(host: str, port: int, requests: list[Request], *, concurrency: int, duration_s: float = 0.0,
             total: int = 0, check: Callable[[bytes], bool] = is_jpeg,
             timeout_s: float = REQUEST_TIMEOUT_S) -> Load:
    """Keep ``concurrency`` requests in flight, cycling through ``requests``, until ``total``
    requests have been sent (if given) or ``duration_s`` has passed; requests in flight then
    finish. An answer counts as good if its status is 200 and ``check(body)`` holds."""
    if not requests or concurrency < 1 or (total <= 0 and duration_s <= 0):
        raise ValueError("need requests, concurrency >= 1 and a total or a duration")
    load = Load(concurrency)
    lock = threading.Lock()  # guards ``load`` and the counter
    counter = itertools.count()
    load.started_s = time.perf_counter()
    deadline_s = load.started_s + duration_s if duration_s > 0 else float("inf")

    def next_request() -> Request | None:
        with lock:
            i = next(counter)
        if (total > 0 and i >= total) or time.perf_counter() >= deadline_s:
            return None
        return requests[i % len(requests)]

    def failed(text: str) -> None:
        with lock:
            load.error_count += 1
            if len(load.errors) < MAX_ERRORS_KEPT:
                load.errors.append(text[:300])

    def one_connection() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        try:
            while (req := next_request()) is not None:
                t0 = time.perf_counter()
                try:
                    conn.request(req.method, req.path, body=req.body, headers=req.headers)
                    resp = conn.getresponse()
                    body = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    failed(f"{req.method} {req.path[:80]}: {type(exc).__name__}: {exc}")
                    conn.close()  # http.client reconnects on the next request
                    continue
                latency_s = time.perf_counter() - t0
                with lock:
                    load.statuses[resp.status] = load.statuses.get(resp.status, 0) + 1
                    load.finished_s = max(load.finished_s, time.perf_counter())
                if resp.status != 200 or not check(body):
                    failed(f"{req.method} {req.path[:80]}: HTTP {resp.status}, {len(body)} bytes: {body[:160]!r}")
                    continue
                with lock:
                    load.latencies_s.append(latency_s)
                    load.out_bytes += len(body)
                if resp.will_close:
                    conn.close()
        finally:
            conn.close()

    threads = [threading.Thread(target=one_connection, name=f"http-load-{k}", daemon=True)
               for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(JOIN_POLL_S)
    load.finished_s = load.finished_s or time.perf_counter()
    return load
