"""CPU per task, by process and thread, on the broker's hot path (issue: data path).

    python bench/broker_cpu.py [--tasks 20000] [--payload-kb 80] [--window 64]

Starts ``python -m engine.broker`` (cache off) with two echo workers (no image work, see
peers/echo.py), sends TASKS tasks of PAYLOAD_KB through ``engine.Client.imap_unordered``
and reads each thread's CPU time from /proc before and after. Prints microseconds of CPU
per task for the broker's main thread, its other threads (libzmq I/O), the echo workers
and this client process. Linux only. Run it on an idle machine: CPU time, not wall time,
is what it reports, but a loaded machine still shifts cache behaviour.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.peers.echo import echo_main  # noqa: E402
from bench.peers.engine import broker_ready, start_broker  # noqa: E402

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


SYSTEM_TIME = {}  # tid -> stime (s), from the last ``thread_cpu_s``


def thread_cpu_s(pid: int) -> dict[int, float]:
    """utime + stime of every thread of ``pid`` (stime alone kept in ``SYSTEM_TIME``)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) * TICK_S
            SYSTEM_TIME[(pid, int(tid))] = int(fields[12]) * TICK_S
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def thread_name(pid: int, tid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def _hot_path(hot: dict | None) -> str:
    if not hot:
        return "off"
    kind = "compiled" if hot.get("compiled") else "pure Python"
    return f"{kind}, {hot.get('answered', 0)} task(s) answered there"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--payload-kb", type=int, default=80)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--broker-flag", action="append", default=[], help="extra broker flag (repeatable)")
    args = p.parse_args(argv)
    from engine import Client

    broker, front, back = start_broker(0, args.broker_flag)
    ctx = mp.get_context("spawn")
    echoes = [ctx.Process(target=echo_main, args=(back, 16), daemon=True) for _ in range(2)]
    try:
        for e in echoes:
            e.start()
        broker_ready(front, 32)
        payload = os.urandom(args.payload_kb * 1024)
        with Client(front, timeout_s=120, validate=False) as client:
            for _ in client.imap_unordered([payload] * 500, "noop", window=args.window):  # warm up
                pass
            b0 = thread_cpu_s(broker.pid)
            sys0 = SYSTEM_TIME.get((broker.pid, broker.pid), 0.0)
            b0, w0, c0 = b0, [process_cpu_s(e.pid) for e in echoes], thread_cpu_s(os.getpid())
            t0 = time.perf_counter()
            done = sum(1 for _ in client.imap_unordered([payload] * args.tasks, "noop", window=args.window))
            wall_s = time.perf_counter() - t0
            b1 = thread_cpu_s(broker.pid)
            sys1 = SYSTEM_TIME.get((broker.pid, broker.pid), 0.0)
            b1, w1, c1 = b1, [process_cpu_s(e.pid) for e in echoes], thread_cpu_s(os.getpid())
            hot = client.info().get("hot_path")
        per = 1e6 / done
        main_us = (b1.get(broker.pid, 0) - b0.get(broker.pid, 0)) * per
        other_us = sum(b1[t] - b0.get(t, 0) for t in b1 if t != broker.pid) * per
        echo_us = sum(a - b for a, b in zip(w1, w0)) * per
        client_us = sum(c1[t] - c0.get(t, 0) for t in c1) * per
        client_split = {}
        for t in c1:
            role = "caller" if t == os.getpid() else thread_name(os.getpid(), t)
            client_split[role] = client_split.get(role, 0.0) + (c1[t] - c0.get(t, 0)) * per
        print(f"{done} tasks of {args.payload_kb} KiB in {wall_s:.2f} s ({done / wall_s:.0f}/s); CPU per task: "
              f"broker main {main_us:.0f} us (in the kernel {(sys1 - sys0) * per:.0f}), broker other threads {other_us:.0f} us, echo workers {echo_us:.0f} us, "
              f"client {client_us:.0f} us ({', '.join(f'{k} {v:.0f}' for k, v in sorted(client_split.items()))})")
        print(f"hot path: {_hot_path(hot)}")
    finally:
        broker.terminate()
        broker.wait(20)
        for e in echoes:
            e.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
