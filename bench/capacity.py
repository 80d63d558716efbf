"""Broker capacity: how many tasks per second one broker routes, and how many bytes.

Three runs, each with the CPU of broker, workers and clients sampled:
  * ``tiny_real``: real workers, an 8x8 JPEG and the cheapest pipeline (``noop`` when the
    registry has it, else ``jpeg``): the whole system's task rate with almost no image work;
  * ``echo_tiny``: echo workers (no image work at all, see peers/echo.py): the broker alone;
  * ``echo_10mb``: echo workers, 10 MB frames: bytes per second through the broker.
``implied_broker_tasks_per_s`` is tasks/s divided by the broker's busy cores: the rate the
broker would reach with a whole core to itself, an extrapolation, labelled as one.
"""
from __future__ import annotations

import multiprocessing as mp
import os

from . import workloads as W
from .harness import Settings, measured
from .measure import latency_summary
from .peers.engine import Engine, broker_ready, start_broker
from .peers.gang import Gang

FRAME_BYTES = 10 * 2**20
ECHO_SLOTS = 16  # slots each echo worker announces
TINY_WINDOW_PER_CLIENT = 64
BIG_WINDOW_PER_CLIENT = 4


class EchoBroker(Engine):
    name = "engine-echo"
    label = "engine broker with echo workers"

    def start(self) -> None:
        self._gang = None
        self._echoes: list = []
        self._broker, self.front, self.back = start_broker(0, [])
        from .peers.echo import echo_main

        ctx = mp.get_context("spawn")
        for _ in range(self.workers):
            proc = ctx.Process(target=echo_main, args=(self.back, ECHO_SLOTS), daemon=True)
            proc.start()
            self._echoes.append(proc)
        broker_ready(self.front, self.workers * ECHO_SLOTS)
        self._gang = Gang(self.clients, self.driver, endpoint=self.front, share=self.clients)
        self._gang.start()

    def stop(self) -> None:
        super().stop()
        for proc in self._echoes:
            proc.terminate()
            proc.join(5)

    def roles(self) -> dict[str, list[int]]:
        return {"workers": [p.pid for p in self._echoes], "broker": [self._broker.pid],
                "client": self._gang.pids() if self._gang else []}


def _one(peer, payload: bytes, pipeline: str, window: int, settings: Settings) -> dict:
    run, sampler = measured(peer, (payload,), pipeline, window=window, duration_s=settings.capacity_duration_s,
                            warmup_tasks=window)
    n = len(run.latencies_s)
    cores, seconds = sampler.cores(), sampler.cpu_seconds()
    rate = n / run.wall_s
    broker_cores = cores.get("broker", 0.0)
    return {
        "pipeline": pipeline, "payload_bytes": len(payload), "tasks": n, "errors": len(run.errors),
        "first_error": run.errors[0] if run.errors else None, "window": window, "clients": peer.clients,
        "workers": peer.workers, "tasks_per_s": round(rate, 1),
        "gb_per_s_through_broker": round(rate * (len(payload) + run.out_bytes / max(n, 1)) / 1e9, 3),
        "latency_ms": latency_summary(run.latencies_s), "cpu_cores": cores,
        "broker_cpu_us_per_task": round(seconds["broker"] * 1e6 / n, 1) if n and "broker" in seconds else None,
        "implied_broker_tasks_per_s": round(rate / broker_cores) if broker_cores > 0.05 else None,
    }


def measure_capacity(settings: Settings, progress) -> dict:
    tiny = W.tiny_jpeg()
    pipeline = W.tiny_pipeline()
    clients = max(settings.clients, 1)
    out: dict = {"notes": []}
    if pipeline != "noop":
        out["notes"].append(f"no 'noop' operation is registered: tiny_real runs {pipeline!r} on an 8x8 JPEG, "
                            "so it still decodes and encodes a (tiny) image")
    runs = (
        ("tiny_real", Engine, tiny, pipeline, TINY_WINDOW_PER_CLIENT),
        ("echo_tiny", EchoBroker, tiny, "grayscale", TINY_WINDOW_PER_CLIENT),
        ("echo_10mb", EchoBroker, os.urandom(FRAME_BYTES), "grayscale", BIG_WINDOW_PER_CLIENT),
    )
    for name, cls, payload, pipe, per_client in runs:
        if settings.broker and cls is not Engine:
            out[name] = {"status": "skipped", "reason": "echo workers need a local broker"}
            continue
        progress.say(f"capacity {name}: {len(payload)} B payloads")
        peer = cls(workers=settings.workers, clients=clients, broker=settings.broker)
        try:
            peer.start()
            out[name] = _one(peer, payload, pipe, per_client * clients, settings)
        except Exception as exc:
            out[name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
            progress.note(f"capacity {name} failed: {out[name]['reason']}")
        finally:
            peer.stop()
    return out
