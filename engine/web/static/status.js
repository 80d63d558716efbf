// The status page, live: one EventSource on /status/events; each "status" event carries the
// numbers, the worker hosts, the recent failures and the three charts as SVG markup drawn by
// the server. Without JavaScript the page is the server's snapshot. No libraries.
"use strict";
(() => {
  const $ = (sel) => document.querySelector(sel);
  const dash = (v, suffix = "") => (v === null || v === undefined ? "–" : `${v}${suffix}`);
  let newestFailureS = null;

  // A table row; each cell is [content, options]: content is text, or a list of text and nodes.
  function row(cells, cls) {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    for (const [content, opts = {}] of cells) {
      const td = document.createElement("td");
      if (opts.class) td.className = opts.class;
      if (opts.colspan) td.colSpan = opts.colspan;
      if (opts.label) td.dataset.label = opts.label;
      if (opts.code) td.append(node("code", content, opts.code === true ? "" : opts.code));
      else if (Array.isArray(content)) td.append(...content);
      else td.textContent = content;
      tr.append(td);
    }
    return tr;
  }

  function node(tag, text, cls = "") {
    const n = document.createElement(tag);
    n.textContent = text;
    if (cls) n.className = cls;
    return n;
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
    $("#status-advice").textContent = s.up ? "" : s.advice || "";
    $("#status-advice").hidden = s.up;
    $("#queue-depth").textContent = dash(s.queue_depth);
    $("#in-flight").textContent = dash(s.in_flight);
    $("#tasks-done").textContent = dash(s.tasks_done);
    $("#tasks-failed").textContent = dash(s.failed);
    $("#throughput").textContent = dash(s.throughput_per_s, " /s");
    $("#host-resources").textContent = s.host_resources || "";
    $("#cache").textContent = s.cache ? `${s.cache.hits} hits, ${s.cache.misses} misses` : "–";
    $("#workers").replaceChildren(...(s.workers || []).map((w) => row([
      [w.id, { code: true, label: "Worker" }], [w.host || "", { label: "Host" }],
      [[node("span", w.state, `status ${w.state}`)], { label: "State" }], [dash(w.processes), { label: "Processes" }],
      [w.cpu || "—", { label: "CPU", class: "cpu" }], [w.memory || "—", { label: "Memory", class: "memory" }],
      [`${w.free} / ${w.capacity}`, { label: "Slots free" }], [dash(w.in_flight), { label: "Running" }],
      [dash(w.tasks_done), { label: "Tasks done" }], [`${dash(w.last_heartbeat_s_ago)} s ago`, { label: "Last heartbeat" }],
    ])));
    // One row per kind of failure (code, message, pipeline as written), with its count: "6 × bad_parameter: …".
    const failures = s.recent_failures || [];
    const before = newestFailureS;
    $("#failures").replaceChildren(...(failures.length ? failures.map((f) => row([
      [f.at, { label: "Last" }],
      [[node("strong", `${f.count || 1} ×`, "count"), " ", node("code", f.code), ": ", node("span", f.message, "failure-message")],
        { label: "Failure" }],
      [f.pipeline, { code: "pipeline", label: "Pipeline" }], [f.worker, { label: "Worker" }],
    ], before !== null && f.at_unix_s > before ? "fresh" : "")) : [row([["No failed tasks among the broker's last 20.", { colspan: 4 }]], "empty")]));
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
