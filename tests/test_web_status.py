"""The status page's server-sent events over real HTTP (uvicorn, a real broker and workers),
and the ring and charts behind them.

Every read of the stream has a timeout (httpx's read timeout, and a deadline per test)."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from web_helpers import User, WebServer, free_port, jpeg, wait_batch

from engine import ops
from engine.web.status_failures import as_written, grouped
from engine.web.status_ring import Ring, percentile
from engine.web.status_svg import line_chart

pytestmark = pytest.mark.timeout(60)
READ_TIMEOUT_S = 10.0
BROKEN_JPEG = b"\xff\xd8\xff not a jpeg"


@pytest.fixture(scope="module")
def erin(web):
    user = User(web, "erin")
    try:
        yield user
    finally:
        user.close()


def read_events(lines, count: int, deadline_s: float, until=None) -> tuple[list[dict], list[str]]:
    """Parse ``count`` status events (or until ``until(view)``) from ``response.iter_lines()``,
    and the other lines seen. Pass the same iterator each time: dropping it closes the stream."""
    views, other, data = [], [], None
    for line in lines:
        if time.monotonic() > deadline_s:
            raise TimeoutError(f"only {len(views)} events before the deadline")
        if line.startswith("data: "):
            data = json.loads(line[len("data: "):])
        elif line == "" and data is not None:
            views.append(data)
            data = None
            if (until is None and len(views) >= count) or (until is not None and until(views[-1])):
                return views, other
        elif line:
            other.append(line)
    raise AssertionError(f"the stream ended after {len(views)} events")


def open_stream(user: User):
    return user.browser.stream("GET", "/status/events", timeout=httpx.Timeout(READ_TIMEOUT_S))


def test_status_events_push_views_with_charts_a_second_apart(web, erin):
    started_s = time.monotonic()
    with open_stream(erin) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-store"
        views, other = read_events(r.iter_lines(), 3, time.monotonic() + 20)
    assert "retry: 3000" in other and "event: status" in other and "id: 3" in other
    first, last = views[0], views[-1]
    assert first["up"] and last["sampled_at_unix_s"] > first["sampled_at_unix_s"]
    assert last["workers"] and last["workers"][0]["processes"] == 2
    for name in ("throughput", "latency", "queue"):
        assert last["charts"][name].startswith("<svg") and last["charts"][name].endswith("</svg>")
    assert "CPU and memory" in last["host_resources"]
    assert time.monotonic() - started_s < 20  # the events come by themselves; no request per view


def test_status_events_show_tasks_and_a_failed_task(web, erin):
    r = erin.api.post("/api/v1/batches", data={"pipeline": "grayscale|blur:sigma=2"},
                      files=[("images", (f"c{i}.jpg", jpeg(), "image/jpeg")) for i in range(6)])
    assert r.status_code == 202, r.text
    assert all(j["status"] == "done" for j in wait_batch(erin.api, r.json()["id"])["jobs"])
    r = erin.api.post("/api/v1/batches", data={"pipeline": "grayscale"},
                      files=[("images", ("broken.jpg", BROKEN_JPEG, "image/jpeg"))])
    assert r.status_code == 202, r.text
    assert wait_batch(erin.api, r.json()["id"])["jobs"][0]["status"] == "failed"
    with open_stream(erin) as r:
        views, _ = read_events(r.iter_lines(), 0, time.monotonic() + 20,
                               until=lambda v: v["recent_failures"] and v["throughput_per_s"] > 0)
    view = views[-1]
    failure = view["recent_failures"][0]
    assert failure["pipeline"] == "grayscale" and failure["code"] and failure["message"] and failure["worker"]
    assert failure["at"].endswith("UTC")
    assert view["tasks_done"] >= 6 and view["failed"] >= 1
    assert view["latency"]["p50_ms"] is not None and view["latency"]["p50_ms"] > 0
    assert 'data-series="completed"' in view["charts"]["throughput"]
    # The JSON API has the same view (without the charts).
    status = erin.api.get("/api/v1/status").json()
    assert status["recent_failures"][0]["code"] == failure["code"] and "charts" not in status


def test_status_events_need_a_login_and_a_free_viewer_place(web, erin):
    anonymous = httpx.get(web.url + "/status/events", timeout=READ_TIMEOUT_S)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    monitor = web.parts.status
    monitor.max_viewers = 1
    try:
        with open_stream(erin) as r:
            lines = r.iter_lines()
            read_events(lines, 1, time.monotonic() + 10)
            assert monitor.viewers == 1
            refused = erin.browser.get("/status/events", timeout=READ_TIMEOUT_S)
            read_events(lines, 1, time.monotonic() + 10)  # the first viewer still gets its events
            assert refused.status_code == 503 and "live viewers" in refused.text
        # The closed stream is dropped when the next event finds it gone (one a second).
        deadline_s = time.monotonic() + 10
        while monitor.viewers and time.monotonic() < deadline_s:
            time.sleep(0.1)
        assert monitor.viewers == 0
        with open_stream(erin) as r:
            assert r.status_code == 200
            read_events(r.iter_lines(), 1, time.monotonic() + 10)
    finally:
        monitor.max_viewers = 32


def test_status_events_say_when_the_broker_is_away_and_leave_a_gap(tmp_path):
    lonely = WebServer(tmp_path, f"tcp://127.0.0.1:{free_port()}", broker_check_timeout_s=0.5).start()
    try:
        user = User(lonely, "gwen")
        with open_stream(user) as r:
            views, _ = read_events(r.iter_lines(), 2, time.monotonic() + 20)
        assert not views[-1]["up"] and "not reachable" in views[-1]["error"]
        assert "no data yet" in views[-1]["charts"]["throughput"]
        assert all(not s.up for s in lonely.parts.status.ring.samples)
        page = user.browser.get("/status")
        assert page.status_code == 200 and "not reachable" in page.text
        user.close()
    finally:
        lonely.stop()


def test_sampler_stops_when_nobody_looks_and_starts_again(web, erin):
    monitor = web.parts.status
    monitor.idle_stop_s = 1.0
    try:
        deadline_s = time.monotonic() + 10
        while monitor.sampling and time.monotonic() < deadline_s:
            time.sleep(0.1)
        assert not monitor.sampling and monitor.viewers == 0
        before = len(monitor.ring.samples)
        monitor.idle_stop_s = 600.0
        assert erin.api.get("/api/v1/status").json()["up"]
        assert monitor.sampling
        deadline_s = time.monotonic() + 10
        while len(monitor.ring.samples) < min(before + 3, 600) and time.monotonic() < deadline_s:
            time.sleep(0.1)
        assert len(monitor.ring.samples) >= min(before + 3, 600)
    finally:
        monitor.idle_stop_s = 600.0


def test_status_events_send_heartbeats_between_slow_samples(web, erin, monkeypatch):
    from engine.web import status_events

    monitor = web.parts.status
    monkeypatch.setattr(status_events, "HEARTBEAT_S", 0.3)
    monitor.interval_s = 3.0
    try:
        with open_stream(erin) as r:
            _, other = read_events(r.iter_lines(), 3, time.monotonic() + 20)
    finally:
        monitor.interval_s = 1.0
    assert other.count(": heartbeat") >= 5  # 3 s between the last two events, one every 0.3 s


def test_status_page_without_javascript_has_charts_and_failures(web, erin):
    html = erin.browser.get("/status").text
    assert html.count("<svg") == 3 and 'id="chart-throughput"' in html
    assert 'id="failures"' in html and "style=" not in html.split('<section class="charts">')[1]


def test_ring_rates_come_from_counter_deltas_and_a_restart_leaves_a_gap():
    ring = Ring(size=5)
    ring.add_info({"completed": 10, "failed": 0, "queue_depth": 3, "in_flight": 1}, {})
    time.sleep(0.2)
    second = ring.add_info({"completed": 20, "failed": 2, "queue_depth": 0, "in_flight": 0}, {})
    assert 30 < second.done_per_s < 55 and 2 < second.failed_per_s < 11  # 10 and 2 in about 0.2 s
    restarted = ring.add_info({"completed": 1, "failed": 0}, {})
    assert restarted.done_per_s is None  # counters went down: no negative rate
    ring.add_gap()
    for i in range(5):
        ring.add_info({"completed": i}, {})
    assert len(ring.samples) == 5  # bounded


def test_percentiles_are_nearest_rank():
    ms = sorted(float(v) for v in range(1, 101))
    assert (percentile(ms, 50), percentile(ms, 95), percentile(ms, 99)) == (50.0, 95.0, 99.0)
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


def test_chart_breaks_its_line_where_the_broker_was_away():
    svg = line_chart("c", "t <&>", [0.0, 1.0, 2.0, 3.0], [("a", [1.0, None, 2.0, 3.0])], unit="ms")
    path = svg.split(' d="')[1].split('"')[0]
    assert path.count("M") == 2 and path.count("L") == 1
    assert "t &lt;&amp;&gt;" in svg and 'data-max="5"' in svg
    assert "no data yet" in line_chart("c", "t", [], [("a", [])], unit="ms")


def test_chart_draws_a_lone_point_as_a_dot():
    svg = line_chart("c", "t", [0.0, 1.0, 2.0], [("a", [None, 4.0, None])], unit="ms")
    path = svg.split(' d="')[1].split('"')[0]
    assert path.startswith("M") and path.endswith("l0,0") and 'stroke-linecap="round"' in svg


def test_a_full_ring_stays_a_small_event():
    from engine.web.status_ring import RING_SAMPLES, Sample
    from engine.web.status_svg import MAX_POINTS

    times = [float(t) for t in range(RING_SAMPLES)]
    values = [float(t % 37) for t in range(RING_SAMPLES)]
    svg = line_chart("c", "t", times, [("p50", values), ("p95", values), ("p99", values)], unit="ms")
    path = svg.split(' d="')[1].split('"')[0]
    assert path.count("L") == MAX_POINTS - 1 and 'data-points="240"' in svg
    assert len(svg) < 12_000, len(svg)
    assert Sample(at_unix_s=0.0, up=True).as_dict()["up"] is True


def test_failures_show_pipelines_as_written_and_repeats_as_one_row_with_a_count():
    declared = ops.describe()
    canonical = ops.canonical("resize:width=64|sharpen|png")
    assert "interpolation=auto" in canonical  # what the broker keeps
    assert as_written(canonical, declared) == "resize:width=64|sharpen|png"
    assert as_written("resize:wid", declared) == "resize:wid"  # a truncated text stays as it is
    failures = [{"at_unix_s": float(i), "code": "bad_parameter", "message": "resize: give width, height or both",
                 "pipeline": "resize", "worker": f"w{i % 2}"}
                for i in range(6)]
    failures.append({"at_unix_s": 10.0, "code": "bad_image", "message": "not an image", "pipeline": canonical,
                     "worker": "w0"})
    rows = grouped(failures, declared)
    assert [(r["count"], r["code"]) for r in rows] == [(1, "bad_image"), (6, "bad_parameter")]  # newest first
    assert rows[1]["at_unix_s"] == 5.0 and rows[1]["worker"] == "w0, w1" and rows[1]["at"].endswith("UTC")
