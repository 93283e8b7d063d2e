// The console's script: polls /api/overview, renders it, and sends the operator's actions to
// the JSON API. Plain DOM code, no framework; every value is inserted as text, never as HTML.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "bridge-admin-token";
const $ = (id) => document.getElementById(id);

const state = {
  previous: null,      // the last overview, for rates
  readOnly: true,
  needsToken: false,
  deadLetterTotal: null,
  after: null,         // cursor of the next dead-letter page
  shown: [],           // dead letters in the table
  selected: new Set(), // their ids the operator ticked
  entry: null,         // the entry open in the detail view
};

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, cache: "no-store", credentials: "omit",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (res.status === 401) { state.needsToken = true; showTokenBar(true); }
  if (!res.ok) throw new Error((data && data.error) || (res.status + " " + res.statusText));
  return data;
}

function notice(text, ok) {
  const n = $("notice");
  n.textContent = text;
  n.className = ok ? "ok" : "error";
}

function showTokenBar(show) { $("token-bar").hidden = !show; }

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(tbody, rows, render) {
  tbody.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    render(tr, r);
    tbody.appendChild(tr);
  }
}

function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\..*/, "") : "–"; }

function age(seconds) {
  if (!seconds) return "–";
  if (seconds < 120) return seconds + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}

function rate(now, before, key, name, dt) {
  if (!before || dt <= 0) return "–";
  const b = before.find((x) => x.name === name);
  if (!b) return "–";
  return ((now[key] - b[key]) / dt).toFixed(1);
}

function renderOverview(o) {
  const prev = state.previous;
  const dt = prev ? (o.at_ms - prev.at_ms) / 1000 : 0;
  $("version").textContent = "v" + o.version + " · config " + o.config_version + " · durability " + o.durability + (o.dual ? " · dual publishing" : "");
  state.readOnly = o.read_only;
  const mode = $("mode");
  mode.textContent = o.read_only ? "read-only (no [admin] token configured)" : (token() ? "token set: actions enabled" : "actions need the admin token");
  showTokenBar(!o.read_only && !token());
  $("updated").textContent = "updated " + when(o.at_ms);

  const p = $("pause-state");
  if (o.paused) {
    p.textContent = "PAUSED since " + o.paused.since + " by " + o.paused.by + (o.paused.reason ? " — " + o.paused.reason : "");
    p.className = "paused";
  } else {
    p.textContent = "Running: deliveries are not paused.";
    p.className = "up";
  }

  fill($("endpoints").tBodies[0], o.endpoints, (tr, e) => {
    tr.dataset.endpoint = e.name;
    cell(tr, e.name);
    cell(tr, e.circuit, "circuit circuit-" + e.circuit);
    cell(tr, e.delivered, "num delivered");
    cell(tr, rate(e, prev && prev.endpoints, "delivered", e.name, dt), "num");
    cell(tr, e.failed, "num failed");
    cell(tr, e.dead_lettered, "num dead-lettered");
    cell(tr, e.not_delivered, "num queued");
    cell(tr, age(e.oldest_age_seconds), "num");
    cell(tr, e.in_flight, "num");
    cell(tr, e.last_error || "", "err last-error");
  });
  fill($("sources").tBodies[0], o.sources, (tr, s) => {
    tr.dataset.source = s.name;
    cell(tr, s.name);
    cell(tr, s.kind);
    cell(tr, s.connected ? "connected" : "DISCONNECTED", s.connected ? "up" : "down");
    cell(tr, s.received, "num");
    cell(tr, rate(s, prev && prev.sources, "received", s.name, dt), "num");
    cell(tr, s.disconnects, "num");
  });
  fill($("legacy").tBodies[0], o.legacy_subscribers, (tr, l) => {
    cell(tr, l.channel);
    cell(tr, l.subscribers, "num");
  });
  const parity = o.parity;
  $("parity-window").textContent = parity ? "last " + Math.round(parity.window_seconds / 60) + " minutes, from the delivery ledger" : "(needs delivery.durability = \"redis\")";
  fill($("parity").tBodies[0], parity ? parity.endpoints : [], (tr, e) => {
    cell(tr, e.endpoint);
    cell(tr, e.journaled, "num");
    cell(tr, e.delivered, "num");
    cell(tr, e.dead_lettered, "num");
    cell(tr, Math.max(0, e.journaled - e.delivered - e.dead_lettered), "num");
  });
  renderReplays(o.replays);

  const select = $("dl-endpoint");
  const have = new Set([...select.options].map((x) => x.value));
  for (const e of o.endpoints) {
    if (!have.has(e.name)) select.appendChild(new Option(e.name, e.name));
  }
  $("dl-total").textContent = o.dead_letters === null ? "(count unknown: Redis did not answer)" : o.dead_letters + " in the stream";
  if (o.dead_letters !== state.deadLetterTotal) {
    state.deadLetterTotal = o.dead_letters;
    loadDeadLetters(false);
  }
  state.previous = o;
}

function renderReplays(replays) {
  fill($("replays").tBodies[0], replays, (tr, r) => {
    tr.dataset.replay = r.id;
    cell(tr, r.id);
    cell(tr, r.what);
    cell(tr, when(r.started_at_ms));
    cell(tr, r.queued, "num");
    cell(tr, r.delivered, "num delivered");
    cell(tr, r.failed, "num");
    cell(tr, r.skipped.length ? r.skipped.length + ": " + r.skipped.map((s) => s.reason).join("; ") : 0);
    cell(tr, r.error ? "error: " + r.error : (r.finished ? "finished" : "running"), "state");
  });
}

function filterQuery() {
  const q = new URLSearchParams();
  for (const [key, id] of [["endpoint", "dl-endpoint"], ["stage", "dl-stage"], ["reason", "dl-reason"]]) {
    const v = $(id).value.trim();
    if (v) q.set(key, v);
  }
  return q;
}

async function loadDeadLetters(more) {
  const q = filterQuery();
  q.set("limit", "50");
  if (more && state.after) q.set("after", state.after);
  let page;
  try { page = await api("GET", "/api/dead-letters?" + q.toString()); } catch (e) { notice("dead letters: " + e.message); return; }
  state.shown = more ? state.shown.concat(page.entries) : page.entries;
  state.after = page.next;
  const ids = new Set(state.shown.map((d) => d.id));
  for (const id of [...state.selected]) if (!ids.has(id)) state.selected.delete(id);
  fill($("dead-letters").tBodies[0], state.shown, (tr, d) => {
    tr.dataset.id = d.id;
    tr.className = "clickable";
    const td = document.createElement("td");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.className = "select";
    box.checked = state.selected.has(d.id);
    box.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (box.checked) state.selected.add(d.id); else state.selected.delete(d.id);
    });
    td.appendChild(box);
    tr.appendChild(td);
    cell(tr, d.id, "id");
    cell(tr, d.endpoint || "(ingest)");
    cell(tr, d.stage, "stage");
    cell(tr, d.event_type);
    cell(tr, d.attempts, "num");
    cell(tr, d.last_status);
    cell(tr, d.error, "err");
    cell(tr, when(d.failed_at_ms));
    cell(tr, d.preview, "preview");
    tr.addEventListener("click", () => openEntry(d.id));
  });
  $("dl-more").hidden = !page.next;
}

async function openEntry(id) {
  let e;
  try { e = await api("GET", "/api/dead-letters/" + encodeURIComponent(id)); } catch (err) { notice("entry " + id + ": " + err.message); return; }
  state.entry = id;
  $("entry").hidden = false;
  $("entry-id").textContent = id;
  const d = e.entry;
  const meta = [["endpoint", d.endpoint || "(ingest)"], ["stage", e.stage], ["event type", d.event_type], ["idempotency key", d.idempotency_key], ["source", d.source], ["channel", d.channel], ["received", when(d.received_at_ms)], ["dead-lettered", when(d.failed_at_ms)]];
  if (d.body_size !== undefined) meta.push(["stored body", "first bytes of " + d.body_size + " (sha256 " + d.body_sha256 + ")"]);
  fill($("entry-meta").tBodies[0], meta, (tr, [k, v]) => { cell(tr, k); cell(tr, v); });
  fill($("entry-headers").tBodies[0], e.headers, (tr, [k, v]) => { cell(tr, k); cell(tr, v); });
  fill($("entry-errors").tBodies[0], e.errors, (tr, x) => {
    cell(tr, when(x.at_ms));
    cell(tr, x.attempts + " attempt" + (x.attempts === 1 ? "" : "s"));
    cell(tr, x.last_status === null ? "no HTTP status" : "HTTP " + x.last_status);
    cell(tr, x.error, "err");
  });
  $("entry-body").textContent = e.body;
  $("entry-body-note").textContent = (e.body_is_json ? "JSON, pretty-printed" : "not JSON, shown as text") + (e.body_cut ? "; cut short" : "");
  $("entry").scrollIntoView();
}

function needToken() {
  if (state.readOnly) { notice("The console is read-only: set [admin] token in the bridge's config to allow this."); return true; }
  if (!token()) { showTokenBar(true); notice("Enter the admin token first."); $("token").focus(); return true; }
  return false;
}

async function act(what, method, path, body, done) {
  if (needToken()) return;
  try {
    const r = await api(method, path, body);
    notice(what + ": " + done(r), true);
  } catch (e) {
    notice(what + " failed: " + e.message);
  }
  await refresh();
  await loadDeadLetters(false);
}

function shownEndpoint() { return $("dl-endpoint").value || null; }

function replay(body) {
  return act("replay", "POST", "/api/dead-letters/replay", body, (r) => "started replay #" + r.replay + " (progress below)");
}

function purge(body, description) {
  if (!window.confirm("Delete " + description + " from the dead-letter queue for good?")) return;
  body.confirm = true;
  return act("purge", "POST", "/api/dead-letters/purge", body, (r) => "purged " + r.purged);
}

function wire() {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    state.needsToken = false;
    notice("token set for this tab", true);
    refresh().then(() => loadDeadLetters(false));
  });
  $("pause-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const reason = $("pause-reason").value.trim();
    act("pause", "POST", "/api/pause", { reason: reason || null }, (r) => "paused by " + r.by);
  });
  $("resume").addEventListener("click", () => act("resume", "POST", "/api/resume", {}, (r) => r.resumed ? "resumed" : "was not paused"));
  $("dl-filter").addEventListener("submit", (ev) => { ev.preventDefault(); loadDeadLetters(false); });
  $("dl-more").addEventListener("click", () => loadDeadLetters(true));
  $("dl-select-all").addEventListener("change", (ev) => {
    for (const d of state.shown) if (ev.target.checked) state.selected.add(d.id); else state.selected.delete(d.id);
    for (const box of document.querySelectorAll("#dead-letters input.select")) box.checked = ev.target.checked;
  });
  $("dl-replay-selected").addEventListener("click", () => {
    if (!state.selected.size) { notice("Tick the entries to replay first."); return; }
    replay({ ids: [...state.selected] });
  });
  $("dl-replay-all").addEventListener("click", () => {
    const e = shownEndpoint();
    if (!e) { notice("Choose an endpoint in the filter first: replay all takes one endpoint's entries."); return; }
    replay({ all: true, endpoint: e });
  });
  $("dl-purge-selected").addEventListener("click", () => {
    if (!state.selected.size) { notice("Tick the entries to purge first."); return; }
    purge({ ids: [...state.selected] }, state.selected.size + " selected entr" + (state.selected.size === 1 ? "y" : "ies"));
  });
  $("dl-purge-all").addEventListener("click", () => {
    const e = shownEndpoint();
    if (!e) { notice("Choose an endpoint in the filter first: purge all takes one endpoint's entries."); return; }
    purge({ all: true, endpoint: e }, "every entry of " + e);
  });
  $("entry-replay").addEventListener("click", () => state.entry && replay({ ids: [state.entry] }));
  $("entry-purge").addEventListener("click", () => state.entry && purge({ ids: [state.entry] }, "entry " + state.entry));
  $("entry-close").addEventListener("click", () => { $("entry").hidden = true; state.entry = null; });
}

async function refresh() {
  try {
    renderOverview(await api("GET", "/api/overview"));
  } catch (e) {
    $("mode").textContent = state.needsToken ? "enter the admin token to see the bridge" : "cannot read the overview: " + e.message;
  }
}

wire();
refresh();
setInterval(refresh, POLL_MS);
