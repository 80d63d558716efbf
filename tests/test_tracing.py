"""Trace ids: chosen by the client, in every log line about the task, back in the reply."""
import pytest
from faults_helpers import start, tiny_jpeg
from web_helpers import jpeg

from engine import tracing
from engine.errors import BadParameter, ImageError, TaskFailed


def test_a_trace_id_is_a_short_label_or_refused():
    assert tracing.trace_id({"trace_id": "req-42_a"}) == "req-42_a" and tracing.trace_id(None) is None
    for bad in ("", "a b", "x" * 65, 7, "id\nforged log line"):
        with pytest.raises(BadParameter, match="trace_id"):
            tracing.trace_id({"trace_id": bad})


def test_the_trace_id_of_a_w3c_traceparent():
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.from_traceparent(header) == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (None, "", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-xyz-00f067aa0ba902b7-01"):
        assert tracing.from_traceparent(bad) is None


def test_a_trace_id_travels_to_every_log_line_and_back(cluster_factory):
    cluster = start(cluster_factory, (1,), extra=["--max-retries", "1"])
    with cluster.client() as client:
        ok = client.process(tiny_jpeg(16), "grayscale", options={"trace_id": "trace-ok"})
        bad = client.submit(b"\xff\xd8 not a jpeg", "grayscale", options={"trace_id": "trace-bad"}).exception(30)
        crashed = client.submit(tiny_jpeg(16), "crash", options={"trace_id": "trace-crash"}).exception(60)
        refused = client.submit(tiny_jpeg(16), "grayscale", options={"trace_id": "no spaces"}).exception(30)
    assert ok.meta["trace_id"] == "trace-ok"
    assert isinstance(bad, ImageError) and bad.meta["trace_id"] == "trace-bad"
    assert isinstance(crashed, TaskFailed) and crashed.meta["trace_id"] == "trace-crash"
    assert isinstance(refused, BadParameter) and "trace_id" in refused.message
    broker_log, worker_log = cluster.broker.stderr_text(), cluster.workers[0].stderr_text()
    assert "requeued" in broker_log and "[trace trace-crash]" in broker_log  # the retry, and the give-up
    assert broker_log.count("[trace trace-crash]") >= 2  # requeued once, then given up
    assert "while running task" in worker_log and "[trace trace-crash]" in worker_log  # the supervisor saw it die


def test_the_http_api_takes_the_trace_id_of_a_traceparent_header(users):
    import json

    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = users[0].api.post("/api/v1/process", params={"pipeline": "grayscale|png"}, content=jpeg(),
                          headers={"traceparent": header})
    assert r.status_code == 200, r.text
    assert json.loads(r.headers["X-Engine-Meta"])["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
