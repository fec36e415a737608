"use strict";
const input = document.getElementById("token");
input.value = sessionStorage.getItem("bff-token") || "";
function cell(value) { const td = document.createElement("td"); td.textContent = value ?? ""; return td; }
function fill(id, rows) {
  const body = document.getElementById(id); body.replaceChildren();
  for (const values of rows) { const tr = document.createElement("tr"); values.forEach(v => tr.append(v instanceof Node ? v : cell(v))); body.append(tr); }
}
async function get(path) {
  const headers = input.value ? { Authorization: "Bearer " + input.value } : {};
  const response = await fetch(path, { headers, credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw new Error(path + ": " + (body.error ? body.error.message : response.status));
  return body;
}
async function load() {
  sessionStorage.setItem("bff-token", input.value);
  document.getElementById("error").textContent = "";
  try {
    const health = await get("/observability/health");
    fill("deps", health.dependencies.map(d => {
      const status = cell(d.status); status.className = d.status === "up" ? "up" : d.status === "down" ? "down" : "muted";
      return [d.name, status, d.latency_ms == null ? "" : d.latency_ms + " ms", d.detail];
    }));
    fill("sinks", health.telemetry.map(s => [s.sink, s.exported, s.retried, s.spooled, s.replayed, s.rejected, s.dropped, s.last_error]));
    const usage = await get("/observability/usage");
    fill("usage", usage.rows.map(r => [r.day, r.model, r.requests, r.input_tokens, r.output_tokens, r.cost_usd.toFixed(6)]));
    const traces = await get("/observability/traces?limit=50").catch(error => ({ data: [], note: error.message }));
    if (traces.note) document.getElementById("error").textContent = traces.note;
    fill("traces", traces.data.map(t => [t.start_time, t.user_id, t.model, t.latency_ms == null ? "" : Math.round(t.latency_ms), t.total_tokens, t.cost_usd, t.level]));
  } catch (error) {
    document.getElementById("error").textContent = error.message;
  }
}
document.getElementById("load").addEventListener("click", load);
load();
