// Renders /openapi.json for reading: operations grouped by tag, each with
// its access rule, parameters, request body (schema and example) and
// answers, then the schemas. Every string from the document is set as
// text, never as HTML.
"use strict";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

function refName(ref) {
  return ref.split("/").pop();
}

// A compact, readable form of a schema: a link for a reference, else JSON.
function schemaView(schema) {
  if (!schema) return el("span", { class: "muted" }, "(none)");
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return el("a", { href: "#schema-" + name }, name);
  }
  return el("pre", {}, JSON.stringify(schema, null, 2));
}

function operationCard(path, method, op) {
  const card = el("section", { class: "card", id: "op-" + (op.operationId || method + path) });
  card.append(el("h3", {}, method.toUpperCase() + " " + path));
  card.append(el("p", {}, op.summary || ""));
  card.append(el("p", { class: "muted" }, op.description || ""));
  if (op["x-synod-grpc"]) card.append(el("p", { class: "muted" }, "gRPC: " + op["x-synod-grpc"].join(", ")));
  const params = op.parameters || [];
  if (params.length) {
    const rows = params.map((p) =>
      el("tr", {}, el("td", {}, p.name), el("td", {}, p.in), el("td", {}, p.required ? "required" : ""),
        el("td", {}, p.description || ""), el("td", {}, schemaView(p.schema))));
    card.append(el("h4", {}, "Parameters"), el("table", {}, ...rows));
  }
  if (op.requestBody) {
    card.append(el("h4", {}, "Body"));
    for (const [type, content] of Object.entries(op.requestBody.content || {})) {
      card.append(el("p", { class: "muted" }, type), schemaView(content.schema));
      if (content.example !== undefined) {
        card.append(el("p", { class: "muted" }, "Example"),
          el("pre", {}, typeof content.example === "string" ? content.example : JSON.stringify(content.example, null, 2)));
      }
    }
  }
  const rows = Object.entries(op.responses || {}).map(([code, r]) => {
    const content = Object.entries(r.content || {})[0];
    return el("tr", {}, el("td", {}, code), el("td", {}, r.description || ""),
      el("td", {}, content ? schemaView(content[1].schema) : ""));
  });
  card.append(el("h4", {}, "Answers"), el("table", {}, ...rows));
  return card;
}

function render(doc) {
  const main = document.getElementById("main");
  main.replaceChildren();
  main.append(el("section", { class: "card" },
    el("h1", {}, (doc.info.title || "API") + " " + (doc.info.version || "")),
    el("p", {}, doc.info.description || ""),
    el("p", { class: "muted" }, "OpenAPI " + doc.openapi)));
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, method, op]);
    }
  }
  const nav = document.getElementById("tags");
  for (const [tag, ops] of byTag) {
    nav.append(el("a", { href: "#tag-" + tag }, tag));
    main.append(el("h2", { id: "tag-" + tag }, tag));
    for (const [path, method, op] of ops) main.append(operationCard(path, method, op));
  }
  nav.append(el("a", { href: "#schemas" }, "schemas"));
  main.append(el("h2", { id: "schemas" }, "Schemas"));
  for (const [name, schema] of Object.entries((doc.components || {}).schemas || {})) {
    main.append(el("section", { class: "card", id: "schema-" + name },
      el("h3", {}, name), el("pre", {}, JSON.stringify(schema, null, 2))));
  }
}

fetch("/openapi.json")
  .then((r) => {
    if (!r.ok) throw new Error("GET /openapi.json: " + r.status);
    return r.json();
  })
  .then(render)
  .catch((e) => {
    const s = document.getElementById("status");
    s.textContent = String(e);
    s.className = "error";
  });
