"""/metrics of a running broker and worker host: scraped over HTTP while real tasks run."""
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from cluster_helpers import FAST_HEARTBEAT_S, free_port
from faults_helpers import tiny_jpeg, wait_until


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
        # Gauges come from the state published once per heartbeat.
        wait_until(lambda: value(scrape(broker_port), "engine_broker_worker_slots", host=client.info()["workers"][0]
                                 ["host"]) == 4, 10 * FAST_HEARTBEAT_S + 5, "the worker host's slots in the gauges")
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
    wait_until(lambda: value(scrape(worker_port), "engine_worker_tasks_total", outcome="done") == 4, 10,
               "the worker host to count its 4 finished tasks")
    worker = scrape(worker_port)
    assert value(worker, "engine_worker_processes") == 2
