// Small progressive enhancements over plain forms: pipeline builder, drag and drop,
// live batch progress, live status. No build step, no libraries.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
};
const size = (n) => {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
};

function localTimes() {
  for (const t of document.querySelectorAll("time[data-ts]")) {
    t.textContent = new Date(parseFloat(t.dataset.ts) * 1000).toLocaleString();
  }
}

// Edit distance, for "did you mean" on a mistyped operation (the server says the same).
function distance(a, b) {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

function closest(name, names) {
  let best = null;
  let bestD = Infinity;
  for (const n of names) {
    const d = distance(name.toLowerCase(), n);
    if (d < bestD) { best = n; bestD = d; }
  }
  return bestD <= Math.max(1, Math.floor(name.length / 3)) ? best : null;
}

// ---- pipeline builder: one form per step, generated from the operations' declared params
const FIRST_CHOICES = ["resize", "grayscale"]; // the operation the builder offers first
const START_PX = 640; // where a size the operation needs starts (a common width)

// A new step's parameters: the declared defaults, except that an operation which needs one of
// several parameters set (its declared any_of, e.g. resize's width or height; defaults 0) gets the
// first of them, so that the step as added passes the server's check.
function startingParams(op) {
  const params = {};
  const anyOf = (op && op.any_of) || [];
  const first = anyOf.length && op.params.find((p) => p.name === anyOf[0]);
  if (first && !anyOf.some((n) => (op.params.find((p) => p.name === n) || {}).default)) {
    const fits = (v) => (first.min === undefined || v >= first.min) && (first.max === undefined || v <= first.max);
    params[first.name] = first.choices ? first.choices[0] : fits(START_PX) ? START_PX : Math.max(1, first.min || 0);
  }
  return params;
}

function builder() {
  const data = $("#ops");
  const text = $("#pipeline");
  if (!data || !text) return;
  const ops = JSON.parse(data.textContent);
  const select = $("#op-select");
  const list = $("#steps");
  let steps = [];
  for (const name of Object.keys(ops)) select.append(el("option", { value: name, text: `${name} — ${ops[name].help}` }));
  // Start on a common operation, not the alphabet's first (anonymize).
  select.value = FIRST_CHOICES.find((n) => n in ops) || select.value;
  $("#op-help").textContent = ops[select.value] ? ops[select.value].help : "";
  $("#builder").hidden = false;

  const fmt = (v) => (typeof v === "boolean" ? (v ? "true" : "false") : String(v));
  const serialise = () => steps.map((s) => {
    const args = Object.entries(s.params).filter(([, v]) => v !== "" && v !== undefined)
      .map(([k, v]) => `${k}=${fmt(v)}`);
    return args.length ? `${s.op}:${args.join(",")}` : s.op;
  }).join("|");

  function paramInput(step, p) {
    const id = `p-${list.children.length}-${p.name}`;
    const value = step.params[p.name] ?? p.default ?? "";
    let input;
    if (p.choices) {
      input = el("select", { id });
      for (const c of p.choices) input.append(el("option", { value: String(c), text: String(c) }));
      input.value = String(value);
    } else if (p.type === "bool") {
      input = el("input", { id, type: "checkbox" });
      input.checked = value === true || value === "true";
    } else if (p.type === "int" || p.type === "float") {
      input = el("input", { id, type: "number", step: p.type === "int" ? "1" : "any" });
      if (p.min !== undefined) input.min = p.min;
      if (p.max !== undefined) input.max = p.max;
      input.value = value;
    } else {
      input = el("input", { id, type: "text" });
      input.value = value;
    }
    input.dataset.param = p.name;
    if (p.required) input.required = true;
    input.addEventListener("input", () => {
      step.params[p.name] = input.type === "checkbox" ? input.checked : input.value;
      text.value = serialise();
    });
    const range = [p.min !== undefined ? `min ${p.min}` : "", p.max !== undefined ? `max ${p.max}` : ""]
      .filter(Boolean).join(", ");
    return el("label", { title: p.help }, `${p.name} `, input, el("small", { text: ` ${p.help}${range ? ` (${range})` : ""}` }));
  }

  // A step button: remove it, or move it up or down (then the text follows).
  function stepButton(label, aria, i, change) {
    const button = el("button", { type: "button", class: "link", text: label, "aria-label": `${aria} step ${i + 1}` });
    button.addEventListener("click", () => { change(); render(); text.value = serialise(); });
    return button;
  }

  function render() {
    list.replaceChildren();
    steps.forEach((step, i) => {
      const op = ops[step.op];
      const swap = (j) => { [steps[i], steps[j]] = [steps[j], steps[i]]; };
      const controls = el("span", { class: "step-controls" });
      if (i > 0) controls.append(stepButton("↑ up", "move up", i, () => swap(i - 1)));
      if (i < steps.length - 1) controls.append(stepButton("↓ down", "move down", i, () => swap(i + 1)));
      controls.append(stepButton("remove", "remove", i, () => steps.splice(i, 1)));
      const item = el("li", { class: "step", "data-op": step.op }, el("strong", { text: step.op }), " ", controls);
      if (!op) {
        const guess = closest(step.op, Object.keys(ops));
        item.append(el("small", { class: "unknown-op", text: `unknown operation${guess ? ` — did you mean '${guess}'?` : ""}` }));
      }
      for (const p of op ? op.params : []) item.append(paramInput(step, p));
      list.append(item);
    });
  }

  function fromText() {
    steps = [];
    for (const chunk of text.value.split("|").map((c) => c.trim()).filter(Boolean)) {
      const [name, args = ""] = chunk.split(/:(.*)/s);
      const params = {};
      for (const pair of args.split(",").filter(Boolean)) {
        const [k, v = ""] = pair.split("=");
        params[k.trim()] = v.trim();
      }
      steps.push({ op: name.trim(), params });
    }
    render();
  }

  $("#add-step").addEventListener("click", () => {
    steps.push({ op: select.value, params: startingParams(ops[select.value]) });
    render();
    text.value = serialise();
  });
  select.addEventListener("change", () => { $("#op-help").textContent = ops[select.value].help; });
  text.addEventListener("input", fromText); // as the user types, so nothing moves under a click
  fromText();
}

// ---- drag and drop onto the file input, with a list of what was chosen
function dropzone() {
  const zone = $("#drop");
  const input = $("#images");
  if (!zone || !input) return;
  const show = () => {
    const list = $("#chosen");
    list.replaceChildren();
    for (const f of input.files) {
      const img = el("img", { alt: f.name, class: "thumb" });
      img.src = URL.createObjectURL(f);
      list.append(el("li", {}, img, ` ${f.name} (${size(f.size)})`));
    }
  };
  for (const ev of ["dragenter", "dragover"]) {
    zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    input.files = e.dataTransfer.files;
    show();
  });
  input.addEventListener("change", show);
  uploadInPlace($("#upload-form"));
}

// ---- send the upload form from the page, so that a refusal (a mistyped pipeline, a quota)
// is shown above the form with the chosen files still there; success goes to the batch page.
function uploadInPlace(form) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const bar = $("#upload-progress");
    const button = $("#process");
    bar.hidden = false;
    bar.value = 0;
    button.disabled = true;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", (ev) => { if (ev.lengthComputable) bar.value = (100 * ev.loaded) / ev.total; });
    const fail = (message) => {
      let box = $("#error");
      if (!box) {
        box = el("p", { class: "message error", role: "alert", id: "error" });
        $("main").prepend(box);
      }
      box.textContent = message;
      bar.hidden = true;
      button.disabled = false;
      box.scrollIntoView({ block: "nearest" });
    };
    xhr.addEventListener("load", () => {
      if (xhr.status < 400 && !new URL(xhr.responseURL).pathname.startsWith("/upload")) {
        window.location.assign(xhr.responseURL);
        return;
      }
      const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
      const err = page.querySelector("#error");
      fail(err ? err.textContent : `The upload failed (HTTP ${xhr.status}).`);
    });
    xhr.addEventListener("error", () => fail("The web gateway did not answer; nothing was uploaded. Try again."));
    xhr.send(new FormData(form));
  });
}

// ---- forms that delete something ask first
function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
  }
}

// ---- batch page: poll progress, fill in each result as it arrives
const SVG = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};

// Detection boxes over the output image, in its own pixels (job.detections, from meta "faces").
function boxes(job) {
  const svg = svgEl("svg", { class: "boxes", viewBox: `0 0 ${job.meta.width} ${job.meta.height}`,
    preserveAspectRatio: "none", "aria-label": `${job.detections.length} detection(s)` });
  for (const d of job.detections) {
    const [x, y, w, h] = d.box;
    const rect = svgEl("rect", { x, y, width: w, height: h, "vector-effect": "non-scaling-stroke" });
    const title = svgEl("title", {});
    title.textContent = d.score === null ? "face" : `face ${d.score.toFixed(2)}`;
    rect.append(title);
    svg.append(rect);
    for (const [cx, cy] of d.keypoints) svg.append(svgEl("circle", { cx, cy, r: Math.min(w, h) / 30 + 1 }));
  }
  return svg;
}

function outputFigure(job) {
  const fig = el("figure", { class: "output" });
  if (job.status === "done") {
    const m = job.meta;
    const timing = job.cached
      ? [el("span", { class: "cached", text: "from the result cache" }), `, ${m.elapsed_ms} ms for this request (no worker ran)`]
      : [`${m.pipeline_ms} ms at the worker, ${m.elapsed_ms} ms in all`];
    const picture = el("div", { class: "boxed" }, el("img", { src: job.urls.output, alt: `output of ${job.input_name}` }));
    if (job.detections.length) picture.append(boxes(job));
    fig.append(picture,
      el("figcaption", {}, `Output · ${size(job.output_bytes)} · ${m.width}×${m.height} ${m.format} · `, ...timing,
        job.detections.length ? ` · ${job.detections.length} face(s)` : "", " · ",
        el("a", { href: `${job.urls.output}?download=1`, class: "download", text: "Download" })));
  } else if (job.status === "failed") {
    fig.append(el("p", { class: "message error", text: job.error ? job.error.message : "failed" }));
  } else {
    fig.append(el("p", { class: "hint", text: "Processing…" }));
  }
  return fig;
}

async function batchPoller() {
  const results = $("#results[data-batch]");
  if (!results) return;
  const url = `/api/v1/batches/${results.dataset.batch}`;
  for (;;) {
    let batch;
    try {
      const r = await fetch(url, { credentials: "same-origin" });
      batch = await r.json();
      if (!r.ok) throw new Error(batch.error || r.statusText);
    } catch (err) {
      $("#batch-count").textContent = `Could not read progress: ${err.message}`;
      await new Promise((ok) => setTimeout(ok, 2000));
      continue;
    }
    const finished = batch.done + batch.failed;
    $("#batch-progress").value = finished;
    $("#batch-count").textContent = `${finished} of ${batch.total} finished` +
      (batch.failed ? ` (${batch.failed} failed)` : "");
    for (const job of batch.jobs) {
      const card = $(`#job-${job.id}`);
      if (card && card.dataset.status !== job.status) {
        card.dataset.status = job.status;
        const badge = $(".status", card);
        badge.textContent = job.status;
        badge.className = `status ${job.status}`;
        $("figure.output", card).replaceWith(outputFigure(job));
      }
    }
    if (batch.done) $("#zip").hidden = false;
    if (batch.finished) break;
    await new Promise((ok) => setTimeout(ok, 500));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes();
  builder();
  dropzone();
  batchPoller();
  confirmations();
});
