"use strict";
// The Tandem dashboard: polls /api/overview; the workflows tab talks to /api/apps/<id>/workflows.
const $ = (sel) => document.querySelector(sel);
const state = { overview: null, previous: {}, selected: null, instance: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

async function getJSON(url, options = {}) {
  const resp = await fetch(url, options);
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
  return { status: resp.status, body };
}

// A sidecar's answer passed through the dashboard server: {status, body}.
async function sidecar(url, options = {}) {
  const { status, body } = await getJSON(url, options);
  return status === 200 && body && "status" in body ? body : { status, body };
}

function showTab(name) {
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== `tab-${name}`;
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.tab === name);
  }
  if (name === "workflows") listWorkflows();
}

function renderControlPlane(cp) {
  $("#control-plane").textContent = cp.running
    ? `control plane pid ${cp.pid}, up ${cp.uptimeSeconds}s, CA until ${cp.caExpires}`
    : "control plane not running";
}

function rate(app, now) {
  const before = state.previous[app.appId];
  state.previous[app.appId] = { count: app.requests, at: now };
  if (!before || now <= before.at) return "–";
  return ((app.requests - before.count) / ((now - before.at) / 1000)).toFixed(1);
}

function renderApps(apps, now) {
  const body = $("#apps tbody");
  body.replaceChildren(...apps.map((app) => {
    const row = el("tr", { "data-app": app.appId },
      el("td", {}, app.appId),
      el("td", { class: app.healthy ? "up" : "down" }, app.healthy ? "healthy" : "unhealthy"),
      el("td", {}, app.ports.http), el("td", {}, app.ports.grpc),
      el("td", {}, app.ports.app ?? "–"), el("td", {}, app.ports.metrics),
      el("td", {}, app.configVersion ?? "–"), el("td", {}, rate(app, now)));
    row.addEventListener("click", () => { state.selected = app.appId; renderDetails(); });
    return row;
  }));
  renderDetails();
}

function list(items, render) {
  return items.length ? el("ul", {}, ...items.map((i) => el("li", {}, render(i))))
    : el("p", { class: "muted" }, "none");
}

function renderDetails() {
  const target = $("#app-details");
  const app = (state.overview?.apps || []).find((a) => a.appId === state.selected);
  if (!app) { target.replaceChildren(); return; }
  target.replaceChildren(
    el("h2", {}, app.appId),
    el("div", { class: "card" }, el("h3", {}, "Components"),
      list(app.components, (c) => `${c.name} (${c.type} ${c.version})`)),
    el("div", { class: "card" }, el("h3", {}, "Subscriptions"),
      list(app.subscriptions, (s) => `${s.pubsub}/${s.topic} → ${s.routes.join(", ")} (${s.type})`)),
    el("div", { class: "card" }, el("h3", {}, "Who may call it (access control)"),
      app.accessControl ? el("pre", {}, JSON.stringify(app.accessControl, null, 2))
        : el("p", { class: "muted" }, "no accessControl: every app of the mesh may call it")),
    el("div", { class: "card" }, el("h3", {}, "Traffic and resiliency policies"),
      list(app.policies, (p) => `${p.kind} ${p.name}: ${JSON.stringify(p.backends || p.targets)}`
        + (p.features ? ` [${p.features.join(", ")}]` : ""))),
  );
}

function renderActors(apps) {
  const rows = [];
  for (const app of apps) {
    for (const actor of app.actors || []) {
      rows.push(el("tr", {}, el("td", {}, actor.type), el("td", {}, app.appId),
        el("td", {}, actor.count)));
    }
  }
  $("#actors tbody").replaceChildren(...rows);
}

function renderWorkflowApps(apps) {
  const select = $("#wf-app");
  const current = select.value;
  select.replaceChildren(...apps.map((a) => el("option", { value: a.appId }, a.appId)));
  if (apps.some((a) => a.appId === current)) select.value = current;
}

async function refresh() {
  try {
    const { status, body } = await getJSON("/api/overview");
    if (status !== 200) return;
    state.overview = body;
    const now = Date.now();
    renderControlPlane(body.controlPlane);
    renderApps(body.apps, now);
    renderActors(body.apps);
    renderWorkflowApps(body.apps);
  } catch (e) {
    $("#control-plane").textContent = "dashboard server unreachable";
  }
}

function workflowsUrl() {
  return `/api/apps/${encodeURIComponent($("#wf-app").value)}/workflows`;
}

async function listWorkflows() {
  if (!$("#wf-app").value) return;
  const query = new URLSearchParams();
  if ($("#wf-status").value) query.set("runtimeStatus", $("#wf-status").value);
  if ($("#wf-name").value) query.set("name", $("#wf-name").value);
  const { status, body } = await sidecar(`${workflowsUrl()}?${query}`);
  const rows = status === 200 ? (body.instances || body.workflows || []) : [];
  $("#wf-message").textContent = status === 200 ? `${rows.length} instance(s)`
    : `workflows not available: ${body?.message || status}`;
  $("#workflows tbody").replaceChildren(...rows.map((wf) => {
    const id = wf.instanceID || wf.instanceId || wf.id;
    const row = el("tr", { "data-instance": id }, el("td", {}, id),
      el("td", {}, wf.workflowName || wf.name || ""),
      el("td", {}, wf.runtimeStatus || ""), el("td", {}, wf.createdAt || ""));
    row.addEventListener("click", () => showInstance(id));
    return row;
  }));
}

async function showInstance(id) {
  state.instance = id;
  const { status, body } = await sidecar(`${workflowsUrl()}/${encodeURIComponent(id)}`);
  $("#wf-instance").hidden = false;
  $("#wf-id").textContent = id;
  $("#wf-state").textContent = status === 200 ? body.runtimeStatus : `error ${status}`;
  const events = (status === 200 && body.history) ? (body.history.events || body.history) : [];
  $("#wf-history").replaceChildren(...(Array.isArray(events) ? events : []).map((e) =>
    el("li", { class: "event" }, eventText(e))));
}

// A history event in proto-JSON: {eventId, timestamp, <kind>: {name, ...}}.
function eventText(e) {
  const kind = Object.keys(e).find((k) => !["eventId", "timestamp", "router"].includes(k)) || "";
  const name = (e[kind] && e[kind].name) || "";
  return `${e.timestamp || ""} ${kind} ${name}`.trim();
}

async function act(action) {
  const id = state.instance;
  if (!id) return;
  let url = `${workflowsUrl()}/${encodeURIComponent(id)}/${action}`;
  const options = { method: "POST", headers: { "x-tandem-dashboard": "1" } };
  if (action === "raiseEvent") {
    url += `?event=${encodeURIComponent($("#wf-event").value)}`;
    if ($("#wf-payload").value) {
      options.headers["content-type"] = "application/json";
      options.body = $("#wf-payload").value;
    }
  }
  const { status, body } = await sidecar(url, options);
  $("#wf-action-result").textContent = status >= 200 && status < 300 ? `${action}: done`
    : `${action} failed: ${body?.message || status}`;
  await showInstance(id);
  await listWorkflows();
}

for (const link of document.querySelectorAll("nav a")) {
  link.addEventListener("click", () => showTab(link.dataset.tab));
}
for (const button of document.querySelectorAll("#wf-instance button")) {
  button.addEventListener("click", () => act(button.dataset.action));
}
$("#wf-filter").addEventListener("submit", (e) => { e.preventDefault(); listWorkflows(); });
showTab((location.hash || "#apps").slice(1));
refresh();
setInterval(refresh, 2000);
