// The device page's panes (markup: operator/api/dashboard/page.ts `devicePanes`), asked of the device
// through the operator: `/ui/devices/ID/events` and `/ui/devices/ID/logs` are the API's device
// routes behind the dashboard's session cookie.
//
// Events: fetched when the page opens, on the Refresh button, every 10 s while the page is
// visible, and shortly after the device's status changes (a repair usually follows an event).
// Logs: pulled one chunk at a time with the cursor of the previous reply, as `operator logs -f`
// does; while "Follow" is on and the page is visible the device holds each request until a new
// line comes (up to 5 s). Hidden or closed page: the pull is aborted, nothing keeps running.
// Everything a device sends enters the DOM as text (textContent), never as markup.

import { groupEvents, logTargets } from "./render.js";

const EVENTS_EVERY_MS = 10_000;
const EVENTS_AFTER_CHANGE_MS = 1_500;
const FOLLOW_WAIT_MS = 5_000;
/** Lines kept in the pane: the oldest go first, so a chatty container never fills memory. */
const MAX_LOG_LINES = 2_000;
/** Chunks read at once to catch up before showing "caught up". */
const MAX_CATCH_UP_CHUNKS = 20;

const BAD_EVENTS = new Set([
  "image_pull_failed",
  "container_died",
  "container_missing",
  "policy_refused",
  "crash_loop",
  "deployment_failed",
]);

function el(tag, props = {}, text) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function setStatus(node, text, state) {
  node.textContent = text;
  node.dataset.state = state;
}

/** The JSON body of a pane read, or an Error carrying the operator's (or device's) words. */
async function readJson(url, signal) {
  const res = await fetch(url, { credentials: "same-origin", cache: "no-store", signal });
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: say the status below
  }
  if (res.status === 401) throw new Error("Not logged in any more: reload the page to log in.");
  if (!res.ok) throw new Error(body?.error ?? `The operator answered HTTP ${res.status}.`);
  return body;
}

/** Wires the panes of device `id`; returns what the page calls when the device's detail changes. */
export function initDevicePanes(id) {
  const base = `/ui/devices/${encodeURIComponent(id)}`;
  const events = initEvents(base);
  const logs = initLogs(base);
  return {
    detail(detail) {
      logs.targets(logTargets(detail));
      events.changed(JSON.stringify(detail));
    },
  };
}

function initEvents(base) {
  const tbody = document.querySelector("#device-events tbody");
  const status = document.getElementById("events-status");
  const button = document.getElementById("events-refresh");
  let busy = false;
  let lastDetail = null;
  let timer = null;

  const shortTime = (t) => t.replace("T", " ").replace(/\.\d+Z$/, "Z");
  /** One row per group of like events: `container_died ×84`, last time, the newest message. */
  const row = ({ count, first, last, event: e }) => {
    const tr = el("tr");
    tr.dataset.kind = e.kind;
    tr.dataset.seq = String(e.seq);
    tr.dataset.count = String(count);
    const time = el(
      "time",
      { dateTime: last },
      count > 1 ? `last ${shortTime(last)}` : shortTime(last),
    );
    if (count > 1) time.title = `${count} times from ${shortTime(first)} to ${shortTime(last)}`;
    const td = (content) => {
      const cell = el("td");
      if (content instanceof Node) cell.append(content);
      else cell.textContent = content;
      return cell;
    };
    const kind = el("span", { className: `badge ${BAD_EVENTS.has(e.kind) ? "bad" : ""}` }, e.kind);
    const kindCell = el("span");
    kindCell.append(kind);
    if (count > 1) kindCell.append(" ", el("span", { className: "count" }, `×${count}`));
    const message = td(
      e.exit_code === undefined ? e.message : `${e.message} (exit code ${e.exit_code})`,
    );
    message.className = "msg";
    tr.append(
      td(time),
      td(kindCell),
      td(e.deployment ?? "-"),
      td(e.service ?? "-"),
      td(e.revision === undefined ? "-" : String(e.revision)),
      message,
    );
    return tr;
  };

  async function load() {
    if (busy) return;
    busy = true;
    button.disabled = true;
    setStatus(status, "Asking the device…", "busy");
    try {
      const reply = await readJson(`${base}/events`);
      const groups = groupEvents(reply.events);
      if (groups.length > 0) tbody.replaceChildren(...groups.map(row));
      else {
        const tr = el("tr");
        tr.append(el("td", { colSpan: 6, className: "muted" }, "No events recorded yet."));
        tbody.replaceChildren(tr);
      }
      setStatus(
        status,
        `${reply.events.length} event(s)` +
          (groups.length < reply.events.length ? ` in ${groups.length} group(s)` : "") +
          `, asked at ${new Date().toLocaleTimeString()}` +
          (reply.dropped > 0 ? ` (${reply.dropped} older ones dropped by the agent)` : "") + ".",
        "ok",
      );
    } catch (e) {
      setStatus(status, e.message, "error");
    } finally {
      busy = false;
      button.disabled = false;
    }
  }

  button.addEventListener("click", () => load());
  setInterval(() => {
    if (!document.hidden) load();
  }, EVENTS_EVERY_MS);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) load();
  });
  load();
  return {
    changed(detail) {
      // The first detail is the state the page opened with: the load above covers it.
      if (lastDetail !== null && detail !== lastDetail) {
        clearTimeout(timer);
        timer = setTimeout(load, EVENTS_AFTER_CHANGE_MS);
      }
      lastDetail = detail;
    },
  };
}

function initLogs(base) {
  const form = document.getElementById("log-form");
  const select = document.getElementById("log-target");
  const tail = document.getElementById("log-tail");
  const follow = document.getElementById("log-follow");
  const status = document.getElementById("logs-status");
  const out = document.getElementById("log-lines");
  /** What is shown: target, cursor after the last line, and the pull in flight. */
  let shown = null;
  let controller = null;

  const url = (params) => `${base}/logs?${new URLSearchParams(params)}`;

  function append(lines) {
    if (lines.length === 0) return;
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    const nodes = lines.map((line) => {
      const div = el("div", { className: `log-line ${line.stream}`, title: line.time });
      div.dataset.stream = line.stream;
      div.append(
        el("span", { className: "log-stream" }, line.stream === "stderr" ? "err" : "out"),
        el("span", { className: "log-text" }, line.text),
      );
      return div;
    });
    out.append(...nodes);
    while (out.childElementCount > MAX_LOG_LINES) out.firstElementChild.remove();
    if (atBottom) out.scrollTop = out.scrollHeight;
  }

  function stop() {
    controller?.abort();
    controller = null;
  }

  /** Reads chunks until caught up (or the follow loop's end); returns the last reply. */
  async function pull(params, signal) {
    const reply = await readJson(url(params), signal);
    append(reply.lines);
    if (reply.cursor !== null) shown.cursor = reply.cursor;
    return reply;
  }

  function next(wait) {
    const [deployment, service] = shown.target.split("/");
    return {
      deployment,
      service,
      follow: String(follow.checked),
      wait_ms: String(wait),
      ...(shown.cursor ? { cursor: JSON.stringify(shown.cursor) } : {}),
    };
  }

  async function show() {
    stop();
    const target = select.value;
    if (!target) {
      setStatus(status, "The device reports no service to read.", "error");
      return;
    }
    const [deployment, service] = target.split("/");
    out.replaceChildren();
    shown = { target, cursor: null };
    const own = controller = new AbortController();
    setStatus(status, `Reading ${target}…`, "busy");
    try {
      let reply = await pull(
        { deployment, service, tail: String(Number(tail.value) || 200) },
        own.signal,
      );
      for (let i = 0; reply.more && i < MAX_CATCH_UP_CHUNKS && !own.signal.aborted; i++) {
        reply = await pull(next(0), own.signal);
      }
      setStatus(
        status,
        `${out.childElementCount} line(s) of ${target}` +
          (reply.state ? ` (container ${reply.state})` : "") + ".",
        "ok",
      );
      if (follow.checked && own === controller) await followLoop(own);
    } catch (e) {
      if (!own.signal.aborted) setStatus(status, e.message, "error");
    }
  }

  async function followLoop(own) {
    setStatus(status, `Following ${shown.target}…`, "following");
    let more = false;
    while (!own.signal.aborted) {
      const reply = await pull(next(more ? 0 : FOLLOW_WAIT_MS), own.signal);
      if (reply.end) {
        follow.checked = false;
        setStatus(
          status,
          `The container ${
            reply.state ?? "ended"
          }: following stopped after ${out.childElementCount} line(s).`,
          "ok",
        );
        return;
      }
      more = reply.more;
    }
  }

  function resume() {
    if (shown === null) return show();
    stop();
    const own = controller = new AbortController();
    followLoop(own).catch((e) => {
      if (own.signal.aborted) return;
      follow.checked = false;
      setStatus(status, `${e.message} Following stopped.`, "error");
    });
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    show();
  });
  select.addEventListener("change", () => {
    // Another container: what is shown no longer matches the choice; show it afresh.
    stop();
    shown = null;
    follow.checked = false;
  });
  follow.addEventListener("change", () => {
    if (follow.checked) resume();
    else {
      stop();
      if (shown !== null) setStatus(status, `Stopped following ${shown.target}.`, "ok");
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stop();
    else if (follow.checked && controller === null) resume();
  });
  addEventListener("pagehide", stop);

  return {
    targets(list) {
      const have = [...select.options].map((o) => o.value).filter(Boolean);
      if (list.join("\n") === have.join("\n")) return;
      const keep = select.value;
      select.replaceChildren(
        ...(list.length > 0
          ? list.map((t) => el("option", { value: t }, t))
          : [el("option", { value: "" }, "(no services reported)")]),
      );
      if (list.includes(keep)) select.value = keep;
    },
  };
}
