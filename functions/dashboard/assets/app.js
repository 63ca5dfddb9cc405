// The dashboard: reads the caller's organization's summaries from the API with the caller's key or
// token, draws them (uPlot, vendored), and follows the live updates over the WebSocket API.
// Security: the token lives in this tab's sessionStorage only (a `#token=` fragment is moved there
// and cleared from the address bar); it goes out only as the Authorization header and as the
// WebSocket's `token` parameter the API requires. Every string from the server is written with
// textContent, never as HTML: user ids and command names come from developers' machines.
"use strict";

const TOKEN_KEY = "metrics-dashboard-token";
const LIVE_FEED_LENGTH = 50;
const RANGES = { "24h": 24, "7d": 24 * 7, "30d": 24 * 30 };
const $ = (id) => document.getElementById(id);

const view = {
  token: null,
  range: null, // {since, until, unit, follows_now}
  totals: null, // the headline figures, moved by live updates
  socket: null,
  reconnectDelay: 1000,
  refreshTimer: null,
  loadId: 0,
};

// ---- State and sign-in ----

function show(state) {
  document.body.dataset.state = state;
}

/** Moves a `#token=` fragment to sessionStorage and out of the address bar and history. */
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token !== null) {
    history.replaceState(null, "", location.pathname + location.search);
    if (token.trim()) sessionStorage.setItem(TOKEN_KEY, token.trim());
  }
}

/**
 * Forgets everything shown for the previous caller: their live feed and totals, their socket, a
 * load still under way (its answer is dropped) and a pending refresh (it would read with no token).
 */
function forgetCaller() {
  view.loadId += 1;
  clearTimeout(view.refreshTimer);
  view.refreshTimer = null;
  view.totals = null;
  view.reconnectDelay = 1000;
  closeLive();
  $("live-feed").replaceChildren();
  $("who").textContent = "";
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  view.token = null;
  forgetCaller();
  $("sign-in-message").textContent =
    message || "Paste an API key (mcsk_…) or a token. It stays in this tab only.";
  $("sign-in-message").classList.toggle("error", Boolean(message));
  show("signed-out");
}

/**
 * Who the token says the caller is (display only: the API checks it), so that a swapped
 * credential shows. An API key says only its id (not secret: `mcsk_<id>_<secret>`); once the
 * summaries are read, `describeKey` adds its user and role.
 */
function describeCaller(token) {
  if (token.startsWith("mcsk_")) return `API key ${keyIdOf(token).slice(0, 8)}…`;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part));
    return `${claims.sub} · ${claims.org_id} · ${claims.role || "member"}`;
  } catch {
    return "Signed in";
  }
}

function keyIdOf(key) {
  return key.split("_")[1] || "";
}

/**
 * An API key's user and role, from what the API tells its holder: a member's summary by user holds
 * only their own row; an admin may list the organization's keys, their own among them. No answer
 * names the organization, so the page cannot show it for a key.
 */
async function describeKey(token, byUser) {
  const label = describeCaller(token);
  let text = `${label} · member`;
  if (byUser.per_user_rows === "all") {
    text = `${label} · admin`;
    try {
      const keys = (await apiGet("api/v1/keys")).keys || [];
      const mine = keys.find((key) => key.id === keyIdOf(token));
      if (mine) text = `${mine.user_id} · ${mine.role} · ${label}${mine.name ? ` (${mine.name})` : ""}`;
    } catch {
      /* the role from the summary is enough */
    }
  } else if (byUser.groups.length === 1) {
    text = `${byUser.groups[0].key} · member · ${label}`;
  }
  if (view.token === token) $("who").textContent = text;
}

function signIn(token) {
  forgetCaller();
  sessionStorage.setItem(TOKEN_KEY, token);
  view.token = token;
  $("who").textContent = describeCaller(token);
  load();
  connectLive();
}

// ---- Time range ----

function chooseRange() {
  const preset = $("range-preset").value;
  $("custom-range").hidden = preset !== "custom";
  if (preset === "custom") {
    const since = new Date($("range-since").value);
    const until = new Date($("range-until").value);
    return { since, until, unit: unitFor(since, until), follows_now: false };
  }
  const until = new Date();
  const since = new Date(until.getTime() - RANGES[preset] * 3600e3);
  return { since, until, unit: unitFor(since, until), follows_now: true };
}

function unitFor(since, until) {
  return until - since <= 2 * 86400e3 ? "hour" : "day";
}

function isoOrEmpty(date) {
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

// ---- Reading the API ----

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function summary(groupBy, p95) {
  const query = new URLSearchParams({
    group_by: groupBy,
    since: isoOrEmpty(view.range.since),
    until: isoOrEmpty(view.range.until),
    limit: "1000",
    p95: String(p95),
  });
  return apiGet(`api/v1/metrics/summary?${query}`);
}

/** The `data` of a GET of the API with the caller's credential; an ApiError when refused. */
async function apiGet(path) {
  // Beside the page: /dashboard -> /api/v1/... (under a stage path too).
  const url = new URL(path, location.href);
  const response = await fetch(url, { headers: { Authorization: `Bearer ${view.token}` } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok || !body || !body.success) {
    throw new ApiError(response.status, describeFailure(response.status, body));
  }
  return body.data;
}

function describeFailure(status, body) {
  const fields = (body && body.errors) || [];
  if (fields.length) return fields.map((e) => `${e.field}: ${e.message}`).join("; ");
  if (body && body.message) return `${body.message} (${status})`;
  return `The API answered ${status}`;
}

async function load() {
  const id = ++view.loadId;
  view.range = chooseRange();
  show("loading");
  try {
    const [series, users, commands, agents, models] = await Promise.all([
      summary(view.range.unit, true),
      summary("user", false),
      summary("command", true),
      summary("agent", true),
      summary("model", false),
    ]);
    if (id !== view.loadId) return; // a newer load, or another caller, since
    const described = $("who").textContent !== describeCaller(view.token);
    if (view.token.startsWith("mcsk_") && !described) describeKey(view.token, users);
    if (series.groups.length === 0) {
      show("empty");
      return;
    }
    show("data"); // first, so the charts can measure their width
    render(series, { users, commands, agents, models });
    performance.mark("figures-shown"); // for measuring how soon the figures appear
  } catch (error) {
    if (id !== view.loadId) return;
    if (!signedOutIfRefused(error)) {
      $("error-message").textContent = error.message || String(error);
      show("error");
    }
  }
}

/** A 401 means the credential is wrong, expired or revoked: forget it and ask for another. */
function signedOutIfRefused(error) {
  if (error.status !== 401) return false;
  signOut("That key or token was refused (wrong, expired or revoked). Paste another.");
  return true;
}

// ---- Figures, charts and tables ----

function sum(groups, pick) {
  return groups.reduce((total, group) => total + (pick(group) || 0), 0);
}

function totalsOf(series) {
  const groups = series.groups;
  const p95s = groups.map((g) => g.commands && g.commands.p95_execution_time_ms).filter((v) => v != null);
  return {
    commands: sum(groups, (g) => g.commands && g.commands.count),
    errors: sum(groups, (g) => g.commands && g.commands.error_count),
    p95: p95s.length ? Math.max(...p95s) : null,
    interactions: sum(groups, (g) => g.agents && g.agents.interactions),
    // Sessions are totalled by the API for the whole span (the groups may not all be shown).
    sessions: series.sessions ? series.sessions.started : 0,
    tokens: sum(groups, (g) => g.usage && g.usage.input_tokens + g.usage.output_tokens),
    cost: sum(groups, (g) => g.usage && g.usage.cost_usd),
  };
}

const number = new Intl.NumberFormat("en");
const money = new Intl.NumberFormat("en", { style: "currency", currency: "USD", maximumFractionDigits: 2 });

function formatMs(ms) {
  if (ms == null) return "–";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

function showTotals(moved) {
  const t = view.totals;
  const figures = {
    "fig-commands": number.format(t.commands),
    "fig-error-rate": t.commands ? `${((100 * t.errors) / t.commands).toFixed(1)} %` : "–",
    "fig-p95": formatMs(t.p95),
    "fig-interactions": number.format(t.interactions),
    "fig-sessions": number.format(t.sessions),
    "fig-tokens": t.tokens ? number.format(t.tokens) : "none",
    "fig-cost": t.cost ? money.format(t.cost) : "none",
  };
  for (const [id, text] of Object.entries(figures)) {
    const element = $(id);
    element.classList.toggle("moved", moved && element.textContent !== text);
    element.textContent = text;
  }
  $("fig-p95-unit").textContent = view.range.unit;
}

function render(series, tables) {
  view.totals = totalsOf(series);
  showTotals(false);
  for (const element of document.querySelectorAll(".series-unit")) element.textContent = view.range.unit;
  drawCharts(series.groups);
  $("per-user-note").textContent =
    tables.users.per_user_rows === "own"
      ? "Per-user rows: yours only (a member sees the organization's totals and their own row)."
      : "Per-user rows: every developer of the organization.";
  fillTable("table-user", tables.users.groups, USER_COLUMNS);
  fillTable("table-command", tables.commands.groups, COMMAND_COLUMNS);
  fillTable("table-agent", tables.agents.groups, AGENT_COLUMNS);
  fillTable("table-model", tables.models.groups, MODEL_COLUMNS);
}

const charts = [];

function drawCharts(groups) {
  while (charts.length) charts.pop().destroy();
  const xs = groups.map((g) => Date.parse(g.key) / 1000);
  const commands = groups.map((g) => (g.commands ? g.commands.count : 0));
  const errors = groups.map((g) => (g.commands ? g.commands.error_count : 0));
  const input = groups.map((g) => (g.usage ? g.usage.input_tokens : 0));
  const output = groups.map((g) => (g.usage ? g.usage.output_tokens : 0));
  charts.push(chart("chart-commands", [xs, commands, errors], [
    { label: "commands", stroke: "#2f6fde", fill: "rgba(47,111,222,.12)" },
    { label: "errors", stroke: "#c73a3a" },
  ]));
  charts.push(chart("chart-tokens", [xs, input, output], [
    { label: "input", stroke: "#2f9e6f" },
    { label: "output", stroke: "#9a5bd6" },
  ]));
}

function chart(id, data, series) {
  const element = $(id);
  element.replaceChildren();
  const options = {
    width: chartWidth(element),
    height: 200,
    series: [{}, ...series.map((s) => ({ width: 2, points: { show: data[0].length < 60 }, ...s }))],
    scales: { x: { time: true, range: [view.range.since / 1000, view.range.until / 1000] } },
    axes: [{}, { size: 50 }],
    legend: { live: false },
  };
  return new uPlot(options, data, element);
}

/** The width of the card a chart sits in (not of the chart itself, which would never shrink). */
function chartWidth(element) {
  return Math.max(element.closest("figure").clientWidth - 16, 200);
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const c of charts) c.setSize({ width: chartWidth(c.root), height: 200 });
  }, 150);
});

const commandsColumns = [
  ["Commands", (g) => g.commands && g.commands.count],
  ["Errors", (g) => g.commands && g.commands.error_count],
  ["Avg time", (g) => g.commands && g.commands.avg_execution_time_ms, formatMs],
];
const usageColumns = [
  ["Tokens", (g) => g.usage && g.usage.input_tokens + g.usage.output_tokens],
  ["Cost", (g) => g.usage && g.usage.cost_usd, (v) => money.format(v)],
];
const USER_COLUMNS = [["User", (g) => g.key], ...commandsColumns,
  ["Agent calls", (g) => g.agents && g.agents.interactions],
  ["Sessions", (g) => g.sessions && g.sessions.started], ...usageColumns];
const COMMAND_COLUMNS = [["Command", (g) => g.key], ...commandsColumns,
  ["p95", (g) => g.commands && g.commands.p95_execution_time_ms, formatMs]];
const AGENT_COLUMNS = [["Agent", (g) => g.key],
  ["Interactions", (g) => g.agents && g.agents.interactions],
  ["Failures", (g) => g.agents && g.agents.failures],
  ["Tokens in", (g) => g.agents && g.agents.input_tokens],
  ["Tokens out", (g) => g.agents && g.agents.output_tokens],
  ["p95", (g) => g.agents && g.agents.p95_processing_time_ms, formatMs]];
const MODEL_COLUMNS = [["Model", (g) => g.key], ...usageColumns,
  ["API requests", (g) => g.usage && g.usage.api_requests]];

/** A sortable table: clicking a heading sorts by it, again reverses. */
function fillTable(id, groups, columns) {
  const table = $(id);
  let sortBy = 1;
  let descending = true;
  const draw = () => {
    const pick = columns[sortBy][1];
    const rows = [...groups].sort((a, b) => {
      const [x, y] = [pick(a), pick(b)];
      const order = typeof x === "string" ? String(x).localeCompare(String(y)) : (x || 0) - (y || 0);
      return descending ? -order : order;
    });
    const head = document.createElement("tr");
    columns.forEach(([title], index) => {
      const th = document.createElement("th");
      th.textContent = title;
      th.scope = "col";
      if (index === sortBy) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      th.addEventListener("click", () => {
        descending = index === sortBy ? !descending : index !== 0;
        sortBy = index;
        draw();
      });
      head.append(th);
    });
    const body = rows.map((group) => {
      const tr = document.createElement("tr");
      for (const [, pickCell, format] of columns) {
        const td = document.createElement("td");
        const value = pickCell(group);
        td.textContent = value == null ? "–" : format ? format(value) : typeof value === "number" ? number.format(value) : value;
        tr.append(td);
      }
      return tr;
    });
    if (!body.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = columns.length;
      td.textContent = "Nothing in this range.";
      tr.append(td);
      body.push(tr);
    }
    const thead = document.createElement("thead");
    thead.append(head);
    const tbody = document.createElement("tbody");
    tbody.append(...body);
    table.replaceChildren(thead, tbody);
  };
  draw();
}

// ---- Live updates ----

function liveUrl() {
  const configured = document.querySelector('meta[name="live-url"]').content;
  const base = configured || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/live`;
  return `${base}${base.includes("?") ? "&" : "?"}token=${encodeURIComponent(view.token)}`;
}

function setLiveStatus(text) {
  $("live-status").textContent = text;
}

function connectLive(reconnecting = false) {
  closeLive();
  setLiveStatus("connecting");
  const socket = new WebSocket(liveUrl());
  view.socket = socket;
  // A socket closed by a sign-out or a switch may still deliver: only the current one counts.
  const current = () => view.socket === socket;
  socket.addEventListener("open", () => {
    if (!current()) return;
    view.reconnectDelay = 1000;
    setLiveStatus("connected");
    // Updates stored while disconnected were missed: read the figures again.
    if (reconnecting) scheduleRefresh();
  });
  socket.addEventListener("message", (event) => {
    if (!current()) return;
    try {
      onUpdate(JSON.parse(event.data));
    } catch {
      /* not an update of ours */
    }
  });
  socket.addEventListener("close", () => {
    if (!current()) return;
    setLiveStatus("disconnected; retrying");
    reconnectUnlessRefused(socket);
  });
}

/**
 * A closed socket may mean the credential was revoked or expired (the handshake's refusal does not
 * reach the page): ask the API first; a 401 signs out and forgets it, anything else (the network)
 * is retried with a backoff of 1 s doubling up to a minute.
 */
async function reconnectUnlessRefused(socket) {
  const token = view.token;
  try {
    await apiGet("api/v1/metrics/summary?group_by=day&limit=1");
  } catch (error) {
    if (view.token === token && view.socket === socket && signedOutIfRefused(error)) return;
  }
  const delay = view.reconnectDelay;
  view.reconnectDelay = Math.min(view.reconnectDelay * 2, 60000);
  setTimeout(() => view.token === token && view.socket === socket && connectLive(true), delay);
}

function closeLive() {
  const socket = view.socket;
  view.socket = null;
  if (socket) socket.close();
}

function onUpdate(update) {
  if (update.type !== "metric_update") return;
  addToFeed(update);
  if (!view.totals || !view.range.follows_now) return;
  if (!update.metric) {
    // A colleague's record, of which a member sees only the kind: read the totals again.
    scheduleRefresh();
    return;
  }
  const t = view.totals;
  const m = update.metric;
  switch (update.kind) {
    case "command_execution":
      t.commands += 1;
      if (m.status !== "success") t.errors += 1;
      break;
    case "agent_interaction":
      t.interactions += 1;
      break;
    case "usage":
      if (m.usage) {
        t.tokens += (m.usage.input_tokens || 0) + (m.usage.output_tokens || 0);
        t.cost += m.usage.cost_usd || 0;
      }
      break;
    case "batch":
      scheduleRefresh();
      return;
    default:
      return;
  }
  if (document.body.dataset.state === "empty") {
    scheduleRefresh();
    return;
  }
  showTotals(true);
}

/** Reads the summaries again soon, once for a burst of updates. */
function scheduleRefresh() {
  clearTimeout(view.refreshTimer);
  view.refreshTimer = setTimeout(load, 1500);
}

function describeUpdate(update) {
  const m = update.metric || {};
  const who = update.user_id ? `${update.user_id}: ` : "";
  switch (update.kind) {
    case "command_execution":
      return `${who}${m.command_name} ${m.status}${m.execution_time_ms != null ? ` in ${formatMs(m.execution_time_ms)}` : ""}`;
    case "agent_interaction":
      return `${who}agent ${m.agent_name} ${m.interaction_type || ""}`;
    case "batch":
      return `${who}batch stored`;
    case "usage":
      return `${who}usage reported`;
    default:
      return `${who}${String(update.kind).replace(/_/g, " ")}`;
  }
}

function addToFeed(update) {
  const item = document.createElement("li");
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = new Date().toLocaleTimeString();
  const what = document.createElement("span");
  what.className = "what";
  what.dataset.kind = String(update.kind);
  what.textContent = describeUpdate(update);
  item.append(when, what);
  const feed = $("live-feed");
  feed.prepend(item);
  while (feed.children.length > LIVE_FEED_LENGTH) feed.lastChild.remove();
}

// ---- Start ----

function start() {
  takeTokenFromFragment();
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("sign-in-token").value.trim();
    $("sign-in-token").value = "";
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("retry").addEventListener("click", load);
  $("range-preset").addEventListener("change", () => {
    if ($("range-preset").value !== "custom") load();
    else $("custom-range").hidden = false;
  });
  $("range").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  // A link with a new #token= opened in this tab changes only the fragment: no reload.
  window.addEventListener("hashchange", () => {
    takeTokenFromFragment();
    signInFromStorage();
  });
  signInFromStorage();
}

function signInFromStorage() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else signOut();
}

start();
