"""Poison tasks (crash or hang their process every time) and per-task deadlines."""
import time

from faults_helpers import Batch, pool_pids, start, tally, tiny_jpeg, wait_until

from engine.deadlines import GRACE_S
from engine.errors import BadParameter, DeadlineExceeded, TaskFailed


def test_poison_tasks_are_retried_max_retries_times_then_failed_and_the_rest_completes(cluster_factory):
    """A crash is retried (the machine may be at fault); a task past the worker's task
    timeout is not: it would only hold another process as long (a hostile image)."""
    cluster = start(cluster_factory, (2,), "--task-timeout-s", "1.5")  # broker: --max-retries 2 (default)
    with cluster.client() as client:
        crash = client.submit(tiny_jpeg(16), "crash")
        hang = client.submit(tiny_jpeg(16), "grayscale|hang")
        batch = Batch.submit(client, 16, "sleep:ms=100|grayscale")
        t = tally(client, batch, "poison batch (1 crash + 1 hang among 16 good)")
        errors = {name: f.exception(60) for name, f in (("crash", crash), ("hang", hang))}
        info = client.info()
    t.assert_exactly_once(16)
    crashed, hung = errors["crash"], errors["hang"]
    assert isinstance(crashed, TaskFailed), crashed
    assert "failed 3 time(s)" in crashed.message and "max_retries=2" in crashed.message, crashed.message
    assert "killed by signal 9" in crashed.message
    assert isinstance(hung, DeadlineExceeded) and "task timeout of 1.5 s" in hung.message, hung
    assert hung.meta["task_timeout_s"] == 1.5
    assert info["requeued"] == 2 and info["failed"] == 2  # the crash retried twice; the hang once only
    recent = {f["code"]: f for f in info["recent_failures"]}  # what the status page lists
    assert set(recent) == {"task_failed", "deadline_exceeded"}
    assert recent["task_failed"]["pipeline"] == "crash" and "killed by signal 9" in recent["task_failed"]["message"]
    print(f"FIGURES poison: good 16/16 completed; crash run 3 times (task_failed), hang once (deadline_exceeded); "
          f"requeued={info['requeued']}")


def test_max_retries_is_configurable(cluster_factory):
    cluster = start(cluster_factory, (1,), extra=["--max-retries", "0"])
    with cluster.client() as client:
        exc = client.submit(tiny_jpeg(16), "crash").exception(60)
        assert client.process(tiny_jpeg(20), "grayscale").width == 20
        info = client.info()
    assert isinstance(exc, TaskFailed) and "failed 1 time(s)" in exc.message
    assert info["requeued"] == 0


def test_a_task_past_its_deadline_is_abandoned_reported_and_not_retried(cluster_factory):
    cluster = start(cluster_factory, (1,))
    supervisor = cluster.workers[0].pid
    with cluster.client() as client:
        before = pool_pids(supervisor)
        started_s = time.monotonic()
        hung = client.submit(tiny_jpeg(16), "hang", options={"deadline_ms": 500}).exception(30)
        reported_s = time.monotonic() - started_s
        # The process did not come back: it is killed GRACE_S later and replaced.
        wait_until(lambda: (pids := pool_pids(supervisor)) and pids != before, 30, "the hung process to be recycled")
        # One that comes back within the grace keeps its process.
        before = pool_pids(supervisor)
        late = client.submit(tiny_jpeg(16), "sleep:ms=900", options={"deadline_ms": 400}).exception(30)
        time.sleep(GRACE_S + 0.5)
        kept = pool_pids(supervisor) == before
        # A task still waiting when its deadline passes never starts.
        blocker = client.submit(tiny_jpeg(24), "sleep:ms=1500")
        queued = client.submit(tiny_jpeg(16), "grayscale", options={"deadline_ms": 300}).exception(30)
        zero = client.submit(tiny_jpeg(16), "grayscale", options={"deadline_ms": 0}).exception(30)
        met = client.process(tiny_jpeg(32), "sleep:ms=50|grayscale", options={"deadline_ms": 10_000})
        assert blocker.result(30).width == 24
        bad = [client.submit(tiny_jpeg(16), "grayscale", options={"deadline_ms": v}).exception(30)
               for v in ("soon", -1, True)]
        info = client.info()
    for exc in (hung, late, queued, zero):
        assert isinstance(exc, DeadlineExceeded), exc
    assert "before it started" in queued.message and "while running" in hung.message
    assert kept, "a process that came back within the grace was killed"
    assert met.width == 32
    assert all(isinstance(e, BadParameter) and "deadline_ms" in e.message for e in bad), bad
    assert info["requeued"] == 0, "a deadline_exceeded task was retried"
    assert reported_s < 0.5 + 5.0  # reported at its deadline, long before any task timeout (60 s)
    print(f"FIGURES deadline: hang with deadline_ms=500 reported after {reported_s:.2f} s; process recycled")
    assert "after its task's deadline and was killed" in cluster.workers[0].stderr_text()

