// The status page, live: one EventSource on /status/events; each "status" event carries the
// numbers, the worker hosts, the recent failures and the three charts as SVG markup drawn by
// the server. Without JavaScript the page is the server's snapshot. No libraries.
"use strict";
(() => {
  const $ = (sel) => document.querySelector(sel);
  const dash = (v, suffix = "") => (v === null || v === undefined ? "–" : `${v}${suffix}`);
  let newestFailureS = null;

  function row(cells, cls) {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    for (const [text, opts = {}] of cells) {
      const td = document.createElement("td");
      if (opts.class) td.className = opts.class;
      if (opts.colspan) td.colSpan = opts.colspan;
      if (opts.code) {
        const code = document.createElement("code");
        code.textContent = text;
        td.append(code);
      } else {
        td.textContent = text;
      }
      tr.append(td);
    }
    return tr;
  }

  function swapChart(boxId, markup) {
    const box = document.getElementById(boxId);
    if (!box || !markup) return;
    const svg = new DOMParser().parseFromString(markup, "image/svg+xml").documentElement;
    if (svg.nodeName !== "svg") return;
    box.replaceChildren(document.importNode(svg, true));
  }

  function render(s) {
    const line = $("#status-line");
    line.textContent = s.up ? `Broker ${s.broker} is up.` : s.error;
    line.className = `message ${s.up ? "ok" : "error"}`;
    $("#queue-depth").textContent = dash(s.queue_depth);
    $("#in-flight").textContent = dash(s.in_flight);
    $("#tasks-done").textContent = dash(s.tasks_done);
    $("#tasks-failed").textContent = dash(s.failed);
    $("#throughput").textContent = dash(s.throughput_per_s, " /s");
    $("#cache").textContent = s.cache ? `${s.cache.hits} hits, ${s.cache.misses} misses` : "–";
    $("#workers").replaceChildren(...(s.workers || []).map((w) => row([
      [w.id, { code: true }], [w.host || ""], [w.state, { class: `status ${w.state}` }], [dash(w.processes)],
      [`${w.free} / ${w.capacity}`], [dash(w.in_flight)], [dash(w.tasks_done)], [`${dash(w.last_heartbeat_s_ago)} s ago`],
    ])));
    const failures = s.recent_failures || [];
    const before = newestFailureS;
    $("#failures").replaceChildren(...(failures.length ? failures.map((f) => row([
      [f.at], [f.code, { code: true }], [f.message], [f.pipeline, { code: true }], [f.worker],
    ], before !== null && f.at_unix_s > before ? "fresh" : "")) : [row([["No failed tasks among the broker's last 20.", { colspan: 5 }]], "empty")]));
    if (failures.length) newestFailureS = Math.max(before ?? 0, ...failures.map((f) => f.at_unix_s || 0));
    else if (newestFailureS === null) newestFailureS = 0;
    if (s.charts) {
      swapChart("throughput-chart", s.charts.throughput);
      swapChart("latency-chart", s.charts.latency);
      swapChart("queue-chart", s.charts.queue);
    }
    $("#updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const box = $("#status[data-events]");
    if (!box || !window.EventSource) return;
    $("#live-note").textContent = "Live: the gateway pushes a new view every second.";
    const events = new EventSource(box.dataset.events);
    events.addEventListener("status", (e) => render(JSON.parse(e.data)));
    events.addEventListener("error", () => {
      $("#updated").textContent = events.readyState === EventSource.CLOSED
        ? "The live feed stopped (too many viewers, or logged out); reload the page."
        : "Connection lost; reconnecting…";
    });
    window.addEventListener("pagehide", () => events.close());
  });
})();
