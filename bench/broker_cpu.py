"""CPU per task, by process and thread, on the broker's hot path (issue: data path).

    python bench/broker_cpu.py [--tasks 20000] [--payload-kb 80] [--window 64] [--no-reference]

Starts ``python -m engine.broker`` (cache off) with two echo workers (no image work, see
peers/echo.py), sends TASKS tasks of PAYLOAD_KB through ``engine.Client.imap_unordered``
and reads each thread's CPU time from /proc before and after. Prints microseconds of CPU
per task for the broker's main thread, its other threads (libzmq I/O), the echo workers
and this client process. Linux only. Run it on an idle machine: CPU time, not wall time,
is what it reports, but a loaded machine still shifts cache behaviour.

Then, when ``../shared/perf-reference`` is beside the checkout (and zmq.h is installed), the
same run through its reference C broker (cbroker_proj.c, built here against the libzmq pyzmq
loaded), and the ratio engine / reference of the broker's CPU per task.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.peers.base import free_port
from bench.peers.echo import echo_main
from bench.peers.engine import broker_ready, start_broker

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


REFERENCE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                             "perf-reference")
BUILD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".build")


def reference_broker() -> tuple[str | None, str]:
    """The reference C broker (perf-reference/src/cbroker_proj.c: the same LRU/credit loop
    speaking this protocol), built against the libzmq pyzmq loaded; or None and why not."""
    src = os.path.join(REFERENCE_DIR, "src", "cbroker_proj.c")
    if not os.path.exists(src):
        return None, f"no reference broker at {os.path.normpath(src)}"
    if not os.path.exists("/usr/include/zmq.h"):
        return None, "the reference broker needs zmq.h to build (apt-get install libzmq3-dev)"
    import zmq.backend.cython._zmq  # noqa: F401  (maps pyzmq's libzmq)

    with open("/proc/self/maps") as f:
        libs = sorted({line.split()[-1] for line in f if "libzmq" in line.rsplit("/", 1)[-1]})
    if len(libs) != 1:
        return None, f"cannot tell which libzmq pyzmq loaded ({libs})"
    out = os.path.join(BUILD_DIR, "cbroker_proj")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(BUILD_DIR, exist_ok=True)
        done = subprocess.run(["gcc", "-O2", "-o", out, src, libs[0], f"-Wl,-rpath,{os.path.dirname(libs[0])}"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"the reference broker did not build: {done.stderr.strip()[:300]}"
    return out, ""


def start_reference(binary: str) -> tuple[subprocess.Popen, str, str]:
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([binary, front, back], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # "READY pid front back"
    if not line.startswith("READY"):
        raise RuntimeError(f"the reference broker did not start: {line!r}")
    return proc, front, back


def _client(front: str):
    from engine import Client

    try:
        return Client(front, timeout_s=120, validate=False, shared_memory=False)
    except TypeError:  # an engine from before shared memory (run from a worktree of an older commit)
        return Client(front, timeout_s=120, validate=False)


def measure(name: str, broker: subprocess.Popen, front: str, back: str, args: argparse.Namespace,
            info: bool) -> dict:
    """Run TASKS tasks through ``broker`` with two echo workers; CPU per task by process."""
    ctx = mp.get_context("spawn")
    echoes = [ctx.Process(target=echo_main, args=(back, 16), daemon=True) for _ in range(2)]
    try:
        for e in echoes:
            e.start()
        if info:
            broker_ready(front, 32)
        else:
            time.sleep(1.5)  # the reference broker answers no INFO: give the workers time to register
        payload = os.urandom(args.payload_kb * 1024)
        # The bytes cross the sockets, as they do through the reference broker: the echo workers
        # read no shared memory (the broker would read each segment for them: not what is measured).
        with _client(front) as client:
            for _ in client.imap_unordered([payload] * 500, "noop", window=args.window):  # warm up
                pass
            b0 = thread_cpu_s(broker.pid)
            sys0 = SYSTEM_TIME.get((broker.pid, broker.pid), 0.0)
            w0, c0 = [process_cpu_s(e.pid) for e in echoes], thread_cpu_s(os.getpid())
            t0 = time.perf_counter()
            done = sum(1 for _ in client.imap_unordered([payload] * args.tasks, "noop", window=args.window))
            wall_s = time.perf_counter() - t0
            b1 = thread_cpu_s(broker.pid)
            sys1 = SYSTEM_TIME.get((broker.pid, broker.pid), 0.0)
            w1, c1 = [process_cpu_s(e.pid) for e in echoes], thread_cpu_s(os.getpid())
            hot = client.info().get("hot_path") if info else None
    finally:
        broker.terminate()
        broker.wait(20)
        for e in echoes:
            e.kill()
    per = 1e6 / done
    row = {"broker": name, "tasks": done, "tasks_per_s": done / wall_s,
           "main_us": (b1.get(broker.pid, 0) - b0.get(broker.pid, 0)) * per,
           "kernel_us": (sys1 - sys0) * per,
           "other_us": sum(b1[t] - b0.get(t, 0) for t in b1 if t != broker.pid) * per,
           "echo_us": sum(a - b for a, b in zip(w1, w0)) * per,
           "client_us": sum(c1[t] - c0.get(t, 0) for t in c1) * per, "hot": hot}
    split: dict[str, float] = {}
    for t in c1:
        role = "caller" if t == os.getpid() else thread_name(os.getpid(), t)
        split[role] = split.get(role, 0.0) + (c1[t] - c0.get(t, 0)) * per
    print(f"{name}: {done} tasks of {args.payload_kb} KiB in {wall_s:.2f} s ({done / wall_s:.0f}/s); CPU per task: "
          f"broker main {row['main_us']:.0f} us (in the kernel {row['kernel_us']:.0f}), broker other threads "
          f"{row['other_us']:.0f} us, echo workers {row['echo_us']:.0f} us, client {row['client_us']:.0f} us "
          f"({', '.join(f'{k} {v:.0f}' for k, v in sorted(split.items()))})")
    if info:
        print(f"hot path: {_hot_path(hot)}")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--payload-kb", type=int, default=80)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--broker-flag", action="append", default=[], help="extra broker flag (repeatable)")
    p.add_argument("--no-reference", action="store_true",
                   help="do not run the reference C broker (../shared/perf-reference) beside the engine's")
    args = p.parse_args(argv)
    broker, front, back = start_broker(0, args.broker_flag)
    engine = measure("engine", broker, front, back, args, info=True)
    if args.no_reference:
        return 0
    binary, why = reference_broker()
    if binary is None:
        print(f"reference C broker: skipped ({why})")
        return 0
    ref = measure("reference C", *start_reference(binary), args, info=False)
    all_threads = (engine['main_us'] + engine['other_us']) / max(ref['main_us'] + ref['other_us'], 1e-9)
    print(f"engine / reference C, CPU per task: broker main {engine['main_us'] / max(ref['main_us'], 1e-9):.2f}x, "
          f"all broker threads {all_threads:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
