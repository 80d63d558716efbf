"""A short text summary of the broker's INFO answer for ``python -m engine.client --info``."""
from __future__ import annotations


def _n(value, unit: str = "") -> str:
    return "?" if value is None else f"{value}{unit}"


def _worker_line(w: dict) -> str:
    name = w.get("name") or w.get("id", "?")
    where = " ".join(str(x) for x in (w.get("host"), f"pid {w['pid']}" if w.get("pid") else None) if x)
    slots = (w.get("free") or 0) + (w.get("in_flight") or 0)
    state = "draining" if w.get("draining") else "busy" if w.get("in_flight") else "idle"
    return (f"  {name} ({where}): {_n(w.get('processes'))} process(es), {slots} slot(s) ({_n(w.get('free'))} free), "
            f"{state}, {_n(w.get('tasks_done'))} done, heartbeat {_n(w.get('last_heartbeat_s_ago'), ' s')} ago")


def summary(info: dict, address: str) -> str:
    """Workers, queue and throughput in a few lines a person reads at a glance."""
    workers = [w for w in info.get("workers", []) if isinstance(w, dict)]
    total = info.get("workers_total", len(workers))
    uptime_s = info.get("uptime_s") or 0.0
    completed = info.get("completed", 0) or 0
    rate = f"{completed / uptime_s:.2f}/s" if uptime_s > 0 else "?"
    lines = [f"broker {address}: up {uptime_s:.0f} s, {total} worker(s), {_n(info.get('slots_free'))} free slot(s)",
             f"queue: {_n(info.get('queue_depth'))} waiting, {_n(info.get('in_flight'))} running; "
             f"{completed} completed, {_n(info.get('failed'))} failed ({rate} on average since the broker started)"]
    lines += [_worker_line(w) for w in workers]
    if total > len(workers):
        lines.append(f"  ... and {total - len(workers)} more")
    if not total:
        lines.append("  no worker is connected: start one with engine-worker --connect tcp://BROKER:5556, "
                     "or the broker with --local-workers 2")
    if any((w.get("free") or 0) + (w.get("in_flight") or 0) > (w.get("processes") or 0) for w in workers):
        lines.append("  (a slot is one task a worker accepts at once: each process runs one and keeps the others "
                     "waiting beside it, so it never idles between tasks)")
    cache = info.get("cache")
    if isinstance(cache, dict):
        lines.append(f"result cache: {cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses")
    ops = info.get("ops") or {}
    lines.append(f"operations offered: {len(ops)} (python -m engine.ops describes them; --json prints everything)")
    return "\n".join(lines)


def history_lines(history: dict, minutes: int = 10) -> list[str]:
    """The broker's recent samples (INFO's ``history``) as one line a minute, oldest first: tasks
    completed and failed in that minute, and the most that waited in the queue."""
    columns = history.get("columns") or []
    try:
        age, done, failed, queue = (columns.index(c) for c in ("age_s", "completed", "failed", "queue_depth"))
    except ValueError:
        return ["history: not understood (an older or newer broker?); --json prints it"]
    rows = [r for r in history.get("rows") or [] if isinstance(r, list) and len(r) == len(columns)]
    if len(rows) < 2:
        return ["history: not enough samples yet (the broker samples every "
                f"{history.get('step_s', '?')} s; ask again in a minute)"]
    buckets: dict[int, list[list]] = {}  # whole minutes of age -> its rows, oldest first
    for row in rows:
        buckets.setdefault(int(row[age] // 60), []).append(row)
    ages = sorted(buckets, reverse=True)  # oldest minute first
    shown = ages[-minutes:]
    before = buckets[ages[-minutes - 1]][-1] if len(ages) > minutes else buckets[shown[0]][0]
    lines = ["last minutes (oldest first):"]
    for minute in shown:
        group = buckets[minute]
        last = group[-1]
        lines.append(f"  {minute:>2}-{minute + 1} min ago: {last[done] - before[done]} completed, "
                     f"{last[failed] - before[failed]} failed, queue up to {max(r[queue] for r in group)}")
        before = last
    return lines
