"""A worker host that dies is noticed when its connection closes, not 3 heartbeats later."""
import signal
import time
from pathlib import Path

from faults_helpers import add_worker, tiny_jpeg, wait_until

SLOW_HEARTBEAT_S = 5.0  # dead after 15 s of silence: far longer than the test waits for the requeue


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_worker_host_is_dropped_when_its_connection_closes(cluster_factory):
    cluster = cluster_factory(local_workers=0, extra=["--heartbeat-interval-s", str(SLOW_HEARTBEAT_S)])
    cluster.start_broker(wait_slots=0)
    doomed = add_worker(cluster, 1, "--heartbeat-interval-s", str(SLOW_HEARTBEAT_S))
    cluster.wait_ready(2)
    with cluster.client(timeout_s=60) as client:
        future = client.submit(tiny_jpeg(44), "sleep:ms=5000|grayscale")
        wait_until(lambda: "task" in doomed.stderr_text() or client.info()["in_flight"] == 1, 30, "the task to start")
        add_worker(cluster, 1, "--heartbeat-interval-s", str(SLOW_HEARTBEAT_S))
        cluster.wait_ready(2)  # the new worker's slots (the doomed one's are taken)
        orphans = children(doomed.pid)
        assert orphans, "the doomed host's pool process was not found"
        killed_s = time.monotonic()
        doomed.signal(signal.SIGKILL)  # supervisor gone: the kernel closes its TCP connection
        # Its pool process dies with it, busy or not: it must not finish its task and then
        # register again as a worker of a host that no longer exists.
        wait_until(lambda: not any(alive(pid) for pid in orphans), 1.5, "the orphaned pool process to die")
        result = future.result(60)
        answered_s = time.monotonic() - killed_s
        info = client.info()
    log = cluster.broker.stderr_text()
    assert result.width == 44
    assert "closed its connection; 1 task(s) requeued" in log, log[-2000:]
    assert "missed heartbeats" not in log
    assert info["workers_total"] == 1 and info["requeued"] == 1
    print(f"FIGURES host killed: answered {answered_s:.2f} s after the kill (5 s of it the task itself; "
          f"heartbeat liveness {3 * SLOW_HEARTBEAT_S:g} s)")
