// The redkit operations dashboard: plain JavaScript, no build step, no framework.
// Live data comes from GET /v1/dashboard/events (Server-Sent Events read with fetch, so the
// API key travels in the Authorization header); everything else is the ordinary HTTP API.
// The key is kept in sessionStorage (this tab only), never localStorage.
"use strict";

const KEY_ITEM = "redkit-key";
const ACCESS = { read: 1, write: 2, admin: 3 };
const SVG = "http://www.w3.org/2000/svg";
const PAGE = 20;

const state = {
  key: sessionStorage.getItem(KEY_ITEM) || "",
  me: null,
  snap: null,
  snapAt: 0,
  stream: null,
  // name -> [{t, completed_total, failed_total}] from successive snapshots (last 10 min)
  queueHistory: new Map(),
  // observed mode / status / breaker changes while the page is open
  timeline: [],
  firstStats: {},
  lastSeen: null,
  policyHistory: new Map(),
  view: { name: "overview", args: [] },
  jobs: { state: "waiting", offset: 0 },
  keys: { ns: "", pattern: "*", cursors: [""], page: 0 },
  renderTimer: 0,
};

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "value") { el.value = v; if ("defaultValue" in el) el.defaultValue = v; }
      else if (k === "checked") el.checked = !!v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function button(label, onclick, opts = {}) {
  return h("button", { type: "button", class: opts.class, "aria-label": opts.aria, onclick, "data-action": opts.action }, label);
}

function table(caption, headers, rows, opts = {}) {
  const thead = h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col" }, x))));
  const body = h("tbody");
  for (const r of rows) body.appendChild(r instanceof Node ? r : h("tr", null, r.map((c, i) => (i === 0 && opts.rowHeader ? h("th", { scope: "row" }, c) : h("td", null, c)))));
  // Each cell carries its column's name, so a narrow screen can show rows as stacked cards.
  for (const tr of body.rows) [...tr.cells].forEach((c, i) => { if (typeof headers[i] === "string" && headers[i]) c.dataset.label = headers[i]; });
  if (!rows.length) body.appendChild(h("tr", null, h("td", { colspan: headers.length, class: "empty" }, opts.empty || "nothing yet")));
  return h("div", { class: "scroll" }, h("table", { class: (opts.class || "") + (headers.length > 4 ? " stack" : ""), "data-table": opts.id }, h("caption", { class: caption ? "" : "sr-only" }, caption || opts.label || ""), thead, body));
}

function card(title, ...children) {
  return h("section", { class: "card", "aria-label": title }, h("h2", null, title), children);
}

function wide(el) {
  el.classList.add("wide");
  return el;
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

function badge(text, kind) {
  return h("span", { class: "badge " + (kind || text) }, text);
}

const fmt = {
  n(x) { return x === undefined || x === null ? "–" : Number(x).toLocaleString("en"); },
  pct(x) { return x === undefined || x === null || isNaN(x) ? "–" : (x * 100).toFixed(1) + " %"; },
  bytes(x) {
    if (x === undefined || x === null) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; let v = Number(x);
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v) + " " + u[i];
  },
  dur(ms) {
    if (ms === undefined || ms === null) return "–";
    const neg = ms < 0; let v = Math.abs(ms) / 1000;
    let out;
    if (v < 1) out = Math.round(v * 1000) + " ms";
    else if (v < 120) out = v.toFixed(v < 10 ? 1 : 0) + " s";
    else if (v < 7200) out = Math.round(v / 60) + " min";
    else if (v < 172800) out = (v / 3600).toFixed(1) + " h";
    else out = (v / 86400).toFixed(1) + " d";
    return neg ? "-" + out : out;
  },
  time(ms) { return ms ? new Date(ms).toLocaleString("en-GB") : "–"; },
  ago(ms) { return ms ? fmt.dur(Date.now() - ms) + " ago" : "–"; },
  rate(x) { return x === null || x === undefined ? "–" : (x < 10 ? x.toFixed(2) : x.toFixed(0)); },
};

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

function headers(extra) {
  const hd = Object.assign({}, extra || {});
  if (state.key) hd.Authorization = "Bearer " + state.key;
  return hd;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body !== undefined ? { "Content-Type": "application/json" } : null) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!r.ok) {
    const err = data && data.error ? data.error : { code: String(r.status), message: typeof data === "string" ? data : r.statusText };
    throw new ApiError(r.status, err.code, err.message);
  }
  return data;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- scopes

function may(area, name, access) {
  const me = state.me;
  if (!me) return false;
  if (me.scopes === null || me.scopes === undefined) return true;
  return me.scopes.some((sc) =>
    (sc.area === null || sc.area === area) &&
    (sc.prefix ? String(name).startsWith(sc.name) : sc.name === name || sc.name === "*") &&
    ACCESS[sc.access] >= ACCESS[access]);
}

// Some name in the area may be acted on with this access.
function mayAny(area, access) {
  const me = state.me;
  if (!me) return false;
  if (!me.scopes) return true;
  return me.scopes.some((sc) => (sc.area === null || sc.area === area) && ACCESS[sc.access] >= ACCESS[access]);
}

const ops = () => may("ops", "*", "read");

// ---------------------------------------------------------------- notices and confirmation

let noticeTimer = 0;
function notice(text, kind) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.className = "notice " + (kind || "info");
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 10000 : 5000);
}

function failed(e) {
  notice((e.status ? e.status + " " : "") + (e.code ? e.code + ": " : "") + e.message, "error");
}

function confirmAction(text, okLabel) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  ok.textContent = okLabel || "Confirm";
  return new Promise((resolve) => {
    const done = (v) => {
      ok.removeEventListener("click", yes); cancel.removeEventListener("click", no);
      dlg.removeEventListener("cancel", no);
      if (dlg.open) dlg.close();
      resolve(v);
    };
    const yes = () => done(true);
    const no = (ev) => { if (ev) ev.preventDefault(); done(false); };
    ok.addEventListener("click", yes); cancel.addEventListener("click", no);
    dlg.addEventListener("cancel", no);
    dlg.showModal();
    cancel.focus();
  });
}

// Runs an action; a confirmation first when asked; refreshes the view after.
async function act(label, fn, confirmText) {
  if (confirmText && !(await confirmAction(confirmText, label))) return;
  try {
    const msg = await fn();
    notice(msg || label + ": done", "ok");
  } catch (e) {
    failed(e);
  }
  render();
}

// ---------------------------------------------------------------- the key

function setKey(k) {
  state.key = k;
  if (k) sessionStorage.setItem(KEY_ITEM, k); else sessionStorage.removeItem(KEY_ITEM);
  start();
}

document.getElementById("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("key");
  setKey(input.value.trim());
  input.value = "";
});
document.getElementById("key-forget").addEventListener("click", () => setKey(""));

function showWho() {
  const who = document.getElementById("who");
  const form = document.getElementById("key-form");
  const me = state.me;
  if (!me) { who.textContent = state.key ? "key refused" : "a key is needed"; form.classList.remove("has-key"); return; }
  if (!me.keys_required) { who.textContent = "no key needed (loopback server without keys)"; form.classList.add("no-keys"); return; }
  form.classList.remove("no-keys");
  form.classList.toggle("has-key", !!state.key);
  who.textContent = "key: " + (me.label || "?") + " · " + (me.scopes || []).map((sc) => (sc.area || "*") + ":" + (sc.prefix ? sc.name + "*" : sc.name) + ":" + sc.access).join(", ");
}

// ---------------------------------------------------------------- live stream

async function connect() {
  if (state.stream) state.stream.abort();
  const ctl = new AbortController();
  state.stream = ctl;
  const live = document.getElementById("live");
  while (!ctl.signal.aborted) {
    try {
      const r = await fetch("/v1/dashboard/events", { headers: headers({ Accept: "text/event-stream" }), signal: ctl.signal, cache: "no-store" });
      if (r.status === 401 || r.status === 403) { live.textContent = "not allowed (" + r.status + ")"; return; }
      if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
      live.textContent = "live";
      live.className = "live on";
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true }).replace(/\r\n/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          let event = "message"; const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (event === "snapshot" && data.length) onSnapshot(JSON.parse(data.join("\n")));
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    live.textContent = "reconnecting…";
    live.className = "live off";
    await new Promise((res) => setTimeout(res, 3000));
  }
}

function onSnapshot(snap) {
  state.snap = snap;
  state.snapAt = Date.now();
  const t = snap.t_ms;
  for (const q of snap.queues || []) {
    let hist = state.queueHistory.get(q.name);
    if (!hist) { hist = []; state.queueHistory.set(q.name, hist); }
    hist.push({ t, completed_total: q.counts.completed_total, failed_total: q.counts.failed_total });
    while (hist.length > 300) hist.shift();
  }
  const br = snap.health && snap.health.breaker ? snap.health.breaker.state : null;
  const seen = { mode: snap.mode, status: snap.status, breaker: br };
  if (state.lastSeen) {
    // The breaker's own transitions come from the server (recent_transitions); mode and
    // status changes are recorded as this page sees them.
    for (const k of ["mode", "status"]) {
      if (seen[k] !== state.lastSeen[k] && seen[k] !== null && state.lastSeen[k] !== null) {
        state.timeline.unshift({ at_ms: t, what: k, from: state.lastSeen[k], to: seen[k], reason: "seen by this page" });
      }
    }
    state.timeline.length = Math.min(state.timeline.length, 50);
  }
  state.lastSeen = seen;
  header();
  // Views that show live data are redrawn; forms keep their state (redraw skips a focused form).
  const live = { overview: 1, queues: 1, queue: 1 };
  if (live[state.view.name]) liveRender();
}

function header() {
  const snap = state.snap;
  const mode = document.getElementById("mode");
  const status = document.getElementById("status");
  if (!snap) return;
  mode.textContent = snap.mode; mode.className = "badge " + snap.mode;
  mode.setAttribute("aria-label", "mode: " + snap.mode);
  status.textContent = String(snap.status); status.className = "badge " + snap.status;
  status.setAttribute("aria-label", "status: " + snap.status);
}

// Per-minute rate of a counter over the last `windowMs` of a history.
function ratePerMin(hist, field, windowMs) {
  if (!hist || hist.length < 2) return null;
  const last = hist[hist.length - 1];
  let first = hist[0];
  for (const p of hist) { if (last.t - p.t <= windowMs) { first = p; break; } }
  const dt = last.t - first.t;
  if (dt <= 0) return null;
  return Math.max(0, last[field] - first[field]) * 60000 / dt;
}

// Per-interval deltas of a field, for a sparkline.
function deltas(hist, field) {
  const out = [];
  for (let i = 1; i < (hist || []).length; i++) {
    const dt = (hist[i].t - hist[i - 1].t) || 1;
    out.push({ t: hist[i].t, v: Math.max(0, hist[i][field] - hist[i - 1][field]) * 60000 / dt });
  }
  return out;
}

// ---------------------------------------------------------------- charts (SVG via DOM)

function chart(title, series, opts = {}) {
  const W = opts.width || 320, H = opts.height || 90, P = 4;
  const all = series.flatMap((sr) => sr.points.map((p) => p.v));
  const max = Math.max(opts.min || 1, ...all);
  const xs = series.flatMap((sr) => sr.points.map((p) => p.t));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "chart", role: "img", "aria-label": title + ": " + series.map((sr) => sr.label + " now " + fmt.rate(sr.points.length ? sr.points[sr.points.length - 1].v : 0) + (opts.unit ? " " + opts.unit : "")).join(", ") });
  const t = s("title"); t.textContent = title; svg.appendChild(t);
  for (let g = 1; g <= 3; g++) svg.appendChild(s("line", { x1: 0, x2: W, y1: (H * g) / 4, y2: (H * g) / 4, class: "grid" }));
  series.forEach((sr, i) => {
    if (!sr.points.length) return;
    const pts = sr.points.map((p) => {
      const x = x1 > x0 ? P + ((p.t - x0) / (x1 - x0)) * (W - 2 * P) : W / 2;
      const y = H - P - (p.v / max) * (H - 2 * P);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    if (opts.area && i === 0) {
      svg.appendChild(s("polygon", { points: `${P},${H - P} ${pts.join(" ")} ${W - P},${H - P}`, class: "area s" + i }));
    }
    svg.appendChild(s("polyline", { points: pts.join(" "), class: "line s" + i }));
  });
  const legend = h("div", { class: "legend" }, series.map((sr, i) => h("span", { class: "key s" + i }, sr.label + " ", h("b", null, fmt.rate(sr.points.length ? sr.points[sr.points.length - 1].v : null)), opts.unit ? " " + opts.unit : "")), h("span", { class: "max" }, "max " + fmt.rate(max) + (opts.unit ? " " + opts.unit : "")));
  return h("figure", { class: "chartbox" }, h("figcaption", null, title), svg, legend);
}

function spark(points, label) {
  const W = 90, H = 22;
  const max = Math.max(1, ...points.map((p) => p.v));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "spark", role: "img", "aria-label": label });
  if (points.length > 1) {
    const n = points.length;
    svg.appendChild(s("polyline", { class: "line s0", points: points.map((p, i) => `${((i / (n - 1)) * (W - 2) + 1).toFixed(1)},${(H - 1 - (p.v / max) * (H - 2)).toFixed(1)}`).join(" ") }));
  }
  return svg;
}

// ---------------------------------------------------------------- routing

const views = {};

function parseHash() {
  const parts = (location.hash || "#overview").slice(1).split("/").map(decodeURIComponent);
  const name = views[parts[0]] ? parts[0] : "overview";
  return { name, args: parts.slice(1) };
}

window.addEventListener("hashchange", () => {
  const prev = state.view;
  state.view = parseHash();
  if (prev.name !== state.view.name || prev.args[0] !== state.view.args[0]) { state.jobs = { state: "waiting", offset: 0 }; }
  render(true);
});

let renderSeq = 0;
let lastRendered = "";

function editedControls(root) {
  const out = [];
  for (const el of root.querySelectorAll("input[id], select[id], textarea[id]")) {
    const edited = el.type === "checkbox" ? el.checked !== el.defaultChecked
      : el.tagName === "SELECT" ? [...el.options].some((o) => o.selected !== o.defaultSelected)
        : el.value !== el.defaultValue;
    if (edited) out.push([el.id, el.value, el.checked]);
  }
  return out;
}
async function render(focus) {
  if (!state.me) return; // not signed in: the key prompt stays
  const main = document.getElementById("main");
  for (const a of document.querySelectorAll("nav.tabs a")) {
    const on = a.dataset.view === state.view.name || (a.dataset.view === "queues" && state.view.name === "queue");
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const seq = ++renderSeq;
  let content;
  try {
    content = await views[state.view.name](...state.view.args);
  } catch (e) {
    content = h("p", { class: "error" }, (e.status ? e.status + " " : "") + (e.code ? e.code + ": " : "") + e.message);
  }
  if (seq !== renderSeq) return;
  // Keep keyboard focus where it was: the same control (by id, or tag, label and row) in the new content.
  const before = focusKey(document.activeElement);
  // On a redraw of the same view, what the user typed into its forms survives.
  const where = state.view.name + "/" + state.view.args.join("/");
  const typed = where === lastRendered ? editedControls(main) : [];
  lastRendered = where;
  main.replaceChildren(content);
  for (const [id, value, checked] of typed) {
    const el = document.getElementById(id);
    if (!el) continue;
    if (el.type === "checkbox") el.checked = checked; else el.value = value;
  }
  const again = before && findFocus(before);
  if (again) again.focus({ preventScroll: true });
  else if (focus === true) main.focus({ preventScroll: true });
}

function focusKey(el) {
  if (!el || el === document.body || !document.getElementById("main").contains(el) || el.id === "main") return null;
  const row = el.closest("tr");
  return { id: el.id, tag: el.tagName, text: el.textContent, row: row ? row.outerHTML.length + ":" + (row.firstChild ? row.firstChild.textContent : "") : null };
}

function findFocus(k) {
  if (k.id) return document.getElementById(k.id);
  for (const el of document.getElementById("main").querySelectorAll(k.tag)) {
    const row = el.closest("tr");
    const r = row ? row.outerHTML.length + ":" + (row.firstChild ? row.firstChild.textContent : "") : null;
    if (el.textContent === k.text && (r === k.row || (row && k.row && r.split(":").slice(1).join(":") === k.row.split(":").slice(1).join(":")))) return el;
  }
  return null;
}

// Redraws a live view unless the user is typing in it.
function liveRender() {
  const a = document.activeElement;
  if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT") && document.getElementById("main").contains(a)) return;
  if (document.getElementById("confirm").open) return;
  render();
}

// ---------------------------------------------------------------- overview

views.overview = async () => {
  const snap = state.snap;
  if (!snap) return h("p", { class: "muted" }, "Waiting for the first snapshot…");
  const hl = snap.health;
  const out = h("div", { class: "grid" });
  if (!hl) {
    out.appendChild(card("Server", kv([["Mode", badge(snap.mode)], ["Status", badge(String(snap.status))]]),
      h("p", { class: "muted" }, "Health details, Redis facts and traffic need a key with the ops scope (ops:*:read).")));
    return out;
  }
  const tr = snap.traffic || [];
  const pts = (f) => tr.map((x) => ({ t: x.t * 1000, v: x[f] }));
  const charts = h("div", { class: "charts" },
    chart("Requests per second", [{ label: "requests/s", points: pts("requests") }], { area: true }),
    chart("Errors (5xx) per second", [{ label: "errors/s", points: pts("errors") }], { area: true }),
    chart("Latency", [{ label: "p50", points: pts("p50_ms") }, { label: "p99", points: pts("p99_ms") }], { unit: "ms" }));
  out.appendChild(h("section", { class: "card wide", "aria-label": "Traffic" }, h("h2", null, "Traffic, last two minutes"), charts));

  const qs = snap.queues || [];
  if (qs.length) {
    const sum = (f) => qs.reduce((a, q) => a + (q.counts[f] || 0), 0);
    out.appendChild(card("Queues",
      kv([["Queues", fmt.n(qs.length)], ["Waiting", fmt.n(sum("waiting"))], ["Active", fmt.n(sum("active"))], ["Delayed", fmt.n(sum("delayed"))], ["Dead", sum("dead") ? h("a", { href: "#queues", class: "bad" }, fmt.n(sum("dead"))) : "0"]]),
      h("p", null, h("a", { href: "#queues" }, "All queues →"))));
  }
  const br = hl.breaker;
  out.appendChild(card("Server", kv([
    ["Mode", badge(snap.mode)],
    ["Status", badge(String(hl.status))],
    ["Uptime", fmt.dur(hl.uptime_s * 1000)],
    ["Breaker", br ? badge(br.state) : "none (embedded store only)"],
    br && ["Failures", br.consecutive_failures + " of " + br.failure_threshold + " to open"],
    br && ["Opened / closed", fmt.n(br.opened_total) + " / " + fmt.n(br.closed_total)],
  ])));

  const tl = [];
  const transitions = br ? (br.recent_transitions || (br.last_transition ? [br.last_transition] : [])) : [];
  for (const t of transitions) tl.push(Object.assign({ what: "breaker" }, t));
  for (const e of state.timeline) tl.push(e);
  tl.sort((a, b) => b.at_ms - a.at_ms);
  out.appendChild(card("Transitions",
    tl.length ? h("ol", { class: "timeline" }, tl.slice(0, 12).map((e) => h("li", null,
      h("time", { datetime: new Date(e.at_ms).toISOString() }, fmt.time(e.at_ms)), " ",
      h("b", null, e.what), ": ", badge(e.from), " → ", badge(e.to), e.reason ? h("span", { class: "muted" }, " " + e.reason) : null)))
      : h("p", { class: "muted" }, br ? "No transitions: the breaker has not changed state since the server started." : "No breaker: this server runs on the embedded store only.")));

  const rd = hl.redis;
  const info = rd && rd.info;
  out.appendChild(card("Redis", rd ? kv([
    ["Deployment", rd.deployment],
    ["Connected", rd.connected ? "yes" : "no"],
    info && ["Version", info.version + " (" + info.role + ")"],
    info && ["Memory", fmt.bytes(info.used_memory)],
    info && ["Keys", fmt.n(info.keys)],
    info && ["Eviction", info.maxmemory_policy],
    info && ["Persistence", "AOF " + (info.aof ? "on (" + info.appendfsync + ")" : "off") + " · snapshots " + (info.snapshots ? "on" : "off")],
    info && ["Round trip", fmt.dur(info.latency_us / 1000)],
    rd.error && ["Error", rd.error],
    rd.last_connect_error && ["Last connect error", JSON.stringify(rd.last_connect_error)],
  ]) : h("p", { class: "muted" }, "Not configured: the embedded store serves everything."),
  hl.embedded ? kv([["Embedded store", hl.embedded.path], ["Size", fmt.bytes(hl.embedded.size_bytes)], ["Volatile", fmt.n(hl.embedded.volatile_entries) + " entries, " + fmt.bytes(hl.embedded.volatile_bytes)]]) : null));

  out.appendChild(card("Warnings", (hl.warnings || []).length
    ? h("ul", { class: "warnings" }, hl.warnings.map((w) => h("li", null, w)))
    : h("p", { class: "muted" }, "None.")));

  const pend = Object.entries(hl.journal_pending || {});
  const dead = Object.entries(hl.journal_dead_letters || {});
  out.appendChild(card("Journal",
    table("Backlog (operations waiting for Redis)", ["Capability", "Pending"], pend.map(([k, v]) => [k, fmt.n(v)]), { empty: "empty" }),
    table("Dead-lettered replays", ["Capability", "Count", "Last error", "When"], dead.map(([k, v]) => [k, fmt.n(v.count), v.last_error, fmt.ago(v.last_at_ms)]), { empty: "none" })));

  out.appendChild(card("Capabilities", table(null, ["Capability", "Serving", "While Redis is away"],
    (hl.capabilities || []).map((c) => [c.name, c.available ? badge("yes", "ok") : badge("no", "unavailable"), c.fallback]), { label: "Capabilities", rowHeader: true })));
  return out;
};

// ---------------------------------------------------------------- queues

function queueRows() {
  const snap = state.snap;
  return snap ? snap.queues || [] : [];
}

views.queues = async () => {
  if (!mayAny("queues", "read")) return h("p", { class: "muted" }, "This key may not read any queue.");
  const rows = queueRows().map((q) => {
    const c = q.counts;
    const hist = state.queueHistory.get(q.name);
    const rate = ratePerMin(hist, "completed_total", 60000);
    const fails = ratePerMin(hist, "failed_total", 60000);
    return h("tr", { "data-queue": q.name },
      h("th", { scope: "row" }, h("a", { href: "#queue/" + enc(q.name) }, q.name), c.paused ? [" ", badge("paused")] : null),
      h("td", { class: "num", "data-count": "waiting" }, fmt.n(c.waiting)),
      h("td", { class: "num", "data-count": "active" }, fmt.n(c.active)),
      h("td", { class: "num", "data-count": "delayed" }, fmt.n(c.delayed)),
      h("td", { class: "num", "data-count": "completed" }, fmt.n(c.completed)),
      h("td", { class: "num" + (c.dead ? " bad" : ""), "data-count": "dead" }, fmt.n(c.dead)),
      h("td", { class: "num" }, fmt.rate(rate)),
      h("td", { class: "num" }, fmt.rate(fails)),
      h("td", null, spark(deltas(hist, "completed_total"), "completed per minute over the last minutes")));
  });
  return h("div", null,
    h("h2", { class: "page" }, "Queues"),
    table(null, ["Queue", "Waiting", "Active", "Delayed", "Completed", "Dead", "Done/min", "Failed/min", "Throughput"], rows,
      { label: "Queues with their counts", id: "queues", empty: state.snap ? "No queues yet." : "Waiting for the first snapshot…" }),
    h("p", { class: "muted small" }, "Counts are live (every 2 s); rates are measured by this page over the last minute."));
};

const JOB_STATES = ["waiting", "active", "delayed", "completed", "dead"];

views.queue = async (name, sub, id) => {
  if (sub === "job" && id) return jobView(name, id);
  const admin = may("queues", name, "admin");
  let q = queueRows().find((x) => x.name === name);
  const counts = q ? q.counts : await api("GET", "/v1/queues/" + enc(name));
  const js = state.jobs;
  const path = js.state === "dead" ? `/v1/queues/${enc(name)}/dead?offset=${js.offset}&limit=${PAGE}` : `/v1/queues/${enc(name)}/jobs?state=${js.state}&offset=${js.offset}&limit=${PAGE}`;
  const jobs = await api("GET", path);
  const actions = h("div", { class: "actions" });
  if (admin) {
    actions.appendChild(counts.paused
      ? button("Resume", () => act("Resume", async () => { await api("POST", `/v1/queues/${enc(name)}/resume`); return name + " resumed"; }), { action: "resume" })
      : button("Pause", () => act("Pause", async () => { await api("POST", `/v1/queues/${enc(name)}/pause`); return name + " paused"; }), { action: "pause" }));
    if (counts.dead) {
      actions.appendChild(button("Retry all dead (" + counts.dead + ")", () => act("Retry all", async () => { const r = await api("POST", `/v1/queues/${enc(name)}/dead/retry`); return r.count + " dead jobs retried"; }, `Retry all ${counts.dead} dead jobs of ${name}?`), { action: "retry-all" }));
      actions.appendChild(button("Purge all dead", () => act("Purge all", async () => { const r = await api("DELETE", `/v1/queues/${enc(name)}/dead`); return r.count + " dead jobs purged"; }, `Delete all ${counts.dead} dead jobs of ${name} for good?`), { class: "danger", action: "purge-all" }));
    }
  }
  const tabs = h("div", { class: "statetabs", role: "group", "aria-label": "Job state" }, JOB_STATES.map((st) =>
    h("button", { type: "button", "aria-pressed": String(js.state === st), "data-state": st, onclick: () => { state.jobs = { state: st, offset: 0 }; render(); } }, st + " (" + fmt.n(counts[st]) + ")")));
  const rows = jobs.map((j) => h("tr", { "data-job": j.id },
    h("th", { scope: "row" }, h("a", { href: `#queue/${enc(name)}/job/${enc(j.id)}` }, j.id)),
    h("td", { class: "payload" }, JSON.stringify(j.payload).slice(0, 80)),
    h("td", { class: "num" }, j.attempts + "/" + j.max_attempts),
    h("td", null, j.last_error || ""),
    h("td", null, js.state === "delayed" ? "runs in " + fmt.dur(j.run_at_ms - Date.now()) : fmt.ago(j.finished_ms || j.created_ms)),
    h("td", { class: "rowactions" }, js.state === "dead" && admin ? [
      button("Retry", () => act("Retry", async () => { await api("POST", `/v1/queues/${enc(name)}/dead/${enc(j.id)}/retry`); return "job " + j.id + " retried"; }), { aria: "Retry job " + j.id, action: "retry" }),
      button("Purge", () => act("Purge", async () => { await api("DELETE", `/v1/queues/${enc(name)}/dead/${enc(j.id)}`); return "job " + j.id + " purged"; }, `Delete dead job ${j.id} for good?`), { class: "danger", aria: "Purge job " + j.id, action: "purge" }),
    ] : null)));
  const total = counts[js.state] || 0;
  const pager = h("div", { class: "pager" },
    button("← Previous", () => { state.jobs.offset = Math.max(0, js.offset - PAGE); render(); }, { aria: "Previous page" }),
    h("span", null, total ? `${js.offset + 1}–${Math.min(js.offset + jobs.length, total)} of ${fmt.n(total)}` : "none"),
    button("Next →", () => { state.jobs.offset = js.offset + PAGE; render(); }, { aria: "Next page" }));
  pager.firstChild.disabled = js.offset === 0;
  pager.lastChild.disabled = js.offset + jobs.length >= total;
  return h("div", { "data-queue-view": name },
    h("p", { class: "crumbs" }, h("a", { href: "#queues" }, "Queues"), " / "),
    h("h2", { class: "page" }, name, counts.paused ? [" ", badge("paused")] : null),
    kv([["Failed attempts, ever", fmt.n(counts.failed_total)], ["Completed, ever", fmt.n(counts.completed_total)], ["Leases expired, ever", fmt.n(counts.lease_expired_total)]]),
    actions, tabs,
    table(null, ["Job", "Payload", "Attempts", "Last error", js.state === "delayed" ? "When" : "Age", ""], rows, { label: js.state + " jobs of " + name, id: "jobs", empty: "No " + js.state + " jobs." }),
    pager);
};

async function jobView(name, id) {
  const j = await api("GET", `/v1/queues/${enc(name)}/jobs/${enc(id)}`);
  const admin = may("queues", name, "admin");
  const actions = h("div", { class: "actions" });
  if (admin && j.state === "dead") {
    actions.appendChild(button("Retry", () => act("Retry", async () => { await api("POST", `/v1/queues/${enc(name)}/dead/${enc(id)}/retry`); return "job retried"; }), { action: "retry" }));
    actions.appendChild(button("Purge", () => act("Purge", async () => { await api("DELETE", `/v1/queues/${enc(name)}/dead/${enc(id)}`); location.hash = "#queue/" + enc(name); return "job purged"; }, `Delete dead job ${id} for good?`), { class: "danger", action: "purge" }));
  }
  return h("div", { "data-job-view": id },
    h("p", { class: "crumbs" }, h("a", { href: "#queues" }, "Queues"), " / ", h("a", { href: "#queue/" + enc(name) }, name), " / "),
    h("h2", { class: "page" }, "Job ", h("code", null, id), " ", badge(j.state)),
    actions,
    kv([
      ["Attempts", j.attempts + " of " + j.max_attempts],
      ["Priority", j.priority],
      ["Created", fmt.time(j.created_ms)],
      ["Runs at", fmt.time(j.run_at_ms)],
      ["Finished", fmt.time(j.finished_ms)],
      ["Worker", j.worker || "–"],
      ["Lease", j.lease_until_ms ? "until " + fmt.time(j.lease_until_ms) + " (" + fmt.dur(j.lease_until_ms - Date.now()) + " left)" : "–"],
      ["Unique key", j.unique_key || "–"],
      ["Last error", j.last_error ? h("pre", { class: "err" }, j.last_error) : "–"],
    ]),
    h("h3", null, "Progress"), j.progress ? h("pre", null, JSON.stringify(j.progress, null, 2)) : h("p", { class: "muted" }, "none reported"),
    h("h3", null, "Payload"), h("pre", { class: "payload" }, JSON.stringify(j.payload, null, 2)));
}

// ---------------------------------------------------------------- cache

views.cache = async () => {
  if (!mayAny("cache", "read")) return h("p", { class: "muted" }, "This key may not read any cache namespace.");
  const [status, stats] = await Promise.all([api("GET", "/v1/cache/status"), api("GET", "/v1/cache/stats")]);
  const names = new Set(status.namespaces);
  for (const c of stats.namespaces) names.add(c.namespace);
  const ks = state.keys;
  if (!ks.ns && names.size) ks.ns = [...names][0];
  const byNs = new Map(stats.namespaces.map((c) => [c.namespace, c]));
  const rows = [...names].sort().map((n) => {
    const c = byNs.get(n) || {};
    return h("tr", { "data-ns": n },
      h("th", { scope: "row" }, h("a", { href: "#cache", onclick: (ev) => { ev.preventDefault(); ks.ns = n; ks.pattern = "*"; ks.cursors = [""]; ks.page = 0; render(); } }, n)),
      h("td", { class: "num" }, fmt.pct(c.hit_ratio)),
      h("td", { class: "num" }, fmt.n(c.l1_hits)), h("td", { class: "num" }, fmt.n(c.l2_hits)), h("td", { class: "num" }, fmt.n(c.misses)),
      h("td", { class: "num" }, fmt.n(c.l1_entries)), h("td", { class: "num" }, fmt.bytes(c.l1_bytes)),
      h("td", { class: "num" }, fmt.n(c.stale_served)), h("td", { class: "num" }, fmt.n(c.sets)), h("td", { class: "num" }, fmt.n(c.invalidations)),
      h("td", { class: "num" + (c.errors ? " bad" : "") }, fmt.n(c.errors)));
  });
  const out = h("div", null,
    h("h2", { class: "page" }, "Cache"),
    kv([["Mode", badge(status.mode)], ["Hears other servers' invalidations", status.backplane_connected ? "yes" : "no"]]),
    table(null, ["Namespace", "Hit ratio", "L1 hits", "L2 hits", "Misses", "L1 entries", "L1 bytes", "Stale served", "Sets", "Invalidations", "Errors"], rows, { label: "Cache namespaces (this server's statistics)", id: "namespaces", empty: "No namespace served since the server started." }));
  out.appendChild(await keyBrowser());
  if (ks.ns ? may("cache", ks.ns, "admin") : mayAny("cache", "admin")) out.appendChild(clearForm());
  if (ks.ns ? may("cache", ks.ns, "write") : mayAny("cache", "write")) out.appendChild(warmForm());
  return out;
};

async function keyBrowser() {
  const ks = state.keys;
  const nsIn = h("input", { id: "keys-ns", name: "ns", value: ks.ns, required: true, spellcheck: "false" });
  const patIn = h("input", { id: "keys-pattern", name: "pattern", value: ks.pattern, spellcheck: "false" });
  const form = h("form", { class: "inline", "aria-label": "List keys", onsubmit: (ev) => { ev.preventDefault(); ks.ns = nsIn.value.trim(); ks.pattern = patIn.value.trim() || "*"; ks.cursors = [""]; ks.page = 0; render(); } },
    h("label", { for: "keys-ns" }, "Namespace"), nsIn,
    h("label", { for: "keys-pattern" }, "Pattern"), patIn,
    h("button", { type: "submit", id: "keys-list" }, "List keys"));
  const sec = h("section", { class: "card wide", "aria-label": "Keys" }, h("h2", null, "Keys"), form);
  if (!ks.ns) return sec;
  let page;
  try {
    page = await api("GET", `/v1/cache/keys?ns=${enc(ks.ns)}&pattern=${enc(ks.pattern)}&limit=${PAGE}` + (ks.cursors[ks.page] ? "&cursor=" + enc(ks.cursors[ks.page]) : ""));
  } catch (e) {
    sec.appendChild(h("p", { class: "error" }, e.message));
    return sec;
  }
  const ttls = await Promise.all(page.keys.map((k) => api("GET", `/v1/cache/${enc(ks.ns)}/${enc(k)}/ttl`).then((t) => t.ttl_ms, () => null)));
  const write = may("cache", ks.ns, "write");
  const rows = page.keys.map((k, i) => h("tr", { "data-key": k },
    h("th", { scope: "row" }, h("code", null, k)),
    h("td", { class: "num" }, ttls[i] === null ? "gone" : fmt.dur(ttls[i])),
    h("td", { class: "rowactions" }, write ? button("Delete", () => act("Delete", async () => { await api("DELETE", `/v1/cache/${enc(ks.ns)}/${enc(k)}`); return `${ks.ns}/${k} deleted`; }, `Delete ${ks.ns}/${k}?`), { class: "danger", aria: "Delete key " + k, action: "delete-key" }) : null)));
  sec.appendChild(table(null, ["Key", "Fresh for", ""], rows, { label: `Keys of ${ks.ns} matching ${ks.pattern}`, id: "keys", empty: "No keys match." }));
  const pager = h("div", { class: "pager" },
    button("← Previous", () => { ks.page = Math.max(0, ks.page - 1); render(); }, { aria: "Previous page of keys" }),
    h("span", null, "page " + (ks.page + 1)),
    button("Next →", () => { ks.cursors[ks.page + 1] = page.next_cursor; ks.page++; render(); }, { aria: "Next page of keys" }));
  pager.firstChild.disabled = ks.page === 0;
  pager.lastChild.disabled = !page.next_cursor;
  sec.appendChild(pager);
  return sec;
}

function clearForm() {
  const ks = state.keys;
  const nsIn = h("input", { id: "clear-ns", value: ks.ns, required: true, spellcheck: "false" });
  const by = h("select", { id: "clear-by" }, h("option", { value: "pattern" }, "pattern (glob)"), h("option", { value: "tag" }, "tag"), h("option", { value: "key" }, "one key"));
  const what = h("input", { id: "clear-what", required: true, spellcheck: "false", placeholder: "user:*" });
  const form = h("form", { class: "inline", id: "clear-form", "aria-label": "Clear cache entries", onsubmit: (ev) => {
    ev.preventDefault();
    const ns = nsIn.value.trim(), kind = by.value, v = what.value.trim();
    if (!ns || !v) return;
    const text = kind === "key" ? `Delete ${ns}/${v}?` : `Remove every entry of ${ns} ${kind === "tag" ? "tagged " + v : "matching " + v}?`;
    act("Clear", async () => {
      if (kind === "key") { const r = await api("DELETE", `/v1/cache/${enc(ns)}/${enc(v)}`); return r.deleted ? `${ns}/${v} deleted` : `${ns}/${v} was not there`; }
      const r = await api("POST", "/v1/cache/clear", kind === "tag" ? { ns, tag: v } : { ns, pattern: v });
      return `${r.removed} entries removed from ${ns}`;
    }, text);
  } },
  h("label", { for: "clear-ns" }, "Namespace"), nsIn,
  h("label", { for: "clear-by" }, "By"), by,
  h("label", { for: "clear-what" }, "Value"), what,
  h("button", { type: "submit", class: "danger", id: "clear-submit" }, "Clear…"));
  return h("section", { class: "card wide", "aria-label": "Clear" }, h("h2", null, "Clear"), form);
}

function warmForm() {
  const ks = state.keys;
  const nsIn = h("input", { id: "warm-ns", value: ks.ns, required: true, spellcheck: "false" });
  const entries = h("textarea", { id: "warm-entries", rows: 4, spellcheck: "false", placeholder: '[{"key": "user:1", "value": {"name": "ada"}, "ttl_s": 300, "tags": ["team:7"]}]' });
  const form = h("form", { id: "warm-form", "aria-label": "Warm the cache", onsubmit: (ev) => {
    ev.preventDefault();
    let list;
    try { list = JSON.parse(entries.value); } catch (e) { notice("Entries are not JSON: " + e.message, "error"); return; }
    act("Warm", async () => { const r = await api("POST", "/v1/cache/warm", { ns: nsIn.value.trim(), entries: list }); return "warmed: " + JSON.stringify(r); });
  } },
  h("div", { class: "inline" }, h("label", { for: "warm-ns" }, "Namespace"), nsIn),
  h("label", { for: "warm-entries" }, "Entries (JSON array, up to 1000)"), entries,
  h("div", null, h("button", { type: "submit", id: "warm-submit" }, "Warm")));
  return h("section", { class: "card wide", "aria-label": "Warm" }, h("h2", null, "Warm"), form);
}

// ---------------------------------------------------------------- rate limits

let policyTimer = 0;
async function loadPolicies() {
  const list = await api("GET", "/v1/ratelimit/policies");
  const t = Date.now();
  for (const p of list) {
    if (!p.stats) continue;
    let hist = state.policyHistory.get(p.name);
    if (!hist) { hist = []; state.policyHistory.set(p.name, hist); }
    const last = hist[hist.length - 1];
    if (!last || t - last.t > 1500) hist.push({ t, allowed: p.stats.allowed, denied: p.stats.denied });
    while (hist.length > 200) hist.shift();
  }
  return list;
}

views.ratelimits = async (editing) => {
  if (!mayAny("ratelimit", "read")) return h("p", { class: "muted" }, "This key may not read any rate-limit policy.");
  const list = await loadPolicies();
  clearTimeout(policyTimer);
  policyTimer = setTimeout(() => { if (state.view.name === "ratelimits") liveRender(); }, 5000);
  const rows = list.map((p) => {
    const b = p.policy, st = p.stats || {};
    const hist = state.policyHistory.get(p.name);
    return h("tr", { "data-policy": p.name },
      h("th", { scope: "row" }, p.name, b.shadow ? [" ", badge("shadow")] : null),
      h("td", null, b.algorithm || "gcra"),
      h("td", { class: "num" }, fmt.n(b.limit) + " / " + fmt.dur(b.period_ms)),
      h("td", { class: "num" }, b.burst === null || b.burst === undefined ? "–" : fmt.n(b.burst)),
      h("td", { class: "num" }, fmt.n(st.allowed)),
      h("td", { class: "num" + (st.denied ? " bad" : "") }, fmt.n(st.denied)),
      h("td", { class: "num" }, fmt.rate(ratePerMin(hist, "allowed", 60000))),
      h("td", { class: "num" }, fmt.rate(ratePerMin(hist, "denied", 60000))),
      h("td", null, spark(deltas(hist, "denied"), "refused per minute")),
      h("td", { class: "rowactions" }, may("ratelimit", p.name, "admin") ? [
        button("Edit", () => { fillPolicy(p); }, { aria: "Edit policy " + p.name, action: "edit" }),
        button("Delete", () => act("Delete", async () => { await api("DELETE", "/v1/ratelimit/policies/" + enc(p.name)); return "policy " + p.name + " deleted"; }, `Delete policy ${p.name} on every server?`), { class: "danger", aria: "Delete policy " + p.name, action: "delete" }),
      ] : null));
  });
  const out = h("div", null, h("h2", { class: "page" }, "Rate limits"),
    table(null, ["Policy", "Algorithm", "Limit", "Burst", "Allowed", "Refused", "Allowed/min", "Refused/min", "Refusals", ""], rows, { label: "Rate-limit policies (counters of this server)", id: "policies", empty: "No policies defined." }),
    h("p", { class: "muted small" }, "Counters are this server's since it started; rates are measured by this page."));
  if (mayAny("ratelimit", "admin")) out.appendChild(policyForm());
  return out;
};

function policyForm() {
  const f = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
  const form = h("form", { id: "policy-form", class: "fields", "aria-label": "Define a policy", onsubmit: (ev) => {
    ev.preventDefault();
    const v = (id) => document.getElementById(id).value.trim();
    const list = (id) => v(id) ? v(id).split(",").map((x) => x.trim()).filter(Boolean) : [];
    const name = v("pol-name");
    const body = { algorithm: v("pol-algorithm"), limit: Number(v("pol-limit")), period_ms: Number(v("pol-period")), shadow: document.getElementById("pol-shadow").checked, allow: list("pol-allow"), deny: list("pol-deny") };
    if (v("pol-burst")) body.burst = Number(v("pol-burst"));
    if (v("pol-share")) body.fallback_share = Number(v("pol-share"));
    act("Save", async () => { await api("PUT", "/v1/ratelimit/policies/" + enc(name), body); return "policy " + name + " saved (it reaches every server within a second)"; });
  } },
  f("pol-name", "Name", h("input", { id: "pol-name", required: true, spellcheck: "false" })),
  f("pol-algorithm", "Algorithm", h("select", { id: "pol-algorithm" }, ["gcra", "token_bucket", "sliding_window", "sliding_log", "fixed_window", "concurrency"].map((a) => h("option", { value: a }, a)))),
  f("pol-limit", "Limit", h("input", { id: "pol-limit", type: "number", min: 0, required: true, value: "100" })),
  f("pol-period", "Period (ms)", h("input", { id: "pol-period", type: "number", min: 1, required: true, value: "60000" })),
  f("pol-burst", "Burst (optional)", h("input", { id: "pol-burst", type: "number", min: 0 })),
  f("pol-share", "Fallback share (0–1)", h("input", { id: "pol-share", type: "number", min: 0, max: 1, step: "0.05" })),
  f("pol-allow", "Allow (keys, comma-separated)", h("input", { id: "pol-allow", spellcheck: "false" })),
  f("pol-deny", "Deny (keys, comma-separated)", h("input", { id: "pol-deny", spellcheck: "false" })),
  h("div", { class: "field check" }, h("input", { id: "pol-shadow", type: "checkbox" }), h("label", { for: "pol-shadow" }, "Shadow (count, never refuse)")),
  h("div", { class: "field" }, h("button", { type: "submit", id: "pol-submit" }, "Save policy")));
  return h("section", { class: "card wide", "aria-label": "Define or change a policy" }, h("h2", null, "Define or change a policy"), form);
}

function fillPolicy(p) {
  const b = p.policy;
  const set = (id, v) => { document.getElementById(id).value = v === null || v === undefined ? "" : v; };
  set("pol-name", p.name); set("pol-algorithm", b.algorithm || "gcra"); set("pol-limit", b.limit); set("pol-period", b.period_ms);
  set("pol-burst", b.burst); set("pol-share", b.fallback_share); set("pol-allow", (b.allow || []).join(", ")); set("pol-deny", (b.deny || []).join(", "));
  document.getElementById("pol-shadow").checked = !!b.shadow;
  document.getElementById("pol-limit").focus();
}

// ---------------------------------------------------------------- sessions, locks, channels, records

views.more = async () => {
  const hl = state.snap && state.snap.health;
  const caps = new Map(((hl && hl.capabilities) || []).map((c) => [c.name, c]));
  const capLine = (names) => hl ? kv(names.filter((n) => caps.has(n)).map((n) => [n, [caps.get(n).available ? badge("serving", "ok") : badge("unavailable"), " while Redis is away: " + caps.get(n).fallback]])) : null;
  const out = h("div", { class: "grid" });

  // Operation counts since this server started, and their rate since the page opened.
  const counts = (name) => {
    const now = hl && hl.stats && hl.stats[name];
    if (!now) return null;
    const first = state.firstStats[name] || (state.firstStats[name] = { t: Date.now(), v: Object.assign({}, now) });
    const mins = Math.max((Date.now() - first.t) / 60000, 1 / 60);
    return kv(Object.entries(now).map(([k, v]) => [k, fmt.n(v) + (Date.now() - first.t > 5000 ? " · " + ((v - (first.v[k] || 0)) / mins).toFixed(1) + "/min" : "")]));
  };
  const sess = card("Sessions", capLine(["session"]), counts("session"));
  if (may("sessions", "*", "read")) {
    const userIn = h("input", { id: "sess-user", required: true, spellcheck: "false" });
    const result = h("div", { id: "sess-result" });
    sess.appendChild(h("form", { class: "inline", "aria-label": "A user's sessions", onsubmit: async (ev) => {
      ev.preventDefault();
      const u = userIn.value.trim();
      try {
        const list = await api("GET", `/v1/users/${enc(u)}/sessions`);
        result.replaceChildren(table(null, ["Session", "Created", "Last seen", "Idle limit"], list.map((x) => [x.id || "(id: sessions admin only)", fmt.time(x.created_ms), fmt.ago(x.last_seen_ms), fmt.dur(x.idle_ms)]), { label: "Sessions of " + u, empty: "No sessions." }),
          may("sessions", "*", "write") && list.length ? button("Revoke all " + list.length, () => act("Revoke", async () => { const r = await api("DELETE", `/v1/users/${enc(u)}/sessions`); return "revoked: " + JSON.stringify(r); }, `Log ${u} out everywhere?`), { class: "danger" }) : null);
      } catch (e) { failed(e); }
    } }, h("label", { for: "sess-user" }, "User"), userIn, h("button", { type: "submit" }, "Show sessions")), result);
  }
  out.appendChild(sess);
  out.appendChild(card("Locks", capLine(["lock", "lock_local"]), counts("lock"), h("p", { class: "muted small" }, "Locks are fenced leases in Redis; with Redis away, locks fail closed unless asked for local_fallback.")));

  if (hl && hl.stats && hl.stats.jobs) {
    out.appendChild(card("Jobs on this server", kv(Object.entries(hl.stats.jobs).filter(([k]) => !k.endsWith("_at_ms")).map(([k, v]) => [k.replace(/_/g, " "), fmt.n(v)]))));
  }

  if (mayAny("channels", "read")) {
    try {
      const ch = await api("GET", "/v1/channels");
      out.appendChild(wide(card("Channels", kv([["Live across servers", ch.live ? "yes" : "no (catching up from history)"]]),
        table(null, ["Channel", "Subscribers", "Published", "Last minute"], ch.channels.map((c) => [c.channel, fmt.n(c.subscribers), fmt.n(c.published), fmt.n(c.published_last_minute)]), { label: "Channels", rowHeader: true, id: "channels", empty: "No channel used through this server yet." }))));
    } catch (e) { out.appendChild(card("Channels", h("p", { class: "error" }, e.message))); }
  }
  if (mayAny("records", "read")) {
    try {
      const col = await api("GET", "/v1/collections");
      out.appendChild(wide(card("Records", table(null, ["Collection", "Records", "Indexes", "TTL", "Max size"], col.collections.map((c) => [c.name, fmt.n(c.count), (c.indexes || []).map((i) => typeof i === "string" ? i : (i.field || i.name || JSON.stringify(i))).join(", ") || "–", c.ttl_s ? fmt.dur(c.ttl_s * 1000) : "–", fmt.bytes(c.max_bytes)]), { label: "Collections", rowHeader: true, id: "collections", empty: "No collections." }))));
    } catch (e) { out.appendChild(card("Records", h("p", { class: "error" }, e.message))); }
  }
  return out;
};

// ---------------------------------------------------------------- start

async function start() {
  state.me = null;
  state.snap = null;
  state.queueHistory.clear();
  state.lastSeen = null;
  if (state.stream) state.stream.abort();
  const live = document.getElementById("live");
  try {
    state.me = await api("GET", "/v1/dashboard/me");
    // Without a key, a server with keys answers with no scopes: ask for one.
    if (!state.key && state.me.keys_required) throw new ApiError(401, "unauthorized", "this server requires an API key");
  } catch (e) {
    showWho();
    live.textContent = e.status === 401 ? "enter an API key" : "unreachable";
    live.className = "live off";
    document.getElementById("main").replaceChildren(h("div", { class: "card" }, h("h2", null, e.status === 401 ? "An API key is needed" : "Cannot reach the server"),
      h("p", null, e.status === 401 ? (state.key ? "This key was refused. " : "") + "Type a key above; it is kept for this browser tab only (sessionStorage)." : e.message)));
    if (e.status === 401) document.getElementById("key").focus();
    return;
  }
  showWho();
  state.view = parseHash();
  render();
  connect();
}

start();
