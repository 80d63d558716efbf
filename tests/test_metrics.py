"""engine.metrics: the facades move the numbers, a real HTTP scrape shows them in the
Prometheus text format (parsed with prometheus_client.parser), and label sets stay
bounded whatever the peers announce."""
from __future__ import annotations

import argparse
import random
import socket
import threading
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Histogram as LibHistogram
from prometheus_client.parser import text_string_to_metric_families

from engine.errors import ERRORS_BY_CODE, BusyError, ConfigError, ImageError, QuotaError, Unauthorized, WorkerCrashed
from engine.metrics import (
    ENV_METRICS_LISTEN,
    BrokerMetrics,
    WorkerMetrics,
    WorkerRow,
    add_flag,
    parse_listen,
    serve,
    start,
)
from engine.metrics import names as N
from engine.metrics.__main__ import costs, sample
from engine.metrics.broker import fold_hosts
from engine.metrics.store import Histogram

pytestmark = pytest.mark.timeout(60)
HTTP_TIMEOUT_S = 5.0


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """GET /metrics over HTTP: sample name -> {sorted label items: value}."""
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return parse(text)


def parse(text: str) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    return samples[name][tuple(sorted(labels.items()))]


@pytest.fixture
def broker_metrics():
    metrics = BrokerMetrics()
    server = serve(metrics.registry)
    yield metrics, server.url
    server.close()


def test_broker_counters_move_as_tasks_run_and_show_in_a_real_scrape(broker_metrics):
    metrics, url = broker_metrics
    before = scrape(url)
    assert value(before, "engine_broker_tasks_received_total") == 0
    for _ in range(5):
        metrics.received()
        metrics.bytes_in(1000)
    metrics.cache(False)
    metrics.cache(True, 300)
    for wait_s, work_s, total_s in ((0.0005, 0.02, 0.021), (0.003, 0.2, 0.204), (0.0, 7.0, 7.5)):
        metrics.completed(wait_s, work_s, total_s)
        metrics.bytes_out(400)
    metrics.completed(None, None, 0.0004)  # a cache hit: no queue, no worker
    metrics.failed(ImageError.code)
    metrics.failed(ImageError.code)
    metrics.retried()
    metrics.requeued(3)
    metrics.cancelled()
    metrics.refused(BusyError.code)
    metrics.refused(QuotaError.code)
    metrics.refused(Unauthorized.code)
    after = scrape(url)
    assert value(after, "engine_broker_tasks_received_total") == 5
    assert value(after, "engine_broker_input_bytes_total") == 5000
    assert value(after, "engine_broker_output_bytes_total") == 1200
    assert value(after, "engine_broker_tasks_completed_total") == 4
    assert value(after, "engine_broker_tasks_failed_total", code=ImageError.code) == 2
    assert value(after, "engine_broker_tasks_failed_total", code=WorkerCrashed.code) == 0
    assert value(after, "engine_broker_tasks_retried_total") == 1
    assert value(after, "engine_broker_tasks_requeued_total") == 3
    assert value(after, "engine_broker_tasks_cancelled_total") == 1
    for reason in (BusyError.code, QuotaError.code, Unauthorized.code):
        assert value(after, "engine_broker_tasks_refused_total", reason=reason) == 1
    assert value(after, "engine_broker_cache_lookups_total", result="hit") == 1
    assert value(after, "engine_broker_cache_lookups_total", result="miss") == 1
    assert value(after, "engine_broker_cache_hit_bytes_total") == 300
    assert value(after, "engine_broker_task_duration_seconds_count") == 4
    assert value(after, "engine_broker_task_worker_seconds_count") == 3
    assert value(after, "engine_broker_queue_wait_seconds_count") == 3
    assert value(after, "engine_broker_task_worker_seconds_bucket", le="0.025") == 1
    assert value(after, "engine_broker_task_worker_seconds_bucket", le="0.25") == 2
    assert value(after, "engine_broker_task_worker_seconds_bucket", le="10.0") == 3
    assert value(after, "engine_broker_task_worker_seconds_sum") == pytest.approx(7.22)
    assert value(after, "engine_build_info", role="broker", version=__import__("engine").__version__) == 1
    assert value(after, "process_cpu_seconds_total") > 0  # this process's own CPU, for the broker's cost


def test_gauges_come_from_the_last_published_state_not_from_live_objects(broker_metrics):
    metrics, url = broker_metrics
    rows = [WorkerRow("edge-1", slots=4, busy=3, heartbeat_age_s=0.5, restarts=1),
            WorkerRow("edge-1", slots=4, busy=1, heartbeat_age_s=1.5),
            WorkerRow("edge-2", slots=2, busy=0, heartbeat_age_s=0.25)]
    metrics.publish_state(7, 4, rows, cache_bytes=2048, cache_entries=3)
    rows.clear()  # the broker's own list changes later: the scrape must not see it
    got = scrape(url)
    assert value(got, "engine_broker_queue_depth") == 7
    assert value(got, "engine_broker_tasks_in_flight") == 4
    assert value(got, "engine_broker_workers") == 3
    assert value(got, "engine_broker_cache_size_bytes") == 2048
    assert value(got, "engine_broker_cache_entries") == 3
    assert value(got, "engine_broker_worker_slots", host="edge-1") == 8
    assert value(got, "engine_broker_worker_busy_slots", host="edge-1") == 4
    assert value(got, "engine_broker_worker_utilisation_ratio", host="edge-1") == 0.5
    assert value(got, "engine_broker_worker_utilisation_ratio", host="edge-2") == 0
    assert value(got, "engine_broker_worker_restarts_total", host="edge-1") == 1
    # ages grow with the time since publication, so a stuck broker loop shows
    state_age_s = value(got, "engine_broker_state_age_seconds")
    assert state_age_s >= 0
    assert value(got, "engine_broker_worker_heartbeat_age_seconds", host="edge-1") >= 1.5 + state_age_s - 1e-9
    metrics.publish_state(0, 0, [])
    again = scrape(url)
    assert value(again, "engine_broker_queue_depth") == 0
    assert "engine_broker_worker_slots" not in again  # a host that left has no series any more


def test_label_sets_stay_bounded_under_ten_thousand_distinct_names(broker_metrics):
    metrics, url = broker_metrics
    rng = random.Random(7)
    hosts = [f"pod-{rng.getrandbits(48):012x}" for _ in range(10_000)]
    metrics.publish_state(0, 0, [WorkerRow(h, slots=2, busy=1, heartbeat_age_s=0.1) for h in hosts])
    for i in range(10_000):
        metrics.failed(f"made_up_code_{i}")
        metrics.refused(f"made_up_reason_{i}")
    got = scrape(url)
    slots = got["engine_broker_worker_slots"]
    assert len(slots) == N.MAX_HOSTS + 1
    assert sum(slots.values()) == 2 * 10_000  # nothing lost, the rest summed under "other"
    assert value(got, "engine_broker_worker_slots", host=N.OTHER) == 2 * (10_000 - N.MAX_HOSTS)
    assert len(got["engine_broker_tasks_failed_total"]) == len(N.ERROR_CODES) + 1
    assert value(got, "engine_broker_tasks_failed_total", code=N.OTHER) == 10_000
    assert len(got["engine_broker_tasks_refused_total"]) == len(N.REFUSAL_REASONS) + 1
    assert value(got, "engine_broker_tasks_refused_total", reason=N.OTHER) == 10_000
    # the whole page, whatever the peers did: 5 per-host families x 65, about 100 others
    assert sum(len(series) for series in got.values()) < 500


def test_folding_keeps_every_slot_even_with_a_host_called_other():
    # "other" sorts before the z... names, so it is one of the hosts kept by name
    rows = [WorkerRow(N.OTHER, 5, 1, 0.0)] + [WorkerRow(f"z{i:03d}", 1, 1, 0.0) for i in range(100)]
    folded = fold_hosts(rows, max_hosts=10)
    assert len(folded) <= 11
    assert sum(v[0] for v in folded.values()) == 105


def test_a_long_host_name_is_cut_and_an_empty_one_named(broker_metrics):
    metrics, url = broker_metrics
    metrics.publish_state(0, 0, [WorkerRow("x" * 5000, 1, 0, 0.0), WorkerRow("", 1, 0, 0.0)])
    hosts = {dict(k)["host"] for k in scrape(url)["engine_broker_worker_slots"]}
    assert hosts == {"x" * N.MAX_HOST_CHARS, N.UNKNOWN_HOST}


def test_error_codes_are_those_of_engine_errors():
    assert set(ERRORS_BY_CODE) <= set(N.ERROR_CODES)
    assert set(N.REFUSAL_REASONS) <= set(N.ERROR_CODES)


def test_histogram_buckets_match_prometheus_clients_own_histogram():
    rng = random.Random(3)
    values = [rng.choice(N.BUCKETS_S) for _ in range(200)] + [rng.uniform(0, 90) for _ in range(800)]
    ours = Histogram(N.BUCKETS_S)
    registry = CollectorRegistry()
    theirs = LibHistogram("ref_seconds", "reference", buckets=N.BUCKETS_S, registry=registry)
    for v in values:
        ours.observe(v)
        theirs.observe(v)
    reference = parse(generate_latest(registry).decode())
    cumulative = 0
    for bound, count in zip((*N.BUCKETS_S, float("inf")), ours.counts):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(float(bound))
        assert reference["ref_seconds_bucket"][(("le", le),)] == cumulative
    assert ours.sum == pytest.approx(reference["ref_seconds_sum"][()])


def test_scrapes_during_updates_are_consistent_and_never_go_backwards(broker_metrics):
    metrics, url = broker_metrics
    stop = threading.Event()

    def loop():  # the broker's thread: the only writer
        while not stop.is_set():
            metrics.received()
            metrics.completed(0.001, 0.02, 0.03)

    writer = threading.Thread(target=loop, daemon=True)
    writer.start()
    try:
        last_received, last_count = 0.0, 0.0
        for _ in range(20):
            got = scrape(url)
            received = value(got, "engine_broker_tasks_received_total")
            buckets = [v for _, v in sorted(got["engine_broker_task_duration_seconds_bucket"].items(),
                                            key=lambda kv: float(dict(kv[0])["le"]))]
            assert buckets == sorted(buckets)  # cumulative
            count = value(got, "engine_broker_task_duration_seconds_count")
            assert count == buckets[-1]
            assert received >= last_received and count >= last_count
            last_received, last_count = received, count
    finally:
        stop.set()
        writer.join(HTTP_TIMEOUT_S)
    assert last_received > 0


def test_worker_metrics_move_and_fold_unknown_outcomes():
    metrics = WorkerMetrics()
    server = serve(metrics.registry)
    try:
        metrics.task_finished("done", 0.04)
        metrics.task_finished("done", 0.5)
        metrics.task_finished(WorkerCrashed.code, None)
        metrics.task_finished("something new", None)
        metrics.process_restarted()
        metrics.publish_state(processes=4, busy=3, held=6)
        got = scrape(server.url)
    finally:
        server.close()
    assert value(got, "engine_worker_tasks_total", outcome="done") == 2
    assert value(got, "engine_worker_tasks_total", outcome=WorkerCrashed.code) == 1
    assert value(got, "engine_worker_tasks_total", outcome=N.OTHER) == 1
    assert len(got["engine_worker_tasks_total"]) == len(N.WORKER_OUTCOMES) + 1
    assert value(got, "engine_worker_task_seconds_count") == 2
    assert value(got, "engine_worker_process_restarts_total") == 1
    assert value(got, "engine_worker_processes") == 4
    assert value(got, "engine_worker_busy_processes") == 3
    assert value(got, "engine_worker_held_tasks") == 6


def test_every_declared_metric_is_exported_with_its_type_and_conventional_name():
    broker, worker = BrokerMetrics(process=False), WorkerMetrics(process=False)
    broker.publish_state(1, 1, [WorkerRow("h", 1, 1, 0.0)], cache_bytes=1, cache_entries=1)  # every gauge shown
    worker.publish_state(1, 1, 1)
    for metrics, specs in ((broker, N.BROKER_SPECS), (worker, N.WORKER_SPECS)):
        exported = {}
        for fam in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
            exported[fam.name] = fam
        for spec in specs:
            assert spec.name.startswith("engine_")
            base = spec.name[: -len("_total")] if spec.kind == N.COUNTER else spec.name
            assert base in exported, spec.name
            assert exported[base].type == spec.kind
            assert exported[base].documentation == spec.help
            if spec.kind == N.COUNTER:
                assert spec.name.endswith("_total")
            if spec.kind == N.HISTOGRAM:
                assert spec.name.endswith("_seconds")
            for s in exported[base].samples:
                assert set(s.labels) <= set(spec.labels) | {"le"}


def test_two_facades_cannot_share_a_registry():
    registry = CollectorRegistry()
    BrokerMetrics(registry=registry, process=False)
    with pytest.raises(ValueError):
        BrokerMetrics(registry=registry, process=False)


def test_serve_binds_loopback_by_default_and_explains_a_taken_port():
    metrics = WorkerMetrics(process=False)
    server = serve(metrics.registry)
    try:
        assert server.host == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
        with pytest.raises(ConfigError, match="--metrics-listen"):
            serve(metrics.registry, "127.0.0.1", server.port)
    finally:
        server.close()
    with pytest.raises(OSError):  # closed: nothing listens there any more
        socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT_S).close()


def test_the_metrics_listen_flag_and_its_environment_variable(monkeypatch):
    p = argparse.ArgumentParser()
    add_flag(p, example_port=9464)
    assert p.parse_args([]).metrics_listen == ""
    assert p.parse_args(["--metrics-listen", "0.0.0.0:9464"]).metrics_listen == "0.0.0.0:9464"
    monkeypatch.setenv(ENV_METRICS_LISTEN, "127.0.0.1:9999")
    p = argparse.ArgumentParser()
    add_flag(p, example_port=9464)
    assert p.parse_args([]).metrics_listen == "127.0.0.1:9999"
    assert ENV_METRICS_LISTEN in p.format_help()
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:", "host:port", ":9464", "h:70000"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_listen(bad)
    assert start(WorkerMetrics(process=False).registry, "") is None
    server = start(WorkerMetrics(process=False).registry, "127.0.0.1:0")
    try:
        assert "engine_worker_tasks_total" in scrape(server.url)
    finally:
        server.close()


def test_the_sample_parses_and_the_cost_report_times_every_hot_path_call():
    got = parse(sample())
    assert value(got, "engine_broker_tasks_received_total") == 20
    assert value(got, "engine_worker_tasks_total", outcome="done") == 20
    measured = costs(number=2_000)
    assert set(measured) >= {"BrokerMetrics.completed(q, w, t)", "BrokerMetrics.received()"}
    assert all(us > 0 for us in measured.values())


def test_info_counts_are_the_numbers_the_series_are_made_of():
    """The broker's INFO task counters come from the metrics object: no second count to drift."""
    metrics = BrokerMetrics(process=False)
    metrics.received(5)
    metrics.completed(0.01, 0.02, 0.03)
    metrics.answered(2)  # the hot path's batch; their times come one by one
    metrics.failed("bad_parameter")  # e.g. a bad deadline_ms, refused as invalid
    metrics.failed("bad_image")
    metrics.refused("busy")
    metrics.refused("bad_message")
    metrics.worker_bad_message()
    metrics.retried()
    metrics.requeued()
    metrics.requeued(blamed=False)
    metrics.cancelled()
    got = {(s.name, tuple(s.labels.items())): s.value
           for fam in text_string_to_metric_families(generate_latest(metrics.registry).decode()) for s in fam.samples}
    counts = metrics.counts()
    assert counts["received"] == got[("engine_broker_tasks_received_total", ())] == 5
    assert counts["completed"] == got[("engine_broker_tasks_completed_total", ())] == 3
    assert counts["failed"] == 2 and counts["failed_by_code"] == {"bad_parameter": 1, "bad_image": 1}
    assert counts["refused_by_reason"] == {"busy": 1, "bad_message": 1} and counts["busy"] == 1
    assert counts["bad_messages"] == 2  # a client's, refused, and a worker's, dropped
    assert (counts["requeued"], counts["reassigned"]) == (2, 1)
    assert got[("engine_broker_tasks_retried_total", ())] + got[("engine_broker_tasks_requeued_total", ())] == 3
    assert counts["cancelled"] == got[("engine_broker_tasks_cancelled_total", ())] == 1
