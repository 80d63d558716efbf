"""/metrics of a running broker and worker host: scraped over HTTP while real tasks run."""
import time
import urllib.request

from cluster_helpers import FAST_HEARTBEAT_S, free_port
from faults_helpers import start, tiny_jpeg, wait_until
from prometheus_client.parser import text_string_to_metric_families

from engine.errors import BadParameter, DeadlineExceeded, ImageError, ResultTooLarge, TaskFailed
from engine.metrics.names import ERROR_CODES, REFUSAL_REASONS, WORKER_OUTCOMES


def scrape(port: int) -> dict:
    """{(sample name, frozenset of labels): value} from one scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_broker_and_worker_metrics_move_as_tasks_run(cluster_factory):
    broker_port, worker_port = free_port(), free_port()
    cluster = cluster_factory(local_workers=0, extra=["--metrics-listen", f"127.0.0.1:{broker_port}"])
    cluster.start_broker(wait_slots=0)
    cluster.add_worker(2, "--metrics-listen", f"127.0.0.1:{worker_port}")
    cluster.wait_ready(4)
    before = scrape(broker_port)
    assert value(before, "engine_broker_tasks_received_total") == 0
    with cluster.client(shared_memory=False) as client:  # the byte counters count what crossed the sockets
        for size in (16, 24, 32):
            assert client.process(tiny_jpeg(size), "grayscale").width == size
        bad = client.submit(b"\xff\xd8 not a jpeg", "grayscale").exception(30)
        assert bad is not None and bad.code == "bad_image"
        image_bytes = sum(len(tiny_jpeg(s)) for s in (16, 24, 32)) + len(b"\xff\xd8 not a jpeg")
        # Gauges come from the state published once per heartbeat: wait for the one after the last
        # answer (all slots back, nothing in flight), not for a time.
        host = client.info()["workers"][0]["host"]

        def settled() -> bool:
            now = scrape(broker_port)
            return (value(now, "engine_broker_worker_slots", host=host) == 4
                    and value(now, "engine_broker_tasks_in_flight") == 0
                    and value(now, "engine_broker_queue_depth") == 0)
        wait_until(settled, 10 * FAST_HEARTBEAT_S + 5, "the gauges to show every slot back and nothing in flight")
        after = scrape(broker_port)
    assert value(after, "engine_broker_tasks_received_total") == 4
    assert value(after, "engine_broker_tasks_completed_total") == 3
    assert value(after, "engine_broker_tasks_failed_total", code="bad_image") == 1
    assert value(after, "engine_broker_input_bytes_total") == image_bytes
    assert value(after, "engine_broker_output_bytes_total") > 0
    assert value(after, "engine_broker_task_duration_seconds_count") == 3
    assert value(after, "engine_broker_queue_depth") == 0 and value(after, "engine_broker_tasks_in_flight") == 0
    # No task ids or routing ids as labels: every label value is a host, a code, a reason or a bucket.
    labels = {k for (_, ls) in after for k, _ in ls}
    assert labels <= {"code", "reason", "result", "host", "le", "version", "role"}, labels
    wait_until(lambda: value(scrape(worker_port), "engine_worker_tasks_total", outcome="failed") == 1, 10,
               "the worker host to count its failed task")
    worker = scrape(worker_port)
    assert value(worker, "engine_worker_tasks_total", outcome="done") == 3  # the bad image is not one of them
    assert value(worker, "engine_worker_task_seconds_count") == 4
    assert value(worker, "engine_worker_processes") == 2


def series(samples: dict, name: str, label: str, values) -> dict:
    """{label value: sample value} for every value of a labelled counter that is not 0."""
    return {v: n for v in values if (n := value(samples, name, **{label: v}))}


def test_every_outcome_is_counted_where_the_task_ended_and_info_agrees_with_the_series(cluster_factory):
    """Real tasks of every outcome through a real worker host: each lands in its own series on
    the worker (with its seconds) and on the broker, and INFO's counters equal the broker's series."""
    broker_port, worker_port = free_port(), free_port()
    cluster = start(cluster_factory, (2,), "--prefetch", "0", "--task-timeout-s", "1.5", "--no-learned",
                    "--metrics-listen", f"127.0.0.1:{worker_port}",
                    extra=["--metrics-listen", f"127.0.0.1:{broker_port}", "--max-message-mb", "1",
                           "--max-retries", "1"])
    big = "resize:width=1024,height=1024,mode=exact|png:compression=0"  # 3 MiB: over the broker's 1 MiB
    with cluster.client(shared_memory=False) as client:
        assert [client.process(tiny_jpeg(w), "grayscale").width for w in (16, 24)] == [16, 24]  # done x2
        errors = {"bad_image": client.submit(b"\xff\xd8 not a jpeg", "grayscale").exception(30),  # failed
                  "bad_range": client.submit(tiny_jpeg(16), "edge:low=-5").exception(30),  # refused by the broker
                  "bad_deadline": client.submit(tiny_jpeg(16), "grayscale", options={"deadline_ms": "soon"})
                  .exception(30),  # refused by the broker
                  "too_large": client.submit(tiny_jpeg(16), big).exception(30)}  # result_too_large
        running = client.submit(tiny_jpeg(16), "hang")  # cancelled while it runs: killed after the grace
        wait_until(lambda: value(scrape(worker_port), "engine_worker_busy_processes") == 1, 30, "the hang to run")
        held_while_running = value(scrape(worker_port), "engine_worker_held_tasks")
        assert running.cancel()
        errors["timeout"] = client.submit(tiny_jpeg(16), "grayscale|hang").exception(60)  # timed_out (1.5 s)
        cluster.wait_ready(2)  # both processes back: the next must not run out its deadline in a queue
        errors["deadline"] = client.submit(tiny_jpeg(16), "hang", options={"deadline_ms": 500}).exception(60)
        cluster.wait_ready(2)
        errors["crash"] = client.submit(tiny_jpeg(16), "crash").exception(60)  # worker_crashed, retried once
        # Settled: every killed process replaced (cancel, timeout, deadline, 2 crashes), nothing running.
        last = {}

        def settled() -> bool:
            w = scrape(worker_port)
            last.update((name, value(w, f"engine_worker_{name}")) for name in
                        ("process_restarts_total", "processes", "busy_processes", "held_tasks"))
            return last["process_restarts_total"] >= 5 and last["processes"] == 2 and last["busy_processes"] == 0

        try:
            wait_until(settled, 60, "the killed processes to be replaced")
        except AssertionError as exc:
            log = cluster.workers[0].stderr_text()[-3000:]
            raise AssertionError(f"{exc}; last seen {last}; worker log:\n{log}") from None
        time.sleep(4 * FAST_HEARTBEAT_S)  # the supervisor publishes at its next turn
        worker, broker, info = scrape(worker_port), scrape(broker_port), client.info()
    outcomes = series(worker, "engine_worker_tasks_total", "outcome", (*WORKER_OUTCOMES, "other"))
    failed = series(broker, "engine_broker_tasks_failed_total", "code", (*ERROR_CODES, "other"))
    refused = series(broker, "engine_broker_tasks_refused_total", "reason", (*REFUSAL_REASONS, "other"))
    flat = {name: value(broker, f"engine_broker_tasks_{name}_total")
            for name in ("received", "completed", "cancelled", "retried", "requeued")}
    print(f"FIGURES worker tasks_total {outcomes} task_seconds_count "
          f"{value(worker, 'engine_worker_task_seconds_count'):g} held_tasks while running {held_while_running:g}; "
          f"broker {flat} failed {failed} refused {refused}; INFO "
          f"{ {k: info.get(k) for k in ('received', 'completed', 'failed', 'cancelled', 'requeued', 'reassigned')} }")
    assert isinstance(errors["bad_image"], ImageError) and isinstance(errors["too_large"], ResultTooLarge)
    assert isinstance(errors["bad_range"], BadParameter) and isinstance(errors["bad_deadline"], BadParameter)
    assert isinstance(errors["timeout"], DeadlineExceeded) and "task timeout" in errors["timeout"].message
    assert isinstance(errors["deadline"], DeadlineExceeded) and isinstance(errors["crash"], TaskFailed)
    # The worker host: each task once, under the outcome it ended with, and the seconds of every one that ran.
    assert outcomes == {"done": 2, "failed": 1, "result_too_large": 1, "cancelled": 1, "timed_out": 1,
                        "deadline_exceeded": 1, "worker_crashed": 2}, outcomes
    assert value(worker, "engine_worker_task_seconds_count") == sum(outcomes.values())
    assert value(worker, "engine_worker_task_seconds_sum") >= 1.5 + 0.5 + 1.0  # the timeout, the deadline, the cancel
    assert held_while_running == 1 and value(worker, "engine_worker_held_tasks") == 0
    assert value(worker, "engine_worker_process_restarts_total") == 5
    # The broker.
    requeued = flat.pop("requeued")  # the crash once, and any task sent to a process about to be killed
    assert flat == {"received": 10, "completed": 2, "cancelled": 1, "retried": 0} and requeued >= 1, flat
    assert failed == {"bad_image": 1, "bad_parameter": 2, "result_too_large": 1, "deadline_exceeded": 2,
                      "task_failed": 1}, failed
    # INFO's counters are the same numbers.
    assert (info["received"], info["completed"], info["cancelled"]) == (10, 2, 1)
    assert info["failed"] == sum(failed.values()) and info["failed_by_code"] == failed
    assert info["refused_by_reason"] == refused
    assert info["requeued"] == 1 and info["requeued"] + info["reassigned"] == flat["retried"] + requeued
