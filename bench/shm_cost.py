"""What a same-host payload costs through shared memory, beside one ZeroMQ hop, per size.

    python bench/shm_cost.py [--sizes-kb 1,4,16,64,80,256,1024] [--repeat 2000]

Shared memory (engine/shm.py), all in this process, CPU per task: the client writes the input
and later reads and unlinks the result and unlinks the input; the worker reads the input and
writes the result (the input and the result the same size). ZeroMQ: one PUSH->PULL hop over TCP
loopback between two processes, CPU of both (a brokered task crosses four such hops: client to
broker to worker and back). Linux only; run it on an idle machine. It is what
``engine.shm.MIN_BYTES`` is chosen from: below the size where the two lines cross, a task is
cheaper through the sockets.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def shm_us(size: int, repeat: int) -> float:
    from engine import shm

    segs = shm.Segments()
    data = os.urandom(size)
    start = _cpu_s()
    for _ in range(repeat):
        name = segs.put(data)
        got = shm.read_input(name, size)
        result = shm.write_result(name, got)
        segs.take_result(name, result, size)
        segs.release(name)
    return (_cpu_s() - start) / repeat * 1e6


def _pull(endpoint: str, count: int, out) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.connect(endpoint)
    start = None
    for i in range(count):
        sock.recv(copy=False)
        if i == 0:
            start = _cpu_s()
    out.put(_cpu_s() - start)
    sock.close(0)
    ctx.term()


def zmq_hop_us(size: int, repeat: int) -> float:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    out: mp.Queue = mp.Queue()
    child = mp.Process(target=_pull, args=(f"tcp://127.0.0.1:{port}", repeat + 1, out))
    child.start()
    data = os.urandom(size)
    sock.send(data)
    time.sleep(0.2)
    start = _cpu_s()
    for _ in range(repeat):
        sock.send(data, copy=size < 65536)
    receiver_s = out.get(timeout=120)
    sender_s = _cpu_s() - start  # includes this process's libzmq I/O thread
    child.join(10)
    sock.close(0)
    ctx.term()
    return (sender_s + receiver_s) / repeat * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python bench/shm_cost.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes-kb", default="1,4,16,64,80,256,1024")
    p.add_argument("--repeat", type=int, default=2000)
    args = p.parse_args(argv)
    print(f"{'size':>8} {'shm, one task (4 sides)':>26} {'one ZeroMQ hop':>16} {'4 hops':>10}")
    for kb in (int(x) for x in args.sizes_kb.split(",")):
        size = kb * 1024
        repeat = max(50, args.repeat * 64 // max(64, kb))
        s, z = shm_us(size, repeat), zmq_hop_us(size, repeat)
        print(f"{kb:>6} KiB {s:>23.1f} us {z:>13.1f} us {4 * z:>7.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
