"use strict";
// The monitoring page: reads bff's /observability API with the viewer's own credential (Open
// WebUI's `token` cookie, or a pasted token) and draws it. bff decides what each viewer may see;
// this page only hides controls a viewer cannot use.

const FAST_MS = 5000;   // health and traffic
const SLOW_MS = 30000;  // spend, quotas, traces
const $ = id => document.getElementById(id);
const view = { token: sessionStorage.getItem("bff-token") || "", admin: false, user: "", role: "user", paused: false };

function text(value) { return value === null || value === undefined ? "" : String(value); }
function cell(value, className) {
  const td = document.createElement("td");
  if (value instanceof Node) td.append(value); else td.textContent = text(value);
  if (className) td.className = className;
  return td;
}
function fill(id, rows, empty) {
  const body = $(id);
  body.replaceChildren();
  for (const values of rows) {
    const tr = document.createElement("tr");
    values.forEach(v => tr.append(v instanceof HTMLTableCellElement ? v : cell(v)));
    body.append(tr);
  }
  if (!rows.length && empty) {
    const td = cell(empty, "muted");
    td.colSpan = body.closest("table").querySelectorAll("thead th").length;
    const tr = document.createElement("tr"); tr.append(td); body.append(tr);
  }
}
function panelState(section, message, isError) {
  const state = $(section).querySelector("[data-state]");
  state.textContent = message || "";
  state.classList.toggle("error", Boolean(isError));
}
// A person as Open WebUI names them, with their id beside it (a service key shows its name).
function person(name, email, id) {
  const td = document.createElement("td");
  const main = document.createElement("span");
  main.textContent = name || id || "(unknown)";
  td.append(main);
  const second = [email, name ? id : ""].filter(Boolean).join(" · ");
  if (second) td.append(Object.assign(document.createElement("small"), { className: "muted id", textContent: second }));
  return td;
}
const number = n => n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
const usd = n => n === null || n === undefined ? "–" : "$" + Number(n).toFixed(n >= 1 ? 2 : 6);
const ms = n => n === null || n === undefined ? "–" : (n >= 1000 ? (n / 1000).toFixed(2) + " s" : n.toFixed(n < 10 ? 2 : 0) + " ms");
const percent = n => (n * 100).toFixed(n && n < 0.01 ? 2 : 1) + " %";

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
async function get(path, params) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) if (value) url.searchParams.set(key, value);
  const headers = view.token ? { Authorization: "Bearer " + view.token } : {};
  const response = await fetch(url, { headers, credentials: "same-origin" });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const id = response.headers.get("x-request-id");
    const message = body && body.error ? body.error.message : "HTTP " + response.status;
    throw new ApiError(response.status, id ? `${message} (request id ${id})` : message);
  }
  return body;
}

function svg(tag, attributes, title) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (title) { const t = document.createElementNS("http://www.w3.org/2000/svg", "title"); t.textContent = title; node.append(t); }
  return node;
}
// A bar chart: `bars` are {value, alert? (stacked in red), title (tooltip), maxLabel}; one scale.
function barChart(id, bars, summary) {
  const width = 600, height = 120, pad = 14;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary, preserveAspectRatio: "none" });
  const max = Math.max(...bars.map(b => b.value + (b.alert || 0)), 0);
  const step = (width - 2 * pad) / Math.max(bars.length, 1);
  bars.forEach((bar, i) => {
    const h = max ? (bar.value / max) * (height - 2 * pad) : 0;
    const e = max ? ((bar.alert || 0) / max) * (height - 2 * pad) : 0;
    const x = pad + i * step, w = Math.max(step - 1, 1);
    chart.append(svg("rect", { class: "bar", x, y: height - pad - h, width: w, height: h }, bar.title));
    if (e) chart.append(svg("rect", { class: "err", x, y: height - pad - h - e, width: w, height: e }, bar.title));
  });
  const top = svg("text", { x: 2, y: 10 }); top.textContent = max ? "max " + bars.find(b => b.value + (b.alert || 0) === max).maxLabel : "no data";
  chart.append(top);
  $(id).replaceChildren(chart);
}

async function loadHealth() {
  try {
    const health = await get("/observability/health");
    fill("deps", health.dependencies.map(d => [
      d.name,
      cell(Object.assign(document.createElement("span"), { className: "pill " + d.status, textContent: d.status.replace("_", " ") })),
      d.latency_ms === null ? "" : d.latency_ms + " ms",
      d.detail || (d.status === "not_configured" ? "not configured" : ""),
    ]));
    fill("sinks", health.telemetry.map(s => [s.sink, s.queued, s.exported, s.retried, s.spooled, s.replayed, s.ambiguous_retries, s.unconfirmed, s.dropped, cell(s.last_error, s.last_error ? "error" : "")]),
      "No telemetry sink configured (LANGFUSE_* or HELICONE_API_KEY): usage is in bff's own ledger only.");
    panelState("health", health.status === "ok" ? "" : "Degraded: " + health.dependencies.filter(d => d.status === "down").map(d => d.name).join(", ") + " down", true);
    $("updated").textContent = "Updated " + new Date(health.checked_at).toLocaleTimeString();
  } catch (error) { panelState("health", "Health unavailable: " + error.message, true); }
}

async function loadTraffic() {
  try {
    const t = await get("/observability/traffic");
    const tiles = [
      ["requests / s", t.requests_per_second.toFixed(2)], ["error rate (5xx)", percent(t.error_rate)], ["refused (4xx)", percent(t.refused_rate)],
      ["latency p50", ms(t.latency_ms && t.latency_ms.p50)], ["latency p99", ms(t.latency_ms && t.latency_ms.p99)],
      ["bff overhead p50", ms(t.overhead_ms && t.overhead_ms.p50)], ["bff overhead p99", ms(t.overhead_ms && t.overhead_ms.p99)],
      ["first token p50", ms(t.time_to_first_token_ms && t.time_to_first_token_ms.p50)], ["active streams", t.active_streams],
      ["clients that left", percent(t.abandoned_rate)], ["replicas reporting", t.replicas],
    ];
    $("traffic-tiles").replaceChildren(...tiles.map(([label, value]) => {
      const div = document.createElement("div"), dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = label; dd.textContent = value; div.append(dt, dd); return div;
    }));
    barChart("traffic-chart", t.seconds.map(s => ({
      value: s.requests - s.errors, alert: s.errors, maxLabel: s.requests + " req/s",
      title: new Date(s.at * 1000).toLocaleTimeString() + ": " + s.requests + " requests, " + s.errors + " errors",
    })), "Chat requests per second over the last minute");
    panelState("traffic", t.latency_ms ? "" : "No chat request in the last minute.");
  } catch (error) { panelState("traffic", "Traffic unavailable: " + error.message, true); }
}

function sourceNote(source, what) {
  return source === "bff" ? `Langfuse not configured — showing bff's own ${what}.` : "";
}
function dependencyNote(error) {
  return /langfuse/i.test(error.message) ? "Langfuse unreachable: " + error.message : error.message;
}
function rangeDays() {
  const days = Number($("spend-range").value), to = new Date(), from = new Date(to.getTime() - (days - 1) * 86400000);
  return { from: from.toISOString().slice(0, 10), to: to.toISOString().slice(0, 10), days };
}

async function loadSpend() {
  const range = rangeDays();
  try {
    const usage = await get("/observability/usage", { from: range.from, to: range.to, user_id: view.user });
    fill("usage", usage.rows.map(r => [r.day, r.task ? r.model + " · " + r.task : r.model, number(r.requests), r.errors === null ? "?" : number(r.errors), number(r.input_tokens), number(r.output_tokens), usd(r.cost_usd)]),
      "No usage in this range.");
    const perDay = new Map();
    for (let i = 0; i < range.days; i++) perDay.set(new Date(Date.parse(range.from) + i * 86400000).toISOString().slice(0, 10), 0);
    for (const r of usage.rows) perDay.set(r.day, (perDay.get(r.day) || 0) + r.cost_usd);
    barChart("spend-chart", [...perDay].map(([day, cost]) => ({ value: cost, maxLabel: usd(cost), title: day + ": " + usd(cost) })),
      "Cost per day from " + range.from + " to " + range.to);
    fill("by-task", usage.by_task.map(t => [t.task ? "Open WebUI: " + t.task.replaceAll("_", " ") : "people (what they typed)", number(t.requests), number(t.total_tokens), usd(t.cost_usd)]),
      "No usage in this range.");
    panelState("spend", sourceNote(usage.source, "ledger"));
  } catch (error) {
    panelState("spend", dependencyNote(error), true);
    fill("usage", []); fill("by-task", []); $("spend-chart").replaceChildren(); // no stale rows under an error
  }
  if (!view.admin) return;
  try {
    const teams = await get("/observability/usage/groups", { from: range.from, to: range.to });
    fill("team-spend", teams.groups.map(g => [g.group, number(g.requests), number(g.total_tokens), usd(g.cost_usd)]),
      "No group has usage in this range (groups come from Open WebUI).");
    panelState("teams", "");
  } catch (error) { panelState("teams", error.message, true); fill("team-spend", []); }
  try {
    const top = await get("/observability/usage/users", { from: range.from, to: range.to });
    fill("top", top.users.map(u => {
      const who = person(u.name, u.email, u.user_id);
      const button = Object.assign(document.createElement("button"), { type: "button", textContent: "filter" });
      button.setAttribute("aria-label", "Show only " + (u.name || u.user_id));
      button.addEventListener("click", () => { $("filter-user").value = u.user_id; applyFilter(); });
      who.append(" ", button);
      return [who, number(u.requests), number(u.total_tokens), usd(u.cost_usd)];
    }), "No usage in this range.");
    $("known-users").replaceChildren(...top.users.map(u => Object.assign(document.createElement("option"), { value: u.user_id, label: u.name || u.user_id })));
    panelState("top-users", "From bff's own ledger, kept across restarts and shared by replicas (Langfuse cannot rank users).");
  } catch (error) { panelState("top-users", error.message, true); fill("top", []); }
}

function quotaRows(scope) {
  const l = scope.limits, u = scope.used, r = scope.remaining, when = t => new Date(t).toLocaleString();
  return [
    [scope.scope, "requests / minute", l.requests_per_minute, u.requests_this_minute, r.requests_this_minute, when(scope.resets.minute)],
    [scope.scope, "tasks / minute", l.tasks_per_minute, u.tasks_this_minute, r.tasks_this_minute, when(scope.resets.minute)],
    [scope.scope, "tokens / minute", l.tokens_per_minute, u.tokens_this_minute, r.tokens_this_minute, when(scope.resets.minute)],
    [scope.scope, "concurrent requests", l.concurrent_requests, u.concurrent_requests, r.concurrent_requests, ""],
    [scope.scope, "spend today", usd(l.daily_budget_usd), usd(u.spent_today_usd), usd(r.today_usd), when(scope.resets.day)],
    [scope.scope, "spend this month", usd(l.monthly_budget_usd), usd(u.spent_this_month_usd), usd(r.this_month_usd), when(scope.resets.month)],
    [scope.scope, "tokens today", l.daily_tokens, u.tokens_today, r.tokens_today, when(scope.resets.day)],
    [scope.scope, "tokens this month", l.monthly_tokens, u.tokens_this_month, r.tokens_this_month, when(scope.resets.month)],
  ].map(row => row.map(v => v === null || v === "–" ? "no limit" : v));
}
async function loadQuota() {
  try {
    const quota = await get("/observability/quota", view.user ? { user_id: view.user, role: view.role } : {});
    fill("quotas", quota.scopes.flatMap(quotaRows), "Nothing counted yet.");
    panelState("quota", `${quota.user_id} (${quota.role || "no role"}), counted ${quota.backend === "redis" ? "in Redis across replicas" : "in this bff"}`);
  } catch (error) { panelState("quota", "Quotas unavailable: " + error.message, true); fill("quotas", []); }
}

async function loadTraces() {
  try {
    const page = await get("/observability/traces", { limit: 50, user_id: view.user });
    fill("trace-rows", page.data.map(t => {
      const failed = t.level === "ERROR" || t.level === "WARNING";
      const link = t.url ? Object.assign(document.createElement("a"), { href: t.url, textContent: "Langfuse", rel: "noopener noreferrer", target: "_blank" }) : "";
      return [t.start_time ? new Date(t.start_time).toLocaleString() : "", person(t.user_name, t.user_email, t.user_id), t.task ? t.model + " · " + t.task : t.model, ms(t.latency_ms), number(t.total_tokens), usd(t.cost_usd),
        cell(failed ? t.status_message || t.level : "ok", failed ? t.level.toLowerCase() : ""), cell(link)];
    }), "No trace yet.");
    panelState("traces", sourceNote(page.source, "latest requests"));
  } catch (error) { panelState("traces", dependencyNote(error), true); fill("trace-rows", []); }
}

async function whoAmI() {
  try {
    const me = await get("/observability/me");
    view.admin = me.permissions.includes("observability:all");
    const name = me.name ? `${me.name} (${me.user_id})` : me.user_id;
    $("viewer").textContent = `Signed in as ${name}, ${me.role || "no role"}. ` +
      (view.admin ? "You see everyone's traces, spend and quotas." : "You see your own traces, spend and quotas.");
    $("error").textContent = "";
  } catch (error) {
    $("viewer").textContent = "Not signed in.";
    $("error").textContent = error.status === 401
      ? "Sign in to Open WebUI on this host (same address, any port), or paste a token below."
      : error.message;
    $("token-box").open = true;
    return false;
  }
  $("admin-filter").hidden = !view.admin;
  $("top-users").hidden = !view.admin;
  $("teams").hidden = !view.admin;
  return true;
}

const loadFast = () => Promise.all([loadHealth(), loadTraffic()]);
const loadSlow = () => Promise.all([loadSpend(), loadQuota(), loadTraces()]);
async function start() {
  if (await whoAmI()) await Promise.all([loadFast(), loadSlow()]);
  document.body.dataset.loaded = "true"; // every panel has drawn its first answer (tests wait on it)
}
function applyFilter(event) {
  if (event) event.preventDefault();
  view.user = $("filter-user").value.trim();
  view.role = $("filter-role").value;
  loadSlow();
}

$("admin-filter").addEventListener("submit", applyFilter);
$("filter-clear").addEventListener("click", () => { $("filter-user").value = ""; applyFilter(); });
$("spend-range").addEventListener("change", loadSpend);
$("pause").addEventListener("click", () => {
  view.paused = !view.paused;
  $("pause").setAttribute("aria-pressed", String(view.paused));
  $("pause").textContent = view.paused ? "Resume refresh" : "Pause refresh";
});
$("token").value = view.token;
$("use-token").addEventListener("click", () => {
  view.token = $("token").value.trim();
  sessionStorage.setItem("bff-token", view.token);
  start();
});
setInterval(() => { if (!view.paused && !document.hidden) loadFast(); }, FAST_MS);
setInterval(() => { if (!view.paused && !document.hidden) loadSlow(); }, SLOW_MS);
start();
