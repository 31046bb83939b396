// The dashboard in the browser: the server's HTML stays as it is until the event stream's first
// snapshot arrives; from then on `#live` is re-rendered (with the same render.js the server
// uses) after each patch, at most once per animation frame. Filters, sorting and paging run
// here, on the whole fleet the stream delivers, and keep the URL in step (so a reload or a
// shared link shows the same view, also without JavaScript).

import {
  age,
  buildModel,
  parseQuery,
  queryString,
  renderDeployment,
  renderDevice,
  renderFleet,
} from "./render.js";

const body = document.body;
const page = body.dataset.page;
const subject = body.dataset.subject ?? "";
const live = document.getElementById("live");
const conn = document.getElementById("conn");
const form = document.getElementById("filters");
/**
 * The device page's events and logs panes (outside `#live`, so re-renders keep them), loaded
 * only there: the fleet page, the one opened most, stays as small as it was.
 */
const panes = page === "device" ? (await import("./device.js")).initDevicePanes(subject) : null;

/** Key → value of the live entries, null until the first snapshot. */
let entries = null;
/** The device page's detail (`{status}`, `{error}` or null). */
let detail = null;
/** Server clock minus ours, so ages agree with the operator's judgement. */
let skew = 0;
let query = parseQuery(new URLSearchParams(location.search));
let scheduled = false;

/** For tests and the bench: how many live renders, and when the first one finished. */
const stats = { renders: 0, firstRenderMs: null, events: 0 };
globalThis.droverDashboard = stats;

const serverNow = () => Date.now() + skew;

function focusKey() {
  const el = document.activeElement;
  if (!el || !live.contains(el)) return null;
  return el.dataset?.key
    ? `[data-key="${el.dataset.key}"]`
    : el.getAttribute("href")
    ? `a[href="${CSS.escape(el.getAttribute("href"))}"]`
    : null;
}

function render() {
  scheduled = false;
  if (entries === null) return;
  const model = buildModel(entries);
  const key = focusKey();
  let html;
  if (page === "fleet") html = renderFleet(model, query, serverNow());
  else if (page === "deployment") html = renderDeployment(model, subject, query, serverNow());
  else html = renderDevice(model, subject, detail, serverNow());
  live.innerHTML = html;
  // Keep keyboard users where they were: the same link (or pager/sort control) gets focus back.
  if (key !== null) live.querySelector(key)?.focus();
  stats.renders++;
  if (stats.firstRenderMs === null) stats.firstRenderMs = performance.now();
  body.dataset.renders = String(stats.renders);
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(render);
}

function setConn(text, state) {
  if (conn.textContent !== text) conn.textContent = text;
  body.dataset.live = state;
}

function syncForm() {
  if (!form) return;
  for (const el of form.elements) {
    if (el.name && el.name in query) el.value = String(query[el.name]);
  }
}

function setQuery(next, push) {
  query = next;
  const url = queryString(query);
  history[push ? "pushState" : "replaceState"](null, "", url === "?" ? location.pathname : url);
  syncForm();
  schedule();
}

if (form) {
  const fromForm = () => {
    const params = new URLSearchParams(new FormData(form));
    params.delete("page"); // a new filter starts at the first page
    setQuery(parseQuery(params), false);
  };
  form.addEventListener("input", fromForm);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    fromForm();
  });
}

live.addEventListener("click", (e) => {
  const a = e.target.closest?.("a[data-nav]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  setQuery(parseQuery(new URL(a.href).searchParams), true);
});

addEventListener("popstate", () => {
  query = parseQuery(new URLSearchParams(location.search));
  syncForm();
  schedule();
});

// Ages move with time; only the <time> texts change, not the table.
setInterval(() => {
  const now = serverNow();
  for (const t of live.querySelectorAll("time[data-ms]")) {
    const text = age(Number(t.dataset.ms), now);
    if (t.textContent !== text) t.textContent = text;
  }
}, 1000);

const stream = new EventSource(
  "/ui/events" + (page === "device" ? `?device=${encodeURIComponent(subject)}` : ""),
);
stream.addEventListener("open", () => setConn("Live", "open"));
stream.addEventListener("error", () => {
  if (stream.readyState === EventSource.CLOSED) {
    setConn("Disconnected: reload the page (or log in again).", "closed");
  } else {
    setConn("Connection lost, reconnecting…", "reconnecting");
  }
});
stream.addEventListener("snapshot", (e) => {
  const data = JSON.parse(e.data);
  stats.events++;
  skew = data.now - Date.now();
  if (data.entries === null) return; // the operator is starting; a snapshot follows
  entries = new Map(Object.entries(data.entries));
  setConn("Live", "open");
  schedule();
});
stream.addEventListener("patch", (e) => {
  const data = JSON.parse(e.data);
  stats.events++;
  skew = data.now - Date.now();
  if (entries === null) return;
  for (const [k, v] of Object.entries(data.set)) entries.set(k, v);
  for (const k of data.del) entries.delete(k);
  schedule();
});
stream.addEventListener("device", (e) => {
  detail = JSON.parse(e.data);
  stats.events++;
  panes?.detail(detail);
  schedule();
});
