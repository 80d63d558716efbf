"""The broker's INFO answer, bounded whatever the number of clients, workers or identities.

Long lists become summaries plus the top entries (``*_total`` says how many there are),
strings a peer chose are cut, and a last check against the header limit drops detail
until the answer fits, so an INFO always reaches the asker. Without CURVE a client's
identity is its routing id, which would let another plaintext client claim its replies:
INFO shows those only as a hash. Asked with ``{"history": true}``, INFO adds the broker's
recent samples (``history.History``), the oldest dropped first if the answer would not fit.
"""
from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

import msgpack

from .. import protocol as P
from .. import shm

if TYPE_CHECKING:
    from .core import Broker
    from .state import Dispatcher

MAX_WORKERS_LISTED = 64
MAX_IDENTITIES_LISTED = 20
MAX_DIFFERING_LISTED = 256  # operations declared differently by workers of different versions
MAX_TEXT_CHARS = 64  # host names and the like, as a worker announced them
BUDGET_BYTES = P.MAX_HEADER_BYTES // 2  # room to spare under the limit every client enforces


def _anonymous(name: str) -> str:
    return "client-" + hashlib.sha256(name.encode()).hexdigest()[:10]


def _worker(row: dict) -> dict:
    return {k: (v[:MAX_TEXT_CHARS] if isinstance(v, str) else v) for k, v in row.items()}


def hosts(d: Dispatcher, now_s: float) -> list[dict]:
    """One row per worker host (its supervisor's control connection, its pool processes
    summed), or per worker that speaks for itself; sorted by host."""
    processes: dict[bytes, list] = {}
    for w in d.workers.values():
        if not w.control and w.group is not None and w.group in d.workers:
            processes.setdefault(w.group, []).append(w)
    rows = []
    for w in sorted(d.workers.values(), key=lambda w: (w.host, w.wid)):
        if not w.control and w.group is not None and w.group in d.workers:
            continue  # counted in its host's row
        row = w.describe(now_s, d.lent(w.wid))
        if w.control:
            parts = [m.describe(now_s, d.lent(m.wid)) for m in processes.get(w.wid, [])]
            row.update(free=sum(m["free"] for m in parts), in_flight=sum(m["in_flight"] for m in parts),
                       busy=any(m["busy"] for m in parts), draining=any(m["draining"] for m in parts),
                       tasks_done=w.tasks_done_before + sum(m["tasks_done"] for m in parts),
                       lease_expiries=sum(m["lease_expiries"] for m in parts), processes_connected=len(parts))
        rows.append(row)
    return rows


def bounded(broker: Broker, you: str = "", *, history: bool = False) -> dict:
    now_s = time.monotonic()
    d = broker.dispatcher
    config = broker.config
    workers = hosts(d, now_s)
    label = str if broker.curve is not None else _anonymous
    identities, identities_total = broker.quotas.describe(d.per_client, top=MAX_IDENTITIES_LISTED, label=label)
    out = {"broker": broker.instance_id, "uptime_s": round(broker.uptime_s(now_s), 3),
           "queue_depth": broker.queue_depth(), "in_flight": broker.task_count() - broker.queue_depth(),
           "max_queue": config.max_queue, "queued_bytes": broker.queued_bytes(),
           "max_queue_bytes": config.max_queue_bytes, "clients": len(broker.native.clients),
           "workers": [_worker(w) for w in workers[:MAX_WORKERS_LISTED]],
           "workers_total": len(workers), "slots_free": sum(w["free"] for w in workers),
           "ops": d.schema(),
           "ops_differ": [name[:MAX_TEXT_CHARS] for name in d.differing_ops()[:MAX_DIFFERING_LISTED]],
           "cache": broker.cache.stats() if broker.cache is not None else None,
           "security": {"curve": broker.curve is not None, "compat_token": bool(config.compat_token),
                        "client_max_in_flight": config.client_max_in_flight,
                        "client_rate_per_s": config.client_rate_per_s,
                        "refused_connections": broker.curve.refused() if broker.curve is not None else None},
           "identities": identities, "identities_total": identities_total,
           "unread": {f.name: f.outbox.describe() for f in broker.fronts},
           "hot_path": broker.lane.describe() if broker.lane is not None else None,
           "shared_memory": _shared_memory(broker, workers),
           "recent_failures": list(broker.recent_failures), "you": you[:P.MAX_TASK_ID_CHARS], **broker.stats,
           **broker.metrics.counts()}
    if history:
        out["history"] = broker.history.describe(now_s)
    return _fit(out)


def _shared_memory(broker: Broker, workers: list) -> dict | None:
    """Same-host payloads: on or off, who proved it, and this host's segments now."""
    if broker.shm_key is None:
        return None
    segments, size = shm.footprint()
    return {"clients": broker.native.shared_clients(), "workers": sum(1 for w in broker.dispatcher.workers.values()
                                                                  if w.shm),
            "segments": segments, "bytes": size}


def _fit(out: dict) -> dict:
    """Drop detail until the packed answer is under ``BUDGET_BYTES`` (a worker may announce
    large operation schemas; many workers each add theirs)."""
    def size() -> int:
        return len(msgpack.packb(out, use_bin_type=True))

    if size() <= BUDGET_BYTES:
        return out
    rows = out["history"]["rows"] if out.get("history") else []
    while rows and size() > BUDGET_BYTES:  # the oldest samples go first
        del rows[:max(1, len(rows) // 2)]
    if size() <= BUDGET_BYTES:
        return out
    out["ops"] = {name[:MAX_TEXT_CHARS]: {} for name in list(out["ops"])[:256]}  # names only
    out["truncated"] = True
    while size() > BUDGET_BYTES and (out["workers"] or out["ops"] or out["identities"] or out["recent_failures"]):
        for key in ("workers", "ops", "identities", "recent_failures"):
            items = out[key]
            if items:
                half = len(items) // 2
                out[key] = items[:half] if isinstance(items, list) else dict(list(items.items())[:half])
    return out
