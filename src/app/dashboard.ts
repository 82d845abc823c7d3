/**
 * The dashboard at `/_edgecache/`: one page, no build step, no external resource. The page
 * itself holds no data; it polls the admin API (`stats` every second, `keys`, `changes` and,
 * in proxy mode with a manifest, `manifest`, with query caches given, `queries` every two),
 * so it sees exactly what the admin API's access rules let it see. When the API
 * answers 401 it asks for the token (or a tenant's key) and keeps it in sessionStorage.
 * Charts are inline SVG. Every value from the node goes into the page as text, never as
 * markup: keys are URLs anyone could request.
 */
import { hitRate } from "../core/stats.ts";

const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgecache</title>
<link rel="icon" href="data:,">
<style>
  :root { font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f5f6f8; }
  body { margin: 0; padding: 16px 24px; }
  h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 15px; margin: 0 0 8px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 12px 16px; }
  .figures { display: flex; gap: 24px; flex-wrap: wrap; margin-bottom: 16px; }
  .figure b { display: block; font-size: 22px; } .figure span { color: #5b6474; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eef0f4; vertical-align: top; }
  td.key { font-family: ui-monospace, monospace; word-break: break-all; cursor: pointer; color: #1f5fbf; }
  td.url { font-family: ui-monospace, monospace; word-break: break-all; }
  .legend span { margin-right: 12px; } .muted { color: #5b6474; }
  svg { width: 100%; height: 140px; background: #fbfcfd; border: 1px solid #eef0f4; }
  #login { display: none; margin-bottom: 16px; } input { font: inherit; padding: 3px 6px; }
  button { font: inherit; padding: 3px 10px; cursor: pointer; }
  #error { color: #b42318; }
</style>
</head>
<body>
<h1>edgecache <span class="muted" id="node"></span></h1>
<form id="login" class="card">
  <label>Admin token or tenant key: <input id="token" type="password" autocomplete="off" size="40"></label>
  <button type="submit">Open</button>
</form>
<p id="error"></p>
<div class="figures card">
  <div class="figure"><b id="f-reads">-</b><span>reads/s</span></div>
  <div class="figure"><b id="f-hitrate">-</b><span>hit rate</span></div>
  <div class="figure"><b id="f-p50">-</b><span>source p50</span></div>
  <div class="figure"><b id="f-p95">-</b><span>source p95</span></div>
  <div class="figure"><b id="f-keys">-</b><span>keys</span></div>
  <div class="figure"><b id="f-inv">-</b><span>invalidated</span></div>
  <div class="figure" id="f-capture-figure" hidden><b id="f-capture">-</b><span>captured changes applied</span></div>
</div>
<div class="grid">
  <div class="card"><h2>Hit rate by tier</h2><svg id="chart-hits" viewBox="0 0 600 140" preserveAspectRatio="none"></svg><div class="legend" id="legend-hits"></div></div>
  <div class="card"><h2>Reads per second and source latency (p95, ms)</h2><svg id="chart-load" viewBox="0 0 600 140" preserveAspectRatio="none"></svg><div class="legend" id="legend-load"></div></div>
  <div class="card" id="tenant-card" hidden><h2>Hit rate by tenant</h2><svg id="chart-tenants" viewBox="0 0 600 140" preserveAspectRatio="none"></svg><div class="legend" id="legend-tenants"></div></div>
  <div class="card" id="manifest-card" hidden><h2>Manifest <span class="muted" id="manifest-progress"></span></h2><table><thead><tr><th>url</th><th>state</th><th>detail</th></tr></thead><tbody id="manifest"></tbody></table></div>
  <div class="card" id="queries-card" hidden><h2>Query shapes</h2><p class="muted" id="queries-summary"></p><table><thead><tr><th>cache</th><th>followed by</th><th>query</th><th>why not finer</th><th>stored</th></tr></thead><tbody id="queries"></tbody></table></div>
  <div class="card"><h2>Top keys</h2><table><thead><tr><th>key</th><th>hits</th><th>ttl</th></tr></thead><tbody id="top-keys"></tbody></table></div>
  <div class="card"><h2>Recent invalidations</h2><table><thead><tr><th>when</th><th>cause</th><th>keys</th><th>rules</th></tr></thead><tbody id="changes"></tbody></table></div>
  <div class="card" id="inspector"><h2>Entry inspector</h2>
    <form id="inspect"><input id="inspect-key" size="50" placeholder="GET /v1/users?limit=5"> <button type="submit">Inspect</button></form>
    <table><tbody id="entry"></tbody></table>
    <p><button id="invalidate" type="button" disabled>Invalidate this key</button> <span id="invalidated" class="muted"></span></p>
  </div>
</div>
<script>
"use strict";
const base = location.pathname.replace(/\\/?$/, "/");
const COLORS = ["#1f5fbf", "#d97706", "#059669", "#9333ea", "#dc2626"];
const HISTORY = 120;
let token = sessionStorage.getItem("edgecache-token") || "";
let previous, history = [];
document.getElementById("node").textContent = location.host;

async function api(path, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (token) headers.authorization = "Bearer " + token;
  const res = await fetch(base + path, { ...init, headers });
  if (res.status === 401) {
    document.getElementById("login").style.display = "block";
    throw new Error("the node wants a token");
  }
  const body = await res.json();
  if (!res.ok) throw new Error((body.error && body.error.message) || "HTTP " + res.status);
  return body;
}
const text = (id, value) => { document.getElementById(id).textContent = value; };
function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = String(value);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function fill(id, rows, render) {
  const body = document.getElementById(id);
  body.replaceChildren();
  for (const r of rows) { const tr = document.createElement("tr"); render(tr, r); body.appendChild(tr); }
}
const ms = (v) => v < 10 ? v.toFixed(2) + " ms" : Math.round(v) + " ms";
const pct = (v) => v === undefined || v === null ? "-" : (100 * v).toFixed(1) + "%";
// The stats' one definition (core/stats.ts), applied here to each second's reads.
const hitRate = ${hitRate.toString()};
function seconds(s) {
  if (s === undefined) return "-";
  if (s < 0) return "expired";
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function line(svg, series, max) {
  const w = 600, h = 140;
  svg.replaceChildren();
  series.forEach((s, i) => {
    const points = s.values.map((v, x) => v === undefined ? undefined :
      [(x * w) / (HISTORY - 1), h - 4 - (Math.min(v, max) / (max || 1)) * (h - 8)]);
    let d = "", pen = false;
    for (const p of points) {
      if (!p) { pen = false; continue; }
      d += (pen ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1) + " ";
      pen = true;
    }
    if (!d) return;
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", d.trim());
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", COLORS[i % COLORS.length]);
    path.setAttribute("stroke-width", "2");
    path.setAttribute("vector-effect", "non-scaling-stroke");
    path.dataset.series = s.name;
    svg.appendChild(path);
  });
}
function legend(id, series) {
  const el = document.getElementById(id);
  el.replaceChildren();
  series.forEach((s, i) => {
    const span = document.createElement("span");
    span.style.color = COLORS[i % COLORS.length];
    const last = s.values[s.values.length - 1];
    span.textContent = "\\u25A0 " + s.name + (last === undefined ? "" : ": " + s.format(last));
    el.appendChild(span);
  });
}
const pad = (values) => Array(Math.max(0, HISTORY - values.length)).fill(undefined).concat(values.slice(-HISTORY));

async function pollStats() {
  const s = await api("stats");
  const now = performance.now();
  if (previous) {
    const dt = (now - previous.at) / 1000;
    const reads = s.hits + s.staleHits + s.misses + s.bypasses;
    const before = previous.s.hits + previous.s.staleHits + previous.s.misses + previous.s.bypasses;
    const sample = { reads: (reads - before) / dt, p95: s.sourceLatencyMs.p95, tiers: {} };
    // A second without reads keeps the last rate: the line stays where it was. Served from
    // the cache: fresh and stale hits; from the source: misses and bypasses (as s.hitRate).
    const last = history[history.length - 1] || { tiers: {} };
    const served = (x) => x.hits + x.staleHits;
    const missed = (x) => x.misses + x.bypasses;
    const since = (x, p) => hitRate(served(x) - served(p), missed(x) - missed(p));
    sample.all = since(s, previous.s) ?? last.all;
    for (const t of s.tiers) {
      const p = previous.s.tiers.find((x) => x.name === t.name);
      sample.tiers[t.name] = (p && hitRate(t.hits - p.hits, t.misses - p.misses)) ?? last.tiers[t.name];
    }
    // The operator's view of a node of tenants: each tenant's reads.
    sample.tenants = {};
    for (const t of s.tenants || []) {
      const p = (previous.s.tenants || []).find((x) => x.name === t.name);
      sample.tenants[t.name] = (p && since(t, p)) ?? (last.tenants || {})[t.name];
    }
    history.push(sample);
    if (history.length > HISTORY) history.shift();
    text("f-reads", sample.reads.toFixed(1));
    const hitSeries = [{ name: "all reads", values: pad(history.map((h) => h.all)), format: pct }]
      .concat(s.tiers.map((t) => ({ name: t.name, values: pad(history.map((h) => h.tiers[t.name])), format: pct })));
    line(document.getElementById("chart-hits"), hitSeries, 1);
    legend("legend-hits", hitSeries);
    if (s.tenants) {
      document.getElementById("tenant-card").hidden = false;
      const tenantSeries = s.tenants.map((t) => ({ name: t.name, values: pad(history.map((h) => h.tenants[t.name])), format: pct }));
      line(document.getElementById("chart-tenants"), tenantSeries, 1);
      legend("legend-tenants", tenantSeries);
    }
    const readSeries = { name: "reads/s", values: pad(history.map((h) => h.reads)), format: (v) => v.toFixed(1) };
    const latency = { name: "source p95", values: pad(history.map((h) => h.p95)), format: ms };
    const top = Math.max(1, ...history.map((h) => Math.max(h.reads, h.p95)));
    line(document.getElementById("chart-load"), [readSeries, latency], top);
    legend("legend-load", [readSeries, latency]);
  }
  previous = { s, at: now };
  text("f-hitrate", pct(s.hitRate));
  text("f-p50", ms(s.sourceLatencyMs.p50));
  text("f-p95", ms(s.sourceLatencyMs.p95));
  text("f-keys", s.indexedKeys);
  text("f-inv", s.invalidations);
  // A node on a shared log shows its name (what a manifest's keeper names); one following
  // change capture, the changes made around it that it applied.
  if (s.log && s.log.node) text("node", location.host + " · node " + s.log.node);
  if (s.capture) {
    document.getElementById("f-capture-figure").hidden = false;
    text("f-capture", s.capture.applied);
  }
  manifestShown = s.manifest !== undefined;
  queriesShown = s.queryCaches !== undefined;
  document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
}

async function pollKeys() {
  const { keys } = await api("keys");
  keys.sort((a, b) => b.hits - a.hits);
  fill("top-keys", keys.slice(0, 15), (tr, k) => {
    cell(tr, k.key, "key").addEventListener("click", () => inspect(k.key));
    cell(tr, k.hits);
    cell(tr, seconds(k.ttlSeconds));
  });
}

// The proxy's manifest (when it has one): its progress, and the URLs not cached, worst first.
async function pollManifest() {
  if (!manifestShown) return;
  const m = await api("manifest");
  document.getElementById("manifest-card").hidden = false;
  text("manifest-progress", m.cached + " of " + m.total + " cached, " + m.failing + " failing" +
    (m.uncacheable ? ", " + m.uncacheable + " uncacheable" : "") + (m.pending ? ", " + m.pending + " pending" : ""));
  const order = { failing: 0, uncacheable: 1, pending: 2, cached: 3 };
  const rows = m.urls.slice().sort((a, b) => order[a.state] - order[b.state]).slice(0, 15);
  const now = Date.now();
  fill("manifest", rows, (tr, u) => {
    cell(tr, u.url, "url");
    cell(tr, u.state);
    if (u.state === "cached") cell(tr, "fresh " + seconds(Math.floor((u.freshUntil - now) / 1000)));
    else if (u.state === "pending") cell(tr, "-");
    else cell(tr, u.error + (u.nextFetch ? "; next try in " + seconds(Math.max(0, Math.ceil((u.nextFetch - now) / 1000))) : ""));
  });
}
let manifestShown = false;

// The application's query caches (given to the admin API as queryCaches): how exactly each
// query shape is followed and, below that, why; the most stored first.
const FOLLOWED = { row: "row", predicate: "predicate and window", join: "join along keys", table: "table" };
async function pollQueries() {
  if (!queriesShown) return;
  const { caches } = await api("queries");
  document.getElementById("queries-card").hidden = false;
  text("queries-summary", caches.map((q) => q.name + ": " + q.registrations.exact + " exact, " +
    q.registrations.widened + " widened, " + q.registrations.table + " by table; writes by " + q.writes).join("; "));
  const rows = caches.flatMap((q) => q.shapes.map((s) => ({ cache: q.name, s })))
    .sort((a, b) => b.s.stored - a.s.stored).slice(0, 30);
  fill("queries", rows, (tr, { cache, s }) => {
    tr.dataset.granularity = s.granularity;
    cell(tr, cache);
    cell(tr, FOLLOWED[s.granularity] || s.granularity);
    cell(tr, s.sql, "url");
    cell(tr, s.reasons.join(", ") || "-");
    cell(tr, s.stored);
  });
}
let queriesShown = false;

async function pollChanges() {
  const { changes } = await api("changes");
  fill("changes", changes.slice(0, 15), (tr, c) => {
    cell(tr, new Date(c.at).toLocaleTimeString());
    const what = c.cause === "write"
      ? (c.writes || []).map((w) => w.table + " " + w.op).join(", ")
      : [c.named && c.named.keys ? c.named.keys + " key(s)" : "", ...((c.named && c.named.tags) || []).map((t) => "tag " + t),
         ...((c.named && c.named.prefix) || []).map((p) => "prefix " + p)].filter(Boolean).join(", ");
    cell(tr, c.cause + ": " + what);
    cell(tr, c.removed + (c.patched ? " (" + c.patched + " patched in place)" : ""));
    const rules = Object.entries(c.rules).filter(([, n]) => n > 0).map(([r, n]) => r + " " + n);
    cell(tr, (c.fallback ? "table fallback; " : "") + (rules.join(", ") || "-"));
  });
}

let inspected;
async function inspect(key) {
  inspected = key;
  document.getElementById("inspect-key").value = key;
  text("invalidated", "");
  const rows = [];
  try {
    const e = await api("keys/" + encodeURIComponent(key));
    rows.push(["key", e.key], ["tiers", e.tiers.map((t) => t.tier + (t.present ? " \\u2713" : " \\u2717")).join("  ")],
      ["age", seconds(e.ageSeconds)], ["ttl", seconds(e.ttlSeconds)], ["hits", e.hits],
      ["size", e.bytes === undefined ? "-" : e.bytes + " B"], ["depends on", (e.tags || []).join(" ") || "-"]);
    for (const l of e.lists || []) {
      const where = l.filters.map((f) => f.column + " " + f.op + " " + JSON.stringify(f.value)).join(" and ") || "all rows";
      rows.push(["list", l.table + " where " + where + ", offset " + l.offset + " limit " + l.limit + " (" + l.count + " held)"]);
    }
    document.getElementById("invalidate").disabled = false;
  } catch (err) {
    rows.push(["", err.message]);
    document.getElementById("invalidate").disabled = true;
  }
  fill("entry", rows, (tr, [name, value]) => { cell(tr, name); cell(tr, value).dataset.field = name; });
}

document.getElementById("inspect").addEventListener("submit", (ev) => {
  ev.preventDefault();
  inspect(document.getElementById("inspect-key").value.trim());
});
document.getElementById("invalidate").addEventListener("click", async () => {
  const r = await api("invalidate", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: inspected }) });
  // Not inspected again: the key is gone, and asking would be a 404.
  fill("entry", [["key", inspected], ["tiers", "not cached"]], (tr, [name, value]) => {
    cell(tr, name); cell(tr, value).dataset.field = name;
  });
  document.getElementById("invalidate").disabled = true;
  text("invalidated", "invalidated " + r.invalidated);
  await guarded(pollChanges);
});
document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("edgecache-token", token);
  document.getElementById("login").style.display = "none";
  tick();
});

async function guarded(work) {
  try { await work(); text("error", ""); } catch (err) { text("error", err.message); }
}
let ticks = 0;
function tick() {
  guarded(pollStats);
  if (ticks++ % 2 === 0) { guarded(pollKeys); guarded(pollChanges); guarded(pollManifest); guarded(pollQueries); }
}
tick();
setInterval(tick, 1000);
</script>
</body>
</html>
`;

/** The page, with a policy that allows nothing but itself and requests to its own origin. */
export function dashboardPage(): Response {
  return new Response(DASHBOARD_HTML, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy":
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'",
    },
  });
}
