// Interactive API docs at /api/v1/docs, built from /api/v1/openapi.json. No libraries.
// The DOM helpers $ and el are app.js's: base.html loads it on every page, and deferred
// scripts run in document order, so it has run before this one.
"use strict";

(() => {
  const quote = (s) => `'${String(s).replace(/'/g, "'\\''")}'`;

  // A boolean or an enum is offered as a choice, its default marked and chosen; without a
  // default the first choice is "(not sent)".
  function choice(schema, required) {
    const values = schema.type === "boolean" ? [true, false] : schema.enum;
    const select = el("select");
    if (schema.default === undefined && !required) select.append(el("option", { value: "", text: "(not sent)" }));
    for (const v of values) {
      const isDefault = schema.default !== undefined && String(v) === String(schema.default);
      select.append(el("option", { value: String(v), text: isDefault ? `${v} (default)` : String(v) }));
    }
    if (schema.default !== undefined) select.value = String(schema.default);
    return select;
  }

  // description: the parameter's own, else its schema's (form fields have only the latter).
  function field(name, schema, where, required, description = schema.description) {
    const binary = schema.format === "binary" || (schema.items && schema.items.format === "binary");
    let input;
    if (binary) input = el("input", { type: "file" });
    else if (schema.type === "boolean" || Array.isArray(schema.enum)) input = choice(schema, required);
    else input = el("input", { type: "text" });
    if (schema.type === "array") input.multiple = true;
    if (input.tagName === "INPUT" && !binary && schema.example !== undefined) input.value = schema.example;
    input.dataset.name = name;
    input.dataset.where = where;
    const range = [schema.minimum !== undefined ? `min ${schema.minimum}` : "", schema.maximum !== undefined
      ? `max ${schema.maximum}` : "", input.tagName === "INPUT" && schema.default !== undefined
      ? `default ${schema.default}` : ""].filter(Boolean).join(", ");
    return el("label", { class: "param" }, `${name}${required ? " *" : ""} `, input,
      el("small", { text: ` ${where}${description ? ` · ${description}` : ""}${range ? ` (${range})` : ""}` }));
  }

  function operation(path, method, op) {
    const form = el("form", { class: "try" });
    for (const p of op.parameters || []) {
      const schema = p.schema || {};
      form.append(field(p.name, schema, p.in, p.required, p.description || schema.description));
    }
    const content = (op.requestBody && op.requestBody.content) || {};
    let bodyKind = null;
    if (content["application/octet-stream"]) {
      bodyKind = "raw";
      form.append(field("body", { format: "binary", description: "the image file, sent as the body" }, "body", true));
    } else if (content["multipart/form-data"]) {
      bodyKind = "multipart";
      const schema = content["multipart/form-data"].schema;
      for (const [name, s] of Object.entries(schema.properties || {})) {
        form.append(field(name, s, "form", (schema.required || []).includes(name)));
      }
    } else if (content["application/json"]) {
      bodyKind = "json";
      form.append(el("label", { class: "param" }, "JSON body ", el("textarea", { rows: 3, "data-where": "json" })));
    }
    const out = el("div", { class: "answer" });
    form.append(el("button", { type: "submit", text: "Send" }), out);
    form.addEventListener("submit", (e) => { e.preventDefault(); send(path, method, form, bodyKind, out); });
    const head = el("summary", {}, el("span", { class: `method ${method}`, text: method.toUpperCase() }), " ",
      el("code", { text: path }), el("span", { class: "hint", text: ` ${op.summary || ""}` }));
    return el("details", { class: "endpoint card" }, head, form);
  }

  async function send(path, method, form, bodyKind, out) {
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    const curl = ["curl", "-f"];
    let body;
    const multipart = new FormData();
    for (const input of form.querySelectorAll("[data-where]")) {
      const { name, where } = input.dataset;
      if (where === "path") url = url.replace(`{${name}}`, encodeURIComponent(input.value));
      else if (where === "query" && input.value !== "") query.set(name, input.value);
      else if (where === "body" && input.files[0]) { body = input.files[0]; curl.push("--data-binary", quote(`@${body.name}`)); }
      else if (where === "form") {
        if (input.type === "file") {
          for (const f of input.files) { multipart.append(name, f); curl.push("-F", quote(`${name}=@${f.name}`)); }
        } else if (input.value !== "") { multipart.append(name, input.value); curl.push("-F", quote(`${name}=${input.value}`)); }
      } else if (where === "json" && input.value.trim()) {
        body = input.value; headers["Content-Type"] = "application/json"; curl.push("-H", quote("Content-Type: application/json"), "--data", quote(body));
      }
    }
    if (bodyKind === "multipart") body = multipart;
    if (query.toString()) url += `?${query}`;
    const token = $("#api-token").value.trim();
    if (token) headers.Authorization = `Bearer ${token}`;
    else if (method !== "get") headers["X-CSRF-Token"] = $('meta[name="csrf-token"]').content;
    curl.splice(2, 0, "-H", quote("Authorization: Bearer $TOKEN"));
    if (method !== "get" && bodyKind === null) curl.push("-X", method.toUpperCase());
    curl.push(quote(`${location.origin}${url}`));
    out.replaceChildren(el("p", { class: "hint", text: "Sending…" }));
    let r;
    try {
      r = await fetch(url, { method: method.toUpperCase(), headers, body, credentials: token ? "omit" : "same-origin" });
    } catch (err) {
      out.replaceChildren(el("p", { class: "message error", text: `No answer: ${err.message}` }));
      return;
    }
    const type = r.headers.get("content-type") || "";
    const shown = [el("p", { class: r.ok ? "message ok" : "message error", text: `HTTP ${r.status} ${r.statusText} · ${type || "no body"}` })];
    if (type.startsWith("application/json")) {
      shown.push(el("pre", { text: JSON.stringify(await r.json(), null, 2) }));
    } else if (type.startsWith("image/")) {
      const img = el("img", { alt: "the answer", class: "answer-image" });
      img.src = URL.createObjectURL(await r.blob());
      shown.push(img);
    } else if (r.status !== 204) {
      const blob = await r.blob();
      const a = el("a", { href: URL.createObjectURL(blob), download: "answer", text: `download the answer (${blob.size} bytes)` });
      shown.push(el("p", {}, a));
    }
    const meta = r.headers.get("x-engine-meta");
    if (meta) shown.push(el("p", { class: "hint", text: "X-Engine-Meta:" }), el("pre", { text: JSON.stringify(JSON.parse(meta), null, 2) }));
    shown.push(el("p", { class: "hint", text: "The same request from a shell:" }), el("pre", { class: "curl", text: curl.join(" ") }));
    out.replaceChildren(...shown);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const box = $("#api-docs[data-spec]");
    if (!box) return;
    const spec = await (await fetch(box.dataset.spec)).json();
    const list = [];
    for (const [path, methods] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(methods)) list.push(operation(path, method, op));
    }
    box.replaceChildren(el("p", { class: "hint", text: `${spec.info.title} ${spec.info.version}: ${spec.info.description}` }), ...list);
  });
})();
