// Baige console: a small single-page app over the REST API, served by `baige up` itself
// (no CDN, no build step). The token stays in this tab's sessionStorage.
"use strict";

const state = { token: sessionStorage.getItem("baige-token") || "", timer: null, stream: null };
const main = document.getElementById("main");
const COLORS = { allocated: "#2f5bea", idle: "#d0d5dd", failed: "#d92d20", cordoned: "#d98c00" };

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function phase(p) { return `<span class="phase ${esc(p)}">${esc(p)}</span>`; }
function ago(ts) {
  if (!ts) return "-";
  const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
  if (s >= 86400) return `${Math.floor(s / 86400)}d`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h`;
  if (s >= 60) return `${Math.floor(s / 60)}m`;
  return `${s}s`;
}
function clock(ts) { return new Date(ts * 1000).toLocaleTimeString(); }

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.token}` }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { logout("Your token was refused; log in again."); throw new Error("401"); }
  const text = await response.text();
  const body = text ? (response.headers.get("content-type") || "").includes("json") ? JSON.parse(text) : text : null;
  if (!response.ok) {
    const problems = (body && body.problems || []).map((p) =>
      `  ${p.line ? "line " + p.line + ": " : ""}${p.field ? p.field + ": " : ""}${p.message}`).join("\n");
    throw new Error(`${(body && body.error) || response.statusText}${problems ? "\n" + problems : ""}`);
  }
  return body;
}

function logout(message) {
  sessionStorage.removeItem("baige-token");
  state.token = "";
  renderLogin(message || "");
}

function renderLogin(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  main.innerHTML = `<div class="card login"><h1>Log in</h1>
    <p class="muted">Paste an API token (the admin token is in ~/.baige/admin-token on the machine running <code>baige up</code>).</p>
    <input id="token" type="password" placeholder="baige_…" autocomplete="off">
    <button class="primary" id="login">Log in</button><p class="error" id="login-error">${esc(message)}</p></div>`;
  const submit = async () => {
    state.token = document.getElementById("token").value.trim();
    try {
      await api("/v1/overview");
      sessionStorage.setItem("baige-token", state.token);
      location.hash = location.hash && location.hash !== "#/login" ? location.hash : "#/overview";
      route();
    } catch (err) {
      if (err.message !== "401") document.getElementById("login-error").textContent = err.message;
    }
  };
  document.getElementById("login").onclick = submit;
  document.getElementById("token").onkeydown = (e) => { if (e.key === "Enter") submit(); };
}

function stackedBar(parts, total) {
  const spans = parts.map(([name, value]) =>
    `<span style="width:${total ? (100 * value / total).toFixed(2) : 0}%;background:${COLORS[name]}" title="${name}: ${value}"></span>`).join("");
  const legend = parts.map(([name, value]) => `<span><i style="background:${COLORS[name]}"></i>${name} ${+value.toFixed(2)}</span>`).join("");
  return `<div class="bar">${spans}</div><div class="legend">${legend}</div>`;
}

function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) { const h = s / 3600; return `${+h.toFixed(h < 10 ? 1 : 0)} h`; }
  if (s >= 60) return `${Math.round(s / 60)} min`;
  return `${s} s`;
}
function hhmm(ts, seconds) {
  const d = new Date(ts * 1000), two = (n) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}${seconds ? ":" + two(d.getSeconds()) : ""}`;
}

// A step chart over time, shared by the overview and a service's page: `rows` are
// {ts, live, <key>: value} oldest first (the last one live), `series` the lines drawn
// ({key, label, color, width, dash, fill}); a null value is a gap. A sample holds until the
// next one, so lines are steps, not slopes that invent gradual change. `marks` are
// [{ts, label}] drawn as thin vertical lines (events on the time axis).
function timeChart({ rows, series, since, now, id, windowId, what, summary, marks = [], yfmt = (v) => `${v}`, empty }) {
  now = now || Date.now() / 1000;
  const stored = rows.filter((r) => !r.live);
  if (!rows.length) return `<p class="muted">${esc(empty || "No samples yet: the controller records one every 30 s.")}</p>`;
  const first = stored.length ? stored[0].ts : now;
  const full = since != null && first - since < 120;  // samples reach back to the window's start
  const window = full ? `last ${span(now - since)}` : stored.length
    ? `since the first sample, ${span(now - first)} ago` : "now (the first sample comes within 30 s)";
  const t0 = full ? since : Math.min(first, now - 20), t1 = Math.max(now, t0 + 20);
  const w = 1000, h = 240, left = 46, right = 16, top = 14, bottom = 30;
  const values = rows.flatMap((r) => series.map((s) => r[s.key])).filter((v) => v != null);
  const ymax = Math.max(1, ...values);
  const x = (t) => left + (w - left - right) * (t - t0) / (t1 - t0);
  const y = (v) => top + (h - top - bottom) * (1 - v / (ymax * 1.05));
  const points = (key) => {
    let out = "", prev = null;
    for (const r of rows) {
      if (r[key] == null) { prev = null; continue; }
      const here = `${x(r.ts).toFixed(1)},${y(r[key]).toFixed(1)}`;
      out += prev == null ? ` M${here}` : ` L${x(r.ts).toFixed(1)},${y(prev).toFixed(1)} L${here}`;
      prev = r[key];
    }
    return out.trim();
  };
  const lines = series.map((s) => {
    const d = points(s.key);
    if (!d) return "";
    const known = rows.filter((r) => r[s.key] != null);
    const area = s.fill ? `<path fill="${s.color}" fill-opacity="0.12" stroke="none" d="${d} L${x(known[known.length - 1].ts).toFixed(1)},${y(0).toFixed(1)} L${x(known[0].ts).toFixed(1)},${y(0).toFixed(1)} Z"/>` : "";
    const dots = rows.length < 40 ? known.map((r) => `<circle cx="${x(r.ts).toFixed(1)}" cy="${y(r[s.key]).toFixed(1)}" r="3" fill="${s.color}"/>`).join("") : "";
    return `${area}<path data-series="${esc(s.key)}" fill="none" stroke="${s.color}" stroke-width="${s.width || 2}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""} d="${d}"/>${dots}`;
  }).join("");
  const steps = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  const step = steps.find((st) => (t1 - t0) / st <= 8) || 86400;
  let ticks = "";
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    ticks += `<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${top}" y2="${h - bottom}" stroke="#eef0f3"/>
      <text x="${x(t).toFixed(1)}" y="${h - bottom + 16}" font-size="11" fill="#667085" text-anchor="middle">${hhmm(t, step < 60)}</text>`;
  }
  const ystep = [1, 2, 4, 5, 8, 10, 16, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000].find((st) => ymax / st <= 5) || Math.ceil(ymax / 5);
  for (let v = 0; v <= ymax * 1.05; v += ystep) {
    ticks += `<line x1="${left}" x2="${w - right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eef0f3"/>
      <text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" font-size="11" fill="#667085" text-anchor="end">${esc(yfmt(v))}</text>`;
  }
  const flags = marks.filter((m) => m.ts >= t0 && m.ts <= t1).map((m) => `<line class="mark" x1="${x(m.ts).toFixed(1)}" x2="${x(m.ts).toFixed(1)}" y1="${top}" y2="${h - bottom}" stroke="#d98c00" stroke-dasharray="2 3"><title>${esc(hhmm(m.ts, true))} ${esc(m.label)}</title></line>`).join("");
  const legend = series.map((s) => `<span><i style="background:${s.color}"></i>${esc(s.label)}${s.dash ? " (dashed)" : ""}</span>`).join("");
  return `<svg class="chart"${id ? ` id="${id}"` : ""} viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(what)} over ${esc(window)}">
    ${ticks}<line x1="${left}" x2="${w - right}" y1="${h - bottom}" y2="${h - bottom}" stroke="#98a2b3"/>${flags}${lines}
    <text x="${w - right}" y="${top + 2}" font-size="11" fill="#667085" text-anchor="end">${esc(summary || "")}</text>
  </svg><div class="legend">${legend}<span${windowId ? ` id="${windowId}"` : ""}>${esc(what)}, ${esc(window)} (${esc(hhmm(t0))}–${esc(hhmm(now))}; sampled every 30 s, last point live)</span></div>`;
}

// Overview samples come one per accelerator type: sum the types at each time.
function byTime(history, keys) {
  const byTs = new Map();
  for (const s of history) {
    const row = byTs.get(s.ts) || Object.assign({ ts: s.ts, live: s.live }, Object.fromEntries(keys.map((k) => [k, 0])));
    for (const k of keys) row[k] += s[k] || 0;
    byTs.set(s.ts, row);
  }
  return [...byTs.values()].sort((a, b) => a.ts - b.ts);
}
const round2 = (v) => +v.toFixed(2);

// Cards over time (all types summed); the last point is the live state the cards show.
function chart(history, since, now) {
  const rows = byTime(history, ["capacity", "allocated", "running"]);
  const last = rows[rows.length - 1];
  return timeChart({ rows, since, now, id: "chart-cards", windowId: "chart-window", what: "cards",
    empty: "No samples yet: the controller records usage every 30 s.",
    summary: last && `now: ${round2(last.allocated)} allocated, ${round2(last.capacity)} schedulable`,
    series: [
      { key: "capacity", label: "capacity (schedulable cards)", color: "#98a2b3" },
      { key: "allocated", label: "allocated", color: "#2f5bea", width: 4, fill: true },
      { key: "running", label: "running", color: "#12a150", dash: "6 4" },
    ] });
}

// How cards shifted between training jobs and inference services (all types summed).
function kindsChart(history, since, now) {
  const rows = byTime(history, ["training", "inference"]);
  const last = rows[rows.length - 1];
  return timeChart({ rows, since, now, id: "chart-kinds", windowId: "kinds-window", what: "cards by kind",
    empty: "No samples yet: the controller records usage every 30 s.",
    summary: last && `now: ${round2(last.training)} training, ${round2(last.inference)} inference`,
    series: [
      { key: "training", label: "training jobs", color: "#7a5af8", width: 3, fill: true },
      { key: "inference", label: "inference services", color: "#e04f16", width: 3, fill: true },
    ] });
}

const REASONS = {
  NeverFits: "bigger than the whole cluster or its queue's limit: waits until nodes or quota are added",
  InsufficientCapacity: "not enough free cards right now",
  QuotaExceeded: "its queue is at its quota or limit",
  TopologyUnsatisfiable: "no topology domain has room for the whole gang",
  NoMatchingNodes: "no node matches its type, pool or selector",
  Reserved: "next in line: cards are being held for it",
  BlockedByReservation: "free cards are held for a job ahead of it",
  BlockedByQueueHead: "waits behind an earlier job in a strict-FIFO queue",
  UnknownQueue: "its queue does not exist",
  NotConsidered: "not looked at by the scheduler yet",
  Restarting: "waiting to be placed again after a failure",
  Preempted: "stopped to make room; waits to be placed again",
  Evicted: "moved off a draining node; waits to be placed again",
};

async function renderOverview() {
  const o = await api("/v1/overview");
  const cards = o.accelerators.map((a) => `<div class="card"><div class="muted">${esc(a.type)}</div>
      <div class="big">${+a.allocated.toFixed(2)} / ${a.total}</div><div class="muted">cards allocated</div>
      ${stackedBar([["allocated", a.allocated], ["idle", a.idle], ["failed", a.failed], ["cordoned", a.cordoned]], a.total)}</div>`).join("")
    || `<div class="card muted">No accelerators registered yet.</div>`;
  const phases = Object.entries(o.workloads).map(([k, v]) => `${phase(k)} ${v}`).join(" &nbsp; ") || "none";
  const waiting = o.pending_workloads || {};
  const reasons = Object.entries(o.pending_reasons).map(([k, v]) => {
    const refs = (waiting[k] || []).map((r) => `<a href="#/${r.kind === "InferenceService" ? "services" : "jobs"}/${encodeURIComponent(r.id)}" title="${esc(r.id)}">${esc(r.name)}</a>`);
    const more = v > refs.length ? ` <span class="muted">and ${v - refs.length} more</span>` : "";
    return `<tr><td><b>${esc(k)}</b>${REASONS[k] ? `<div class="muted">${esc(REASONS[k])}</div>` : ""}</td><td>${v}</td><td>${refs.join(", ")}${more}</td></tr>`;
  }).join("");
  const nodes = Object.entries(o.nodes).map(([k, v]) => `${phase(k)} ${v}`).join(" &nbsp; ") || "none";
  const faults = o.faults.map((e) => `<tr><td>${esc(clock(e.ts))}</td><td>${esc(e.object_id)}</td><td>${esc(e.type)}</td><td class="reason">${esc(e.message)}</td></tr>`).join("");
  main.innerHTML = `<h1>Overview</h1><div class="grid">${cards}</div>
    <h2>Cards allocated over time</h2>${chart(o.history, o.history_since, o.now)}
    <h2>Cards: training vs inference</h2>${kindsChart(o.history, o.history_since, o.now)}
    <div class="grid" style="margin-top:14px">
      <div class="card"><div class="muted">Workloads</div><p>${phases}</p><div class="muted">restarts so far: ${o.restarts}</div></div>
      <div class="card"><div class="muted">Nodes</div><p>${nodes}</p></div>
      <div class="card"><div class="muted">Effective training time</div>${o.ettr != null
        ? `<div class="big">${pct(o.ettr)}</div><div class="muted">mean over ${o.training.length} running job(s) reporting through <code>baige run</code></div>`
        : `<p class="muted">Reported by jobs started with <code>baige run</code>; none reporting yet.</p>`}</div>
    </div>
    ${o.training.length ? `<h2>Training progress (lowest effective time first)</h2><table><tr><th>job</th><th>queue</th><th>ETTR</th><th>step</th><th>steps/s</th><th>restarts</th><th>lost steps</th></tr>${o.training.map((t) => `<tr><td><a href="#/jobs/${encodeURIComponent(t.id)}">${esc(t.name)}</a></td><td>${esc(t.queue)}</td><td>${t.ettr != null ? pct(t.ettr) : ""}</td><td>${t.last_step}</td><td>${t.steps_per_s != null ? t.steps_per_s.toFixed(2) : ""}</td><td>${t.restarts}</td><td>${t.lost_steps}</td></tr>`).join("")}</table>` : ""}
    <h2>Why work is waiting</h2>${reasons ? `<table id="waiting"><tr><th>reason</th><th>count</th><th>workloads (oldest first)</th></tr>${reasons}</table>` : `<p class="muted">Nothing is pending.</p>`}
    <h2>Open faults (last 6 hours)</h2>${faults ? `<table><tr><th>time</th><th>object</th><th>what</th><th>message</th></tr>${faults}</table>` : `<p class="muted">No faults.</p>`}`;
}

async function renderQueues() {
  const queues = await api("/v1/queues");
  const depth = (q) => { let d = 0, p = q.parent; const byName = Object.fromEntries(queues.map((x) => [x.name, x]));
    while (p && byName[p] && d < 10) { d++; p = byName[p].parent; } return d; };
  const rows = queues.map((q) => {
    const usage = Object.entries(q.usage).map(([t, u]) => {
      const borrowed = Math.max(0, u.used - u.guaranteed), lent = Math.max(0, u.guaranteed - u.used);
      return `${esc(t)}: used ${+u.used.toFixed(2)} of ${u.guaranteed} guaranteed${u.limit != null ? `, limit ${u.limit}` : ""}${borrowed ? `, <b>borrowing ${+borrowed.toFixed(2)}</b>` : ""}${lent && u.guaranteed ? `, lending up to ${+lent.toFixed(2)}` : ""}`;
    }).join("<br>") || `<span class="muted">no quotas</span>`;
    return `<tr><td style="padding-left:${10 + 18 * depth(q)}px">${esc(q.name)}</td><td>${esc(q.tenant || "")}</td><td>${q.weight}</td><td>${usage}</td><td>${q.running}</td><td>${q.pending}</td></tr>`;
  }).join("");
  main.innerHTML = `<h1>Queues</h1><table><tr><th>queue</th><th>tenant</th><th>weight</th><th>cards per type</th><th>running</th><th>pending</th></tr>${rows}</table>`;
}

const PAGE = 100;

async function renderNodes(params) {
  const offset = +(params.get("offset") || 0);
  const nodes = await api(`/v1/nodes?limit=${PAGE + 1}&offset=${offset}`);
  const more = nodes.length > PAGE;
  const rows = nodes.slice(0, PAGE).map((n) => `<tr data-node="${esc(n.name)}"><td>${esc(n.name)}</td><td>${n.devices}× ${esc(n.accelerator_type)}</td>
      <td>${+n.allocated.toFixed(2)}</td><td>${phase(n.health)}</td><td>${ago(n.last_heartbeat)}</td><td>${esc(n.topology.join("/"))}</td>
      <td>${n.workloads.map((w) => `<a href="#/${w.startsWith("svc-") ? "services" : "jobs"}/${esc(w)}">${esc(w)}</a>`).join(" ")}</td>
      <td class="reason">${esc(n.reason)}</td><td>${n.cordoned ? `<button data-act="uncordon">Uncordon</button>` : `<button data-act="cordon">Cordon</button>`}</td></tr>`).join("");
  main.innerHTML = `<h1>Nodes</h1><div class="toolbar">${pager("#/nodes", offset, more, Math.min(PAGE, nodes.length))}</div>
    <table><tr><th>node</th><th>accelerators</th><th>allocated</th><th>health</th><th>heartbeat</th><th>topology</th><th>running here</th><th>reason</th><th></th></tr>${rows}</table>
    <p class="error" id="action-error"></p>`;
  main.querySelectorAll("button[data-act]").forEach((b) => b.onclick = async () => {
    const name = b.closest("tr").dataset.node;
    try { await api(`/v1/nodes/${encodeURIComponent(name)}/${b.dataset.act}`, { method: "POST" }); route(); }
    catch (err) { document.getElementById("action-error").textContent = err.message; }
  });
}

function pager(base, offset, more, shown) {
  const sep = base.includes("?") ? "&" : "?";
  const range = shown ? `${offset + 1}–${offset + shown}` : "none";
  return `${offset > 0 ? `<a href="${base}${sep}offset=${Math.max(0, offset - PAGE)}">← previous</a>` : ""}
    <span class="muted">${range}</span>${more ? `<a href="${base}${sep}offset=${offset + PAGE}">next →</a>` : ""}`;
}

function size(w) {
  const a = w.spec.accelerators || {};
  if (a.count === 0) {  // a CPU-only workload: what host CPU it asks for
    const cpu = (w.spec.resources || {}).cpu;
    return `${w.replicas}× ${cpu ? esc(String(cpu)) + " " : ""}CPU`;
  }
  return `${w.replicas}× ${a.share != null ? a.share : a.count || 1} ${esc(w.accelerator_type || (a.types || []).join("/"))}`;
}

async function renderWorkloads(kind, params) {
  const offset = +(params.get("offset") || 0);
  const filter = new URLSearchParams({ limit: PAGE + 1, offset });
  if (params.get("phase")) filter.set("phase", params.get("phase"));
  if (params.get("queue")) filter.set("queue", params.get("queue"));
  const items = await api(`/v1/${kind}?${filter}`);
  const more = items.length > PAGE;
  const services = kind === "services";
  const rows = items.slice(0, PAGE).map((w) => `<tr data-id="${esc(w.id)}"><td><a href="#/${kind}/${esc(w.id)}">${esc(w.id)}</a></td><td>${esc(w.name)}</td>
      <td>${esc(w.queue)}</td><td>${phase(w.phase)}</td><td>${size(w)}</td>${services ? serviceCells(w) : ""}<td>${w.restarts}</td><td>${ago(w.created_at)}</td>
      <td class="reason">${esc(w.reason)}</td></tr>`).join("");
  const title = kind === "jobs" ? "Jobs" : "Services";
  main.innerHTML = `<h1>${title}</h1><div class="toolbar">
      <select id="phase"><option value="">any phase</option>${["pending", "admitted", "running", "succeeded", "failed", "cancelled"].map((p) => `<option ${params.get("phase") === p ? "selected" : ""}>${p}</option>`).join("")}</select>
      <input id="queue" placeholder="queue" value="${esc(params.get("queue") || "")}"> <button id="filter">Filter</button>
      ${pager(`#/${kind}?phase=${encodeURIComponent(params.get("phase") || "")}&queue=${encodeURIComponent(params.get("queue") || "")}`, offset, more, Math.min(PAGE, items.length))}</div>
    <table><tr><th>id</th><th>name</th><th>queue</th><th>phase</th><th>size</th>${services ? `<th title="running / wanted">replicas</th><th title="requests per second through the gateway, last 15 s">req/s</th>` : ""}<th>restarts</th><th>age</th><th>why</th></tr>${rows || `<tr><td colspan="${services ? 10 : 8}" class="muted">None.</td></tr>`}</table>`;
  document.getElementById("filter").onclick = () => {
    location.hash = `#/${kind}?phase=${encodeURIComponent(document.getElementById("phase").value)}&queue=${encodeURIComponent(document.getElementById("queue").value)}`;
  };
}

function pct(x) { return `${(100 * x).toFixed(1)}%`; }

// A service's row in the list: replicas running of wanted, and its gateway's req/s now.
function serviceCells(w) {
  const up = w.replicas_running ?? w.running_replicas.filter((r) => r.state === "running").length;
  const qps = w.load ? +w.load.requests_per_second.toFixed(2) : null;
  return `<td class="replicas">${up} / ${w.replicas}</td><td class="qps">${qps == null ? `<span class="muted" title="not served through the gateway yet">–</span>` : qps}</td>`;
}

// What a client runs against the stable endpoint: an engine speaks OpenAI's completions;
// a command's server has paths of its own. The token stays a variable, never the user's own.
function curlExample(w, base) {
  const engine = w.spec.engine;
  const auth = `-H "Authorization: Bearer $BAIGE_TOKEN"`;
  if (engine) {
    const body = JSON.stringify({ model: engine.served_model_name || engine.model, prompt: "hello", max_tokens: 16 });
    return `curl -s ${auth} -H "Content-Type: application/json" \\\n  -d ${shellWord(body)} ${base}/v1/completions`;
  }
  return `curl -s ${auth} ${base}/   # then your server's own path, e.g. /predict`;
}

function secondsMs(v) { return v == null ? null : +(1000 * v).toFixed(1); }

// A service's page: the stable endpoint, replicas wanted vs running, load and latency over
// time, and what changed its size. Refreshed in place (refreshDetail) every 15 s.
async function renderServiceLoad(id, w) {
  const box = document.getElementById("service-load");
  if (!box) return;
  const l = await api(`/v1/services/${encodeURIComponent(id)}/load?hours=6`);
  state.loadAt = Date.now();
  const base = `${location.origin}${l.endpoints[l.endpoints.length - 1]}`;
  const rows = l.history.map((p) => Object.assign({}, p, {
    p50: secondsMs(p.latency_p50_seconds), p99: secondsMs(p.latency_p99_seconds) }));
  const marks = l.events.map((e) => ({ ts: e.ts, label: `${e.type}: ${e.message}` }));
  const c = l.current;
  const ev = l.events.map((e) => `<tr><td>${esc(clock(e.ts))}</td><td>${esc(e.type)}</td><td class="reason">${esc(e.message)}</td></tr>`).join("");
  box.innerHTML = `<h2>Endpoint</h2>
    <div class="field" id="endpoint"><code>${esc(location.origin + l.endpoints[0])}</code> <span class="muted">or</span> <code>${esc(base)}</code>
      <span class="muted">(stable across rescales and restarts; the same token as the API)</span></div>
    <div class="toolbar"><pre class="spec curl" id="curl">${esc(curlExample(w, base))}</pre><button id="copy-curl" title="copy to the clipboard">Copy</button></div>
    <div class="grid" id="load-now">
      <div class="card"><div class="muted">Replicas</div><div class="big">${l.running} / ${l.replicas}</div><div class="muted">running / wanted</div></div>
      <div class="card"><div class="muted">Requests</div><div class="big">${c ? +c.requests_per_second.toFixed(2) : "–"} req/s</div><div class="muted">${c ? `${c.in_flight} in flight, ${c.requests_total} served, ${c.errors_total} failed` : "not served through the gateway yet"}</div></div>
      <div class="card"><div class="muted">Latency (last 15 s)</div><div class="big">${c && c.latency_p50_seconds != null ? `${secondsMs(c.latency_p50_seconds)} ms` : "–"}</div><div class="muted">p50${c && c.latency_p99_seconds != null ? `, p99 ${secondsMs(c.latency_p99_seconds)} ms` : ""}</div></div>
    </div>
    <h2>Replicas over time</h2>${timeChart({ rows, since: l.history_since, now: l.now, id: "chart-replicas", what: "replicas", marks,
      summary: `now: ${l.running} running, ${l.replicas} wanted`, series: [
        { key: "wanted", label: "wanted", color: "#2f5bea", width: 3, fill: true },
        { key: "running", label: "running", color: "#12a150", dash: "6 4" }] })}
    <h2>Load</h2>${timeChart({ rows, since: l.history_since, now: l.now, id: "chart-load", what: "load", marks,
      summary: c ? `now: ${+c.requests_per_second.toFixed(2)} req/s, ${c.in_flight} in flight` : "", series: [
        { key: "requests_per_second", label: "requests/s", color: "#2f5bea", width: 3, fill: true },
        { key: "in_flight", label: "in flight", color: "#d98c00" }] })}
    <h2>Latency (ms)</h2>${timeChart({ rows, since: l.history_since, now: l.now, id: "chart-latency", what: "latency", yfmt: (v) => `${v} ms`, series: [
        { key: "p50", label: "p50", color: "#12a150", width: 3 },
        { key: "p99", label: "p99", color: "#d92d20" }] })}
    <h2>Scaling events (last 6 hours)</h2>${ev ? `<table id="scaling"><tr><th>time</th><th>event</th><th>message</th></tr>${ev}</table>` : `<p class="muted" id="scaling">No scaling in the last 6 hours.</p>`}`;
  document.getElementById("copy-curl").onclick = async (e) => {
    const text = document.getElementById("curl").textContent;
    try { await navigator.clipboard.writeText(text); e.target.textContent = "Copied"; }
    catch (err) { getSelection().selectAllChildren(document.getElementById("curl")); e.target.textContent = "Selected: press Ctrl+C"; }
  };
}

// What `baige run` inside the job reported: pace, faults, restarts, what they cost.
function runtimeCard(rt) {
  if (!rt) return "";
  const faults = Object.entries(rt.faults).map(([k, v]) => `${esc(k)} ${v}`).join(", ") || "none";
  const secs = (x) => (x == null ? "–" : `${x.toFixed(1)} s`);
  return `<div class="grid" id="runtime">
    <div class="card"><div class="muted">Training (baige run)</div><div class="big">step ${rt.last_step}</div>
      <div class="muted">${esc(rt.state)}${rt.steps_per_s != null ? `, ${rt.steps_per_s.toFixed(2)} steps/s` : ""}${rt.loss != null ? `, loss ${rt.loss.toPrecision(4)}` : ""}</div></div>
    <div class="card"><div class="muted">Effective training time</div><div class="big">${rt.ettr != null ? pct(rt.ettr) : "–"}</div>
      <div class="muted">lost steps ${rt.lost_steps}${rt.restored_from ? `, restored from ${esc(rt.restored_from)}` : ""}</div></div>
    <div class="card"><div class="muted">Faults</div><div class="big">${rt.restarts} restart(s)</div>
      <div class="muted">${faults}; detection ≤ ${secs(rt.max_detection_s)}, recovery ≤ ${secs(rt.max_recovery_s)}${rt.stragglers ? `; ${rt.stragglers} straggler report(s)` : ""}</div></div>
  </div>`;
}

// A job placed on several accelerator types: how its global batch is shared among them.
function splitCard(split) {
  if (!split) return "";
  const parts = split.parts.map((p) => `<tr><td>${esc(p.type)}</td><td>${p.ranks.join(", ")}</td>
      <td>${p.micro_batches.join(", ")}</td><td>${p.samples}</td></tr>`).join("");
  return `<div id="split"><h2>Split across types</h2>
    <p class="muted">global batch ${split.global_batch} in micro-batches of ${split.micro_batch_size}; every replica reads it from the file named by BAIGE_HETERO_PLAN</p>
    <table><tr><th>type</th><th>ranks</th><th>micro-batches per rank</th><th>samples</th></tr>${parts}</table></div>`;
}

// "Admitted" + "admitted (backfilled): …" reads as one phrase, not "Admitted: admitted: …".
function why(code, reason) {
  const text = String(reason || "");
  const lower = text.toLowerCase(), c = String(code || "").toLowerCase();
  if (!code) return esc(text);
  if (!text) return `<b>${esc(code)}</b>`;
  if (c && (lower.startsWith(c + ":") || lower.startsWith(c + " ") || lower.startsWith(c + "("))) {
    return `<b>${esc(code)}</b>${esc(text.slice(c.length))}`;
  }
  return `<b>${esc(code)}</b> — ${esc(text)}`;
}

function shellWord(word) {
  const w = String(word);
  if (/^[\w@%+=:,./-]+$/.test(w)) return w;
  if (w.includes("'") && !/["$`\\!]/.test(w)) return `"${w}"`;
  return `'${w.replace(/'/g, "'\\''")}'`;
}

// Specs are small trees of scalars, lists and maps: YAML-ish text, readable at a glance.
function yamlish(value, indent = "") {
  const scalar = (v) => (v === null || v === undefined ? "null" : typeof v === "string"
    ? (/^[\w./@:+-][\w ./@:+,=-]*$/.test(v) && !/^(true|false|null|yes|no|[\d.]+)$/i.test(v) ? v : JSON.stringify(v)) : String(v));
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    if (value.every((v) => v === null || typeof v !== "object")) return `[${value.map(scalar).join(", ")}]`;
    return value.map((v) => `\n${indent}- ${yamlish(v, indent + "  ").replace(/^\n\s*/, "")}`).join("");
  }
  if (value && typeof value === "object") {
    const entries = Object.entries(value).filter(([, v]) => v !== null && v !== undefined);
    if (!entries.length) return "{}";
    return entries.map(([k, v]) => {
      const inner = yamlish(v, indent + "  ");
      return `\n${indent}${k}:${inner.startsWith("\n") ? inner : " " + inner}`;
    }).join("");
  }
  return scalar(value);
}

async function renderWorkload(kind, id) {
  const w = await api(`/v1/${kind}/${encodeURIComponent(id)}`);
  const events = await api(`/v1/${kind}/${encodeURIComponent(id)}/events`);
  const replicas = w.running_replicas.map((r) => `<tr><td>${r.index}</td><td>${esc(r.node)}</td><td>${esc(r.devices.join(","))}${r.share !== 1 ? ` <span class="muted">(${r.share} of a card)</span>` : ""}</td>
      <td>${phase(r.state)}</td><td>${r.exit_code ?? ""}</td><td>${r.port ? `127.0.0.1:${r.port}` : ""}</td></tr>`).join("");
  const ev = events.map((e) => `<tr><td>${esc(clock(e.ts))}</td><td>${esc(e.type)}</td><td class="reason">${esc(e.message)}</td></tr>`).join("");
  const active = ["pending", "admitted", "running"].includes(w.phase);
  main.innerHTML = `<h1>${esc(w.name)} <span class="muted">${esc(w.id)}</span></h1>
    <p>${phase(w.phase)} in queue <b>${esc(w.queue)}</b>, ${size(w)}, replica restarts ${w.restarts}${w.exit_code != null ? `, exit code ${w.exit_code}` : ""}</p>
    <p class="reason" id="why">${why(w.reason_code, w.reason)}</p>
    ${w.spec.command ? `<div class="field"><span class="muted">command</span> <code id="command">${esc((w.spec.command || []).map(shellWord).join(" "))}</code></div>` : ""}
    <details id="spec"><summary>Spec (as submitted)</summary><pre class="spec">${esc(yamlish(w.spec).replace(/^\n/, ""))}</pre></details>
    ${runtimeCard(w.runtime)}
    ${splitCard(w.split)}
    ${kind === "services" ? `<div id="service-load"></div>` : ""}
    <div class="toolbar">${active ? `<button class="danger" id="cancel">Cancel</button>` : ""}
      ${kind === "services" && active ? `<input id="replicas" type="number" min="0" value="${w.replicas}" style="width:80px"><button id="scale">Scale</button>` : ""}
      <span class="error" id="action-error"></span></div>
    <h2>Replicas</h2>${replicas ? `<table><tr><th>#</th><th>node</th><th>devices</th><th>state</th><th>exit</th><th>endpoint</th></tr>${replicas}</table>` : `<p class="muted">No replicas yet.</p>`}
    <h2>Logs</h2><pre class="logs" id="logs" data-placeholder="1">${w.phase === "pending" && !replicas ? "(nothing yet: no replica has started)" : ""}</pre>
    <h2>Events</h2><table><tr><th>time</th><th>event</th><th>message</th></tr>${ev}</table>`;
  const act = async (path, body) => {
    try { await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: body && JSON.stringify(body) }); route(); }
    catch (err) { document.getElementById("action-error").textContent = err.message; }
  };
  const cancel = document.getElementById("cancel");
  if (cancel) cancel.onclick = () => act(`/v1/${kind}/${encodeURIComponent(id)}/cancel`);
  const scale = document.getElementById("scale");
  if (scale) scale.onclick = () => act(`/v1/services/${encodeURIComponent(id)}/scale`, { replicas: +document.getElementById("replicas").value });
  if (kind === "services") await renderServiceLoad(id, w);
  tailLogs(kind, id, active);
}

async function tailLogs(kind, id, follow) {
  const pre = document.getElementById("logs");
  const controller = new AbortController();
  state.stream = controller;
  try {
    const response = await fetch(`/v1/${kind}/${encodeURIComponent(id)}/logs?tail=500&follow=${follow}`,
      { headers: { Authorization: `Bearer ${state.token}` }, signal: controller.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (pre.dataset.placeholder) { pre.textContent = ""; delete pre.dataset.placeholder; }
      pre.textContent += decoder.decode(value, { stream: true });
      pre.scrollTop = pre.scrollHeight;
    }
    if (!pre.textContent) pre.textContent = "(no output yet)";
  } catch (err) {
    if (err.name !== "AbortError") pre.textContent += `\n[log stream ended: ${err.message}]`;
  }
}

async function renderEvents() {
  const events = await api("/v1/events?limit=200");
  main.innerHTML = `<h1>Events</h1><table><tr><th>time</th><th>object</th><th>event</th><th>message</th></tr>${events.map((e) =>
    `<tr><td>${esc(clock(e.ts))}</td><td>${esc(e.object_kind)} ${esc(e.object_id)}</td><td>${esc(e.type)}</td><td class="reason">${esc(e.message)}</td></tr>`).join("")}</table>`;
}

const TEMPLATE = `kind: TrainingJob
name: my-job
queue: default
replicas: 1
accelerators:
  count: 1
  types: [h100]
command: [python3, -c, "print('hello from Baige')"]
`;

function renderSubmit() {
  main.innerHTML = `<h1>Submit</h1><p class="muted">A TrainingJob or an InferenceService, as YAML. Errors name the line and field.</p>
    <textarea id="spec" spellcheck="false">${esc(sessionStorage.getItem("baige-draft") || TEMPLATE)}</textarea>
    <div class="toolbar" style="margin-top:10px"><button class="primary" id="submit">Submit</button></div><p class="error" id="submit-error"></p>`;
  document.getElementById("submit").onclick = async () => {
    const text = document.getElementById("spec").value;
    sessionStorage.setItem("baige-draft", text);
    const kind = /^kind:\s*InferenceService\s*$/m.test(text) ? "services" : "jobs";
    try {
      const w = await api(`/v1/${kind}`, { method: "POST", body: text, headers: { "Content-Type": "application/yaml", "X-Baige-Source": "console" } });
      location.hash = `#/${kind}/${w.id}`;
    } catch (err) { document.getElementById("submit-error").textContent = err.message; }
  };
}

async function route() {
  if (state.stream) { state.stream.abort(); state.stream = null; }
  clearTimeout(state.timer);
  if (!state.token) return renderLogin("");
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  if (!document.getElementById("who").textContent) {
    api("/v1/me").then((me) => { document.getElementById("who").textContent = me.admin ? `${me.name} (admin)` : `${me.name} · tenant ${me.tenant}`; }).catch(() => {});
  }
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === `#/${parts[0]}`));
  try {
    if (parts[0] === "queues") await renderQueues();
    else if (parts[0] === "nodes") await renderNodes(params);
    else if ((parts[0] === "jobs" || parts[0] === "services") && parts[1]) await renderWorkload(parts[0], parts[1]);
    else if (parts[0] === "jobs" || parts[0] === "services") await renderWorkloads(parts[0], params);
    else if (parts[0] === "events") await renderEvents();
    else if (parts[0] === "submit") return renderSubmit();
    else await renderOverview();
  } catch (err) {
    if (err.message !== "401") main.innerHTML = `<p class="error">${esc(err.message)}</p>`;
    return;
  }
  // pages refresh themselves; a detail page with a live log stream does not need to
  if (!(parts[1] && (parts[0] === "jobs" || parts[0] === "services"))) state.timer = setTimeout(route, 5000);
  else state.timer = setTimeout(refreshDetail, 3000);
}

async function refreshDetail() {
  const [path] = location.hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  if (!(parts[1] && (parts[0] === "jobs" || parts[0] === "services"))) return;
  try {
    const w = await api(`/v1/${parts[0]}/${encodeURIComponent(parts[1])}`);
    const shown = document.querySelector("main .phase");
    if (shown && shown.textContent !== w.phase) return route();
    if (parts[0] === "services" && Date.now() - (state.loadAt || 0) >= 15000) await renderServiceLoad(parts[1], w);
    state.timer = setTimeout(refreshDetail, 3000);
  } catch (err) { /* the next navigation shows the error */ }
}

document.getElementById("logout").onclick = () => logout("");
window.addEventListener("hashchange", route);
route();
