"""The status page's worker hosts and history, with real processes: a worker host's supervisor
reports its CPU and memory with its heartbeats and INFO shows them per host (an older worker's
row says "—"); the broker keeps the last minutes of its counters, so a batch run before anyone
opened the status page is on its charts; and the workers table holds its shape at 1,280 and
390 px in a real browser. Screenshots: /tmp/engine-web-screens/status-hosts-*.png."""
from __future__ import annotations

import re
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from browser_helpers import NEEDS_CHROMIUM, logged_in
from cluster_helpers import Cluster, recv_within
from web_helpers import User, WebServer, jpeg

from engine import protocol as P
from engine.broker.history import COLUMNS
from engine.errors import ProtocolError
from engine.web.status import _worker
from engine.worker.hostload import HostLoad

pytestmark = pytest.mark.timeout(120)
SHOTS = Path("/tmp/engine-web-screens")
WIDTHS_PX = (1280, 390)
GIB = 1024 ** 3


def host_row(cluster: Cluster, host: str | None = None, *, until=lambda row: True, timeout_s: float = 20.0) -> dict:
    """The INFO row of a worker host (the first one, or the one named ``host``) once ``until(row)``."""
    deadline_s = time.monotonic() + timeout_s
    rows: list = []
    while time.monotonic() < deadline_s:
        rows = [w for w in cluster.info()["workers"] if host is None or w["host"] == host]
        if rows and until(rows[0]):
            return rows[0]
        time.sleep(0.1)
    raise TimeoutError(f"no such host row within {timeout_s} s: {rows}")


def mem_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_heartbeat_fields_travel_on_the_wire():
    beat = P.Heartbeat(sender="w", cpu_percent=12.5, mem_used_bytes=3 * GIB, mem_total_bytes=8 * GIB)
    header = beat.header()
    assert (header["cpu"], header["memu"], header["memt"]) == (12.5, 3 * GIB, 8 * GIB)
    assert P.decode(P.encode(beat))[0] == beat
    assert "cpu" not in P.Heartbeat(sender="w").header()  # optional: an older peer sends none
    with pytest.raises(ProtocolError, match="'memt' must be int"):
        P.decode([msgpack.packb({**header, "memt": "lots"})])


def test_host_load_reads_proc_and_says_nothing_without_it(tmp_path):
    stat, meminfo = tmp_path / "stat", tmp_path / "meminfo"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    meminfo.write_text("MemTotal:       8000 kB\nMemFree:        1000 kB\nMemAvailable:   6000 kB\n")
    load = HostLoad(stat, meminfo)
    stat.write_text("cpu  175 0 100 825 0 0 0 0 0 0\n")  # 75 of the last 100 jiffies busy
    assert load.fields() == {"cpu_percent": 75.0, "mem_used_bytes": 2000 * 1024, "mem_total_bytes": 8000 * 1024}
    assert HostLoad(tmp_path / "none", tmp_path / "none").fields() == {}  # not Linux: the fields are left out


def test_a_worker_hosts_heartbeats_carry_cpu_and_memory_and_info_shows_them(cluster):
    row = host_row(cluster, until=lambda w: w.get("mem_total_bytes") is not None and w.get("cpu_percent") is not None)
    assert 0.0 <= row["cpu_percent"] <= 100.0
    assert row["mem_total_bytes"] == mem_total_bytes()  # this host's, as /proc/meminfo says
    assert 0 < row["mem_used_bytes"] <= row["mem_total_bytes"]
    assert row["processes"] == 2 and row["processes_connected"] == 2  # the host's row, not a pool process's
    view = _worker(row)
    assert re.fullmatch(r"\d+ %", view["cpu"]), view["cpu"]
    assert re.fullmatch(r"\d+\.\d / \d+\.\d GiB \(\d+ %\)", view["memory"]), view["memory"]


def _control(zctx, cluster: Cluster, host: str) -> zmq.Socket:
    """A raw worker host's control connection, as an older supervisor (or a hand-made one) speaks."""
    sock = zctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = f"{host}-control".encode()
    sock.connect(cluster.back)
    sock.send_multipart(P.encode(P.Ready(capacity=0, host=host, pid=1, processes=0, control=True)))
    assert isinstance(P.decode(recv_within(sock, 10))[0], P.Heartbeat)  # registered: the broker's limits
    return sock


def test_an_older_worker_shows_a_dash_and_nonsense_is_not_kept(cluster, zctx):
    old = _control(zctx, cluster, "old-host")
    old.send_multipart(P.encode(P.Heartbeat(sender="old")))
    row = host_row(cluster, "old-host")
    assert (row["cpu_percent"], row["mem_used_bytes"], row["mem_total_bytes"]) == (None, None, None)
    assert (_worker(row)["cpu"], _worker(row)["memory"]) == ("—", "—")

    odd = _control(zctx, cluster, "odd-host")
    odd.send_multipart(P.encode(P.Heartbeat(cpu_percent=12.5, mem_used_bytes=GIB, mem_total_bytes=2 * GIB)))
    host_row(cluster, "odd-host", until=lambda w: w["cpu_percent"] == 12.5)
    odd.send_multipart(P.encode(P.Heartbeat(cpu_percent=250.0, mem_used_bytes=10, mem_total_bytes=5)))
    odd.send_multipart(P.encode(P.Heartbeat(cpu_percent=30.0)))  # in order after the nonsense
    row = host_row(cluster, "odd-host", until=lambda w: w["cpu_percent"] == 30.0)
    assert (row["mem_used_bytes"], row["mem_total_bytes"]) == (GIB, 2 * GIB)  # 10 of 5 bytes was dropped
    assert _worker(row)["memory"] == "1.0 / 2.0 GiB (50 %)"


# ---- the broker's history, and a gateway that starts after the batch ---------------------------

def test_a_batch_before_anyone_looked_is_on_the_status_charts(broker, tmp_path):
    cluster = broker  # conftest's module broker: no gateway has looked at it yet
    images = [jpeg("coffee.jpg"), jpeg("rocket.jpg")] * 20
    with cluster.client() as client:
        before = client.info()["completed"]
        assert len(list(client.map(images, "grayscale"))) == len(images)
        deadline_s = time.monotonic() + 20
        while True:  # until a sample after the batch is in the broker's history
            history = client.info(history=True)["history"]
            if history["rows"] and history["rows"][-1][COLUMNS.index("completed")] >= before + len(images):
                break
            assert time.monotonic() < deadline_s, history
            time.sleep(0.2)
        assert "history" not in client.info()  # only when asked: INFO stays small
    assert history["columns"] == list(COLUMNS) and history["kept_s"] >= 600
    assert len(history["rows"]) <= history["kept_s"] / history["step_s"]
    ages = [r[0] for r in history["rows"]]
    assert ages == sorted(ages, reverse=True)  # oldest first

    server = WebServer(tmp_path, cluster.front).start()  # nobody watched the batch: no gateway at all
    user = User(server, "olga")
    try:
        assert not server.parts.status.sampling
        view = user.api.get("/api/v1/status").json()
        assert view["throughput_per_s"] > 0, view  # the earlier batch, from the broker's history
        page = user.browser.get("/status").text
        chart = re.search(r'<svg id="chart-throughput"[^>]*data-points="(\d+)" data-max="([\d.]+)"', page)
        assert chart and int(chart.group(1)) >= 2 and float(chart.group(2)) >= 2, chart and chart.group(0)
        throughput = page[chart.start():page.index("</svg>", chart.start())]
        assert 'data-series="completed"' in throughput  # a line, not "no data yet"
    finally:
        user.close()
        server.stop()


# ---- the workers table in a real browser -------------------------------------------------------

@NEEDS_CHROMIUM
@pytest.mark.parametrize("width_px", WIDTHS_PX)
def test_the_workers_table_shows_cpu_and_memory_without_overflow(chromium, broker, tmp_path, width_px):
    server = WebServer(tmp_path, broker.front).start()
    user = User(server, "pavel")
    try:
        page = logged_in(chromium, server, user, width=width_px)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto("/status")
        page.wait_for_function("() => document.querySelector('#updated').textContent.startsWith('Updated')")
        page.wait_for_function("() => / %$/.test(document.querySelector('#workers td[data-label=\"CPU\"]')"
                               ".textContent)")
        cpu, memory = page.locator('#workers td[data-label="CPU"]').first, page.locator(
            '#workers td[data-label="Memory"]').first
        assert re.fullmatch(r"\d+ %", cpu.text_content()), cpu.text_content()
        assert "GiB" in memory.text_content()
        for cell in (cpu, memory):
            box = cell.bounding_box()
            assert cell.is_visible() and box is not None and box["x"] + box["width"] <= width_px
        if width_px < 600:  # a card per host: the header row is hidden, each cell says what it is
            assert not page.locator("table.workers thead").is_visible()
        page.screenshot(path=str(SHOTS / f"status-hosts-{width_px}.png"), full_page=True)
        scroll_px, inner_px = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_px <= inner_px, f"the status page at {width_px} px is {scroll_px} px wide"
        assert not errors, errors
        page.context.close()
    finally:
        user.close()
        server.stop()
