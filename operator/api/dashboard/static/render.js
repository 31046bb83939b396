// @ts-check
// The dashboard's rendering, shared by the server (the first, complete HTML of every page, which
// works without JavaScript) and the browser (re-rendering as events arrive). Pure functions from
// the live entries (see operator/api/dashboard/live.ts `flatten`) and the page's query to HTML text.
// Everything a device reports is escaped here: a device's words are never markup.
// Type-checked (`deno check`, through mod.ts) against the entry types of live.ts.

/** @typedef {import("../live.ts").DeviceEntry} DeviceEntry */
/** @typedef {import("../live.ts").DeploymentEntry} DeploymentEntry */
/** @typedef {import("../live.ts").DeploymentDeviceEntry} DeploymentDeviceEntry */
/** @typedef {import("../live.ts").SeenEntry} SeenEntry */
/** @typedef {import("../live.ts").DeviceDetail} DeviceDetail */
/** @typedef {import("../../../rollout/view.ts").RolloutStatusView} RolloutStatusView */
/** @typedef {import("../../../rollout/view.ts").RolloutDeviceView} RolloutDeviceView */
/** @typedef {import("../../../rollout/view.ts").HistoryItem} HistoryItem */
/** @typedef {DeviceEntry & { id: string, seen: SeenEntry }} DeviceRow */
/** @typedef {DeploymentDeviceEntry & { id: string }} DeploymentDeviceRow */
/**
 * @typedef {{ devices: DeviceRow[], deployments: DeploymentEntry[],
 *   rows: Map<string, DeploymentDeviceRow[]> }} Model
 */
/**
 * @typedef {{ q: string, label: string, online: string, status: string, phase: string,
 *   sort: string, dir: string, page: number }} Query
 */
/**
 * @template T
 * @typedef {{ rows: T[], total: number, matched: number, start: number, page: number,
 *   pages: number }} Selection
 */

/** Rows per table page: the DOM never holds more, whatever the fleet's size. */
export const PAGE_SIZE = 50;

/** @type {Record<string, string>} */
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/**
 * Text made safe for HTML content and attribute values.
 * @param {unknown} value
 * @returns {string}
 */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

/**
 * The page model from entries (an object or a Map of key → value).
 * @param {Map<string, unknown> | Record<string, unknown> | null | undefined} entries
 * @returns {Model}
 */
export function buildModel(entries) {
  const pairs = entries instanceof Map ? entries.entries() : Object.entries(entries ?? {});
  /** @type {Map<string, DeviceRow>} */
  const devices = new Map();
  /** @type {Map<string, SeenEntry>} */
  const seen = new Map();
  /** @type {Map<string, DeploymentEntry>} */
  const deployments = new Map();
  /** @type {Map<string, DeploymentDeviceRow[]>} */
  const rows = new Map();
  for (const [key, value] of pairs) {
    const kind = key.slice(0, 2);
    const rest = key.slice(2);
    if (kind === "d:") {
      devices.set(rest, { id: rest, seen: null, .../** @type {DeviceEntry} */ (value) });
    } else if (kind === "s:") seen.set(rest, /** @type {SeenEntry} */ (value));
    else if (kind === "p:") deployments.set(rest, /** @type {DeploymentEntry} */ (value));
    else if (kind === "r:") {
      const slash = rest.indexOf("/");
      const name = rest.slice(0, slash);
      let list = rows.get(name);
      if (list === undefined) rows.set(name, list = []);
      list.push({ id: rest.slice(slash + 1), .../** @type {DeploymentDeviceEntry} */ (value) });
    }
  }
  for (const [id, device] of devices) device.seen = seen.get(id) ?? null;
  return {
    devices: [...devices.values()],
    deployments: [...deployments.values()].sort((a, b) => cmp(a.name, b.name)),
    rows,
  };
}

/**
 * @param {string | number} a
 * @param {string | number} b
 */
function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A short age: `4s`, `12m`, `3h`, `2d`; `never` without a time.
 * @param {number | null | undefined} ms
 * @param {number} now
 */
export function age(ms, now) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s}s`;
  if (s < 90 * 60) return `${Math.round(s / 60)}m`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/** The exact time a relative one stands for, as the hover text says it: `2026-05-04 10:42:07 UTC`. */
/** @param {number} ms */
export function exactTime(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.[0-9]+Z$/, " UTC");
}

/**
 * @param {number | null | undefined} ms
 * @param {number} now
 */
function timeCell(ms, now) {
  if (ms === null || ms === undefined) return "never";
  return `<time datetime="${new Date(ms).toISOString()}" data-ms="${ms}" title="${exactTime(ms)}">${
    age(ms, now)
  }</time>`;
}

/** `12m ago`, live (app.js moves the age), with the exact time on hover. */
/**
 * @param {number | null | undefined} ms
 * @param {number} now
 */
function agoCell(ms, now) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "never";
  return `${timeCell(ms, now)} ago`;
}

/**
 * Parses `site=home, arch` into [key, value|null] pairs; every pair must match.
 * @param {string | null | undefined} text
 * @returns {[string, string | null][]}
 */
export function parseLabelFilter(text) {
  return String(text ?? "").split(/[\s,]+/).filter((p) => p !== "").map((part) => {
    const eq = part.indexOf("=");
    return eq < 0 ? [part, null] : [part.slice(0, eq), part.slice(eq + 1)];
  });
}

const FLEET_SORTS = ["id", "status", "online", "seen", "version"];

/**
 * The page's query from URL search parameters, with defaults.
 * @param {URLSearchParams} params
 * @returns {Query}
 */
export function parseQuery(params) {
  /** @param {string} k */
  const get = (k) => params.get(k) ?? "";
  const page = Number.parseInt(get("page"), 10);
  return {
    q: get("q").trim(),
    label: get("label").trim(),
    online: ["online", "offline"].includes(get("online")) ? get("online") : "",
    status: get("status").trim(),
    phase: ["ready", "failed", "pending"].includes(get("phase")) ? get("phase") : "",
    sort: FLEET_SORTS.includes(get("sort")) ? get("sort") : "id",
    dir: get("dir") === "desc" ? "desc" : "asc",
    page: Number.isSafeInteger(page) && page > 0 ? page : 1,
  };
}

/**
 * `?…` for the query with `changes` applied; default values are left out.
 * @param {Query} query
 * @param {Partial<Query>} [changes]
 */
export function queryString(query, changes = {}) {
  const q = { ...query, ...changes };
  const params = new URLSearchParams();
  for (const k of /** @type {const} */ (["q", "label", "online", "status", "phase"])) {
    if (q[k]) params.set(k, q[k]);
  }
  if (q.sort !== "id") params.set("sort", q.sort);
  if (q.dir !== "asc") params.set("dir", q.dir);
  if (q.page > 1) params.set("page", String(q.page));
  const text = params.toString();
  return text === "" ? "?" : `?${text}`;
}

/** @param {Record<string, string> | null | undefined} labels */
function labelsText(labels) {
  return Object.entries(labels ?? {}).sort(([a], [b]) => cmp(a, b)).map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

/**
 * @param {DeviceRow} d
 * @param {Query} query
 * @param {[string, string | null][]} labels
 */
function deviceMatches(d, query, labels) {
  if (query.online === "online" && !d.online) return false;
  if (query.online === "offline" && d.online) return false;
  if (query.status && d.status !== query.status) return false;
  for (const [k, v] of labels) {
    if (!(k in (d.labels ?? {}))) return false;
    if (v !== null && d.labels[k] !== v) return false;
  }
  if (query.q) {
    const hay = [
      d.id,
      d.status,
      d.agent_version,
      labelsText(d.labels),
      d.deployments.join(" "),
      d.reason,
      d.message,
    ].join(" ").toLowerCase();
    if (!hay.includes(query.q.toLowerCase())) return false;
  }
  return true;
}

/** @param {DeviceRow} d */
const SORT_KEYS_BY_ID = (d) => d.id;

/** @type {Record<string, (d: DeviceRow) => string | number>} */
const SORT_KEYS = {
  id: SORT_KEYS_BY_ID,
  status: (d) => d.status,
  online: (d) => (d.online ? 1 : 0),
  seen: (d) => d.seen ?? -Infinity,
  version: (d) => d.agent_version ?? "",
};

/**
 * Filters, sorts and pages the devices: `{rows, total, matched, page, pages}`.
 * @param {DeviceRow[]} devices
 * @param {Query} query
 * @returns {Selection<DeviceRow>}
 */
export function selectDevices(devices, query) {
  const labels = parseLabelFilter(query.label);
  const matched = devices.filter((d) => deviceMatches(d, query, labels));
  const key = SORT_KEYS[query.sort] ?? SORT_KEYS_BY_ID;
  const sign = query.dir === "desc" ? -1 : 1;
  matched.sort((a, b) => sign * (cmp(key(a), key(b)) || cmp(a.id, b.id)));
  return page(matched, query.page, devices.length);
}

/**
 * @template T
 * @param {T[]} matched
 * @param {number} wanted
 * @param {number} total
 * @returns {Selection<T>}
 */
function page(matched, wanted, total) {
  const pages = Math.max(1, Math.ceil(matched.length / PAGE_SIZE));
  const current = Math.min(wanted, pages);
  const start = (current - 1) * PAGE_SIZE;
  return {
    rows: matched.slice(start, start + PAGE_SIZE),
    total,
    matched: matched.length,
    start,
    page: current,
    pages,
  };
}

/**
 * Fleet-wide counts.
 * @param {Model} model
 */
export function fleetCounts(model) {
  const c = {
    devices: model.devices.length,
    online: 0,
    offline: 0,
    ready: 0,
    degraded: 0,
    deployments: model.deployments.length,
    deploymentsReady: 0,
    deploymentsFailed: 0,
    deploymentsPending: 0,
  };
  for (const d of model.devices) {
    if (d.online) c.online++;
    else c.offline++;
    if (d.status === "ready") c.ready++;
    else if (d.status === "degraded") c.degraded++;
  }
  for (const p of model.deployments) {
    const state = deploymentState(p);
    if (state === "ready") c.deploymentsReady++;
    else if (state === "failed") c.deploymentsFailed++;
    else c.deploymentsPending++;
  }
  return c;
}

/**
 * `ready` when every targeted device is, `failed` when any failed, else `pending`.
 * @param {DeploymentEntry} p
 */
export function deploymentState(p) {
  if (p.failed > 0) return "failed";
  if (p.ready === p.targeted) return "ready";
  return "pending";
}

/** @type {Record<string, string>} */
const TONES = {
  ready: "ok",
  running: "ok",
  online: "ok",
  degraded: "bad",
  failed: "bad",
  offline: "bad",
  invalid: "bad",
  pending: "warn",
  starting: "warn",
  unknown: "muted",
  stopped: "muted",
};

/** @param {string} text */
function badge(text) {
  return `<span class="badge ${TONES[text] ?? "muted"}">${esc(text)}</span>`;
}

/**
 * @param {string} label
 * @param {unknown} value
 */
function stat(label, value, tone = "", id = "") {
  return `<div class="stat ${tone}"${id ? ` id="${id}"` : ""}><dt>${esc(label)}</dt>` +
    `<dd>${esc(value)}</dd></div>`;
}

/**
 * @param {string} label
 * @param {string} key
 * @param {Query} query
 */
function sortHeader(label, key, query) {
  const active = query.sort === key;
  const dir = active && query.dir === "asc" ? "desc" : "asc";
  const aria = active ? ` aria-sort="${query.dir === "asc" ? "ascending" : "descending"}"` : "";
  const arrow = active ? (query.dir === "asc" ? " ▲" : " ▼") : "";
  return `<th scope="col"${aria}><a href="${
    esc(queryString(query, { sort: key, dir, page: 1 }))
  }"` +
    ` data-nav data-key="sort-${key}">${esc(label)}${arrow}</a></th>`;
}

/**
 * @param {Selection<unknown>} sel
 * @param {Query} query
 * @param {string} what
 */
function pager(sel, query, what) {
  const shown = sel.matched === 0
    ? `No ${what} match`
    : `${what.slice(0, 1).toUpperCase()}${what.slice(1)} ${sel.start + 1}–${
      sel.start + sel.rows.length
    } of ${sel.matched}${sel.matched !== sel.total ? ` (filtered from ${sel.total})` : ""}`;
  /**
   * @param {string} label
   * @param {number} n
   * @param {string} rel
   */
  const link = (label, n, rel) =>
    n < 1 || n > sel.pages || n === sel.page
      ? `<span class="off" aria-disabled="true">${label}</span>`
      : `<a href="${
        esc(queryString(query, { page: n }))
      }" rel="${rel}" data-nav data-key="page-${rel}">${label}</a>`;
  return `<nav class="pager" aria-label="${esc(what)} pages"><span id="shown">${
    esc(shown)
  }</span>` +
    link("« First", 1, "first") + link("‹ Previous", sel.page - 1, "prev") +
    `<span>Page ${sel.page} of ${sel.pages}</span>` + link("Next ›", sel.page + 1, "next") +
    link("Last »", sel.pages, "last") + `</nav>`;
}

/**
 * The fleet page's filter form (rendered by the server; the browser keeps it).
 * @param {Query} query
 */
export function renderFleetForm(query) {
  /**
   * @param {string} v
   * @param {string} label
   * @param {string} current
   */
  const opt = (v, label, current) =>
    `<option value="${v}"${current === v ? " selected" : ""}>${label}</option>`;
  return `<form id="filters" class="filters" method="get" action="/" role="search">
<div><label for="q">Search</label><input id="q" name="q" type="search" value="${
    esc(query.q)
  }" placeholder="id, status, deployment, message" autocomplete="off"></div>
<div><label for="label">Labels</label><input id="label" name="label" value="${
    esc(query.label)
  }" placeholder="site=home, arch" autocomplete="off"></div>
<div><label for="online">Online</label><select id="online" name="online">${
    opt("", "all", query.online)
  }${opt("online", "online", query.online)}${opt("offline", "offline", query.online)}</select></div>
<div><label for="status">Status</label><select id="status" name="status">${
    ["", "ready", "degraded", "starting", "stopped", "unknown", "invalid"]
      .map((s) => opt(s, s || "all", query.status)).join("")
  }</select></div>
<input type="hidden" name="sort" value="${
    esc(query.sort)
  }"><input type="hidden" name="dir" value="${esc(query.dir)}">
<button type="submit">Apply</button></form>`;
}

/**
 * The fleet page's live part: counts, deployments, one page of devices.
 * @param {Model} model
 * @param {Query} query
 * @param {number} now
 */
export function renderFleet(model, query, now) {
  const c = fleetCounts(model);
  const counts = `<section aria-labelledby="counts-h"><h2 id="counts-h" class="sr-only">Counts</h2>
<dl class="stats">${stat("Devices", c.devices, "", "count-devices")}${
    stat("Online", c.online, "ok", "count-online")
  }${stat("Offline", c.offline, c.offline > 0 ? "bad" : "", "count-offline")}${
    stat("Ready", c.ready, "ok", "count-ready")
  }${stat("Degraded", c.degraded, c.degraded > 0 ? "bad" : "", "count-degraded")}${
    stat("Deployments", c.deployments, "", "count-deployments")
  }${stat("Deployments ready", c.deploymentsReady, "ok", "count-deployments-ready")}${
    stat(
      "Deployments failed",
      c.deploymentsFailed,
      c.deploymentsFailed > 0 ? "bad" : "",
      "count-deployments-failed",
    )
  }${
    stat("Deployments pending", c.deploymentsPending, "", "count-deployments-pending")
  }</dl></section>`;
  const deployments = model.deployments.length === 0
    ? `<p>No deployments yet: <code>operator apply -f FILE</code>.</p>`
    : `<div class="scroll"><table id="deployments"><caption>Deployments</caption><thead><tr>
<th scope="col">Name</th><th scope="col">State</th><th scope="col">Rollout</th>
<th scope="col">Revision</th><th scope="col">Targeted</th><th scope="col">Ready</th><th scope="col">Failed</th>
<th scope="col">Pending</th><th scope="col">Offline</th></tr></thead><tbody>${
      model.deployments.map((p) =>
        `<tr><th scope="row"><a href="/deployments/${encodeURIComponent(p.name)}">${
          esc(p.name)
        }</a></th><td>${badge(deploymentState(p))}</td><td class="rollout-cell">${
          rolloutCell(/** @type {RolloutStatusView | undefined} */ (p.rollout))
        }</td><td>${esc(p.revision ?? "-")}</td><td>${esc(p.targeted)}</td><td>${
          esc(p.ready)
        }</td><td>${esc(p.failed)}</td><td>${esc(p.pending)}</td><td>${esc(p.offline)}</td></tr>`
      ).join("")
    }</tbody></table></div>`;
  const sel = selectDevices(model.devices, query);
  const rows = sel.rows.map((d) =>
    `<tr data-device="${esc(d.id)}"><th scope="row"><a href="/devices/${
      encodeURIComponent(d.id)
    }">${esc(d.id)}</a></th><td>${badge(d.status)}</td><td>${
      badge(d.online ? "online" : "offline")
    }</td><td>${timeCell(d.seen, now)}</td><td>${esc(d.agent_version ?? "-")}</td><td>${
      esc(labelsText(d.labels) || "-")
    }</td><td>${
      d.deployments.map((n) => `<a href="/deployments/${encodeURIComponent(n)}">${esc(n)}</a>`)
        .join(", ") || "-"
    }</td><td class="msg">${esc([d.reason, d.message].filter(Boolean).join("; ") || "-")}</td></tr>`
  ).join("");
  const table =
    `<div class="scroll"><table id="devices" aria-describedby="shown"><caption class="sr-only">Devices</caption><thead><tr>${
      sortHeader("Device", "id", query)
    }${sortHeader("Status", "status", query)}${sortHeader("Online", "online", query)}${
      sortHeader("Last seen", "seen", query)
    }${
      sortHeader("Agent", "version", query)
    }<th scope="col">Labels</th><th scope="col">Deployments</th><th scope="col">Message</th></tr></thead><tbody>${rows}</tbody></table></div>`;
  return counts + deployments + `<h2 id="devices-h">Devices</h2>` + pager(sel, query, "devices") +
    table;
}

/** @type {Record<string, number>} */
const PHASE_ORDER = { failed: 0, pending: 1, ready: 2 };

/** How a rollout's state reads: `rolled_back` → `rolled back`. */
/** @type {Record<string, string>} */
const ROLLOUT_WORDS = {
  progressing: "rolling out",
  paused: "paused",
  complete: "complete",
  rolled_back: "rolled back",
  failed: "failed",
};
/** @type {Record<string, string>} */
const ROLLOUT_TONES = {
  progressing: "warn",
  paused: "warn",
  complete: "ok",
  rolled_back: "bad",
  failed: "bad",
};

/** @param {string | undefined} state */
function rolloutBadge(state) {
  const word = ROLLOUT_WORDS[state ?? ""] ?? String(state ?? "unknown");
  return `<span class="badge ${ROLLOUT_TONES[state ?? ""] ?? "muted"}">${esc(word)}</span>`;
}

/** The fleet page's word on a deployment's latest rollout: running, paused, rolled back… */
/** @param {Partial<RolloutStatusView> | undefined} r */
export function rolloutCell(r) {
  if (typeof r?.state !== "string") return `<span class="muted">-</span>`;
  const where = r.state === "progressing" || r.state === "paused"
    ? ` batch ${esc(r.batch)} of ${esc(r.batches)}`
    : r.state === "rolled_back" && r.stable_revision !== null && r.stable_revision !== undefined
    ? ` to revision ${esc(r.stable_revision)}`
    : "";
  return `${rolloutBadge(r.state)}<span class="muted">${where}</span>`;
}

/** The batch a rollout device is in, as far as the rollout state tells. */
/**
 * @param {RolloutStatusView} r
 * @param {RolloutDeviceView} device
 */
function deviceBatch(r, device) {
  if ((r.batch_devices ?? []).includes(device.device_id)) return `${r.batch} (current)`;
  // An earlier batch; which one the rollout state does not keep.
  if (device.updated) return r.batch > 2 ? `1–${r.batch - 1}` : "1";
  return r.state === "progressing" || r.state === "paused" ? "later" : "-";
}

/** @type {Record<string, number>} */
const ROLLOUT_DEVICE_ORDER = { failed: 0, pending: 1, waiting: 2, ready: 3 };

/**
 * The deployment page's rollout view: the state, the batches as a stepper, progress, the
 * devices that stopped it with their messages, and one row per device (batch, phase, the
 * revision it reports, message). `rows` are the deployment's device rows (what each device
 * runs), `now` the server's time.
 * @param {RolloutStatusView | undefined} r
 * @param {DeploymentDeviceRow[]} rows
 * @param {number} now
 */
export function renderRollout(r, rows, now) {
  const head = `<section id="rollout" aria-labelledby="rollout-h"><h2 id="rollout-h">Rollout</h2>`;
  if (typeof r?.state !== "string" || typeof r?.batches !== "number") {
    return head +
      `<p class="muted">No staged rollout is recorded for this deployment: every targeted device ` +
      `gets a new revision at once.</p></section>`;
  }
  const total = Math.max(r.batches, 1);
  const finished = r.state === "complete";
  const steps = Array.from({ length: total }, (_, i) => {
    const n = i + 1;
    const state = finished || n < r.batch
      ? "done"
      : n === r.batch
      ? (r.state === "progressing" ? "current" : r.state === "paused" ? "paused" : "stopped")
      : "todo";
    const word = {
      done: "done",
      current: "in progress",
      paused: "paused",
      stopped: "stopped",
      todo: "to do",
    }[state];
    return `<li class="step ${state}"${n === r.batch ? ' aria-current="step"' : ""}>` +
      `<span class="step-n">Batch ${n}</span> <span class="step-state">${word}</span></li>`;
  }).join("");
  const from = r.stable_revision === null || r.stable_revision === undefined
    ? "no earlier revision"
    : `revision ${esc(r.stable_revision)}`;
  const paused = r.paused_by === "user"
    ? " by a person (<code>operator rollout resume NAME</code> continues)"
    : r.paused_by === "failure"
    ? " by a failed batch"
    : "";
  const headline = `<p id="rollout-headline">${rolloutBadge(r.state)}${paused} · ` +
    `<strong>revision ${esc(r.revision)}</strong>, batch ${esc(r.batch)} of ${esc(r.batches)} · ` +
    `stable: ${from}</p>` +
    (r.message ? `<p id="rollout-message" class="msg">${esc(r.message)}</p>` : "");
  const times = `<p class="muted">Started ${agoCell(Date.parse(r.started_at), now)}, ` +
    `last change ${agoCell(Date.parse(r.updated_at), now)}.</p>`;
  const targeted = Number(r.targeted) || 0;
  const ready = Number(r.ready) || 0;
  const progress = targeted > 0
    ? `<p><label for="rollout-progress">${ready} of ${targeted} ready, ${esc(r.updated)} updated${
      r.failed > 0 ? `, ${esc(r.failed)} failed` : ""
    }</label> <progress id="rollout-progress" max="${targeted}" value="${ready}"></progress></p>`
    : "";
  const failures = (r.failures ?? []).length === 0
    ? ""
    : `<h3 id="rollout-failures-h">Stopped by</h3><ul id="rollout-failures">${
      r.failures.slice(0, 20).map((f) =>
        `<li><a href="/devices/${encodeURIComponent(f.device)}">${esc(f.device)}</a> ${
          badge(f.phase)
        } <span class="msg">${esc(f.message || "(no message)")}</span></li>`
      ).join("")
    }${r.failures.length > 20 ? `<li>… and ${r.failures.length - 20} more</li>` : ""}</ul>`;
  const byId = new Map(rows.map((row) => [row.id, row]));
  const devices = [...(r.devices ?? [])].sort((a, b) =>
    (ROLLOUT_DEVICE_ORDER[a.phase] ?? 9) - (ROLLOUT_DEVICE_ORDER[b.phase] ?? 9) ||
    cmp(a.device_id, b.device_id)
  );
  const shown = devices.slice(0, PAGE_SIZE);
  const deviceRows = shown.map((d) => {
    const row = byId.get(d.device_id);
    // `running_revision`: what the device runs after a rollback (newer operators); else applied.
    const running = /** @type {{ running_revision?: number | null } | undefined} */ (row);
    const revision = running?.running_revision ?? row?.applied_revision ?? null;
    return `<tr data-device="${esc(d.device_id)}"><th scope="row"><a href="/devices/${
      encodeURIComponent(d.device_id)
    }">${esc(d.device_id)}</a></th><td>${esc(deviceBatch(r, d))}</td><td>${
      badge(d.phase)
    }</td><td>${esc(revision ?? "-")}</td><td class="msg">${esc(d.message || "-")}</td></tr>`;
  }).join("");
  const more = devices.length > shown.length
    ? `<p class="muted">${
      devices.length - shown.length
    } more device(s): see "Devices by phase".</p>`
    : "";
  const table =
    `<div class="scroll"><table id="rollout-devices"><caption class="sr-only">Devices of ` +
    `the rollout, failed first</caption><thead><tr><th scope="col">Device</th>` +
    `<th scope="col">Batch</th><th scope="col">Phase</th><th scope="col">Revision</th>` +
    `<th scope="col">Message</th></tr></thead><tbody>${deviceRows}</tbody></table></div>${more}`;
  return head + headline + `<ol class="stepper" aria-label="Batches">${steps}</ol>` + progress +
    times + failures + table + `</section>`;
}

/** The deployment's revisions, newest first, each with when and how its rollout ended. */
/**
 * @param {HistoryItem[] | undefined} history
 * @param {number} now
 */
export function renderHistory(history, now) {
  const head = `<section id="history" aria-labelledby="history-h"><h2 id="history-h">` +
    `Revision history</h2>`;
  if (!Array.isArray(history) || history.length === 0) {
    return head + `<p class="muted">No revisions recorded.</p></section>`;
  }
  const rows = [...history].sort((a, b) => b.revision - a.revision).slice(0, 20).map((h) =>
    `<tr><th scope="row">${esc(h.revision)}${
      h.marker
        ? ` <span class="badge ${h.marker === "current" ? "ok" : "muted"}">${esc(h.marker)}</span>`
        : ""
    }</th><td>${agoCell(Date.parse(h.created_at), now)}</td><td>${
      h.rollout ? rolloutBadge(h.rollout) : "-"
    }</td><td class="msg">${esc(h.summary || "-")}</td></tr>`
  ).join("");
  return head + `<div class="scroll"><table id="history-table"><caption class="sr-only">` +
    `Revisions, newest first</caption><thead><tr><th scope="col">Revision</th>` +
    `<th scope="col">Created</th><th scope="col">Rollout</th><th scope="col">Change</th></tr>` +
    `</thead><tbody>${rows}</tbody></table></div></section>`;
}

/**
 * The deployment page's filter form.
 * @param {string} name
 * @param {Query} query
 */
export function renderDeploymentForm(name, query) {
  /**
   * @param {string} v
   * @param {string} label
   */
  const opt = (v, label) =>
    `<option value="${v}"${query.phase === v ? " selected" : ""}>${label}</option>`;
  return `<form id="filters" class="filters" method="get" action="/deployments/${
    encodeURIComponent(name)
  }" role="search"><div><label for="q">Search</label><input id="q" name="q" type="search" value="${
    esc(query.q)
  }" placeholder="device, message" autocomplete="off"></div>
<div><label for="phase">Phase</label><select id="phase" name="phase">${opt("", "all")}${
    opt("failed", "failed")
  }${opt("pending", "pending")}${opt("ready", "ready")}</select></div>
<button type="submit">Apply</button></form>`;
}

/**
 * The deployment page's live part: summary, rollout view and history, devices by phase.
 * @param {Model} model
 * @param {string} name
 * @param {Query} query
 * @param {number} now
 */
export function renderDeployment(model, name, query, now) {
  const p = model.deployments.find((d) => d.name === name);
  if (p === undefined) {
    return `<p role="alert">No deployment named <strong>${
      esc(name)
    }</strong> (deleted, or not applied yet).</p>`;
  }
  const summary = `<dl class="stats">${stat("State", deploymentState(p))}${
    stat("Revision", p.revision ?? "-")
  }${stat("Targeted", p.targeted, "", "dep-targeted")}${stat("Ready", p.ready, "ok", "dep-ready")}${
    stat("Failed", p.failed, p.failed > 0 ? "bad" : "", "dep-failed")
  }${stat("Pending", p.pending, "", "dep-pending")}${
    stat("Offline", p.offline, p.offline > 0 ? "bad" : "", "dep-offline")
  }</dl>`;
  const rollout = renderRollout(
    /** @type {RolloutStatusView | undefined} */ (p.rollout),
    model.rows.get(name) ?? [],
    now,
  );
  const history = renderHistory(/** @type {HistoryItem[] | undefined} */ (p.history), now);
  const needle = query.q.toLowerCase();
  const matched = (model.rows.get(name) ?? [])
    .filter((r) => !query.phase || r.phase === query.phase)
    .filter((r) => !needle || `${r.id} ${r.message}`.toLowerCase().includes(needle))
    .sort((a, b) => ((PHASE_ORDER[a.phase] ?? 0) - (PHASE_ORDER[b.phase] ?? 0)) || cmp(a.id, b.id));
  const sel = page(matched, query.page, p.targeted);
  const rows = sel.rows.map((r) =>
    `<tr data-device="${esc(r.id)}"><th scope="row"><a href="/devices/${
      encodeURIComponent(r.id)
    }">${esc(r.id)}</a></th><td>${badge(r.phase)}</td><td>${
      badge(r.online ? "online" : "offline")
    }</td><td>${esc(r.wanted_revision ?? "-")}</td><td>${esc(r.applied_revision ?? "-")}</td><td>${
      esc(r.agent_phase ?? "-")
    }</td><td class="msg">${esc(r.message || "-")}</td></tr>`
  ).join("");
  const table = `<div class="scroll"><table id="deployment-devices"><caption>Devices of ${
    esc(name)
  }, failed first</caption><thead><tr><th scope="col">Device</th><th scope="col">Phase</th>
<th scope="col">Online</th><th scope="col">Wanted</th><th scope="col">Applied</th>
<th scope="col">Agent phase</th><th scope="col">Message</th></tr></thead><tbody>${rows}</tbody></table></div>`;
  return summary + rollout + history + `<h2>Devices by phase</h2>` +
    pager(sel, query, "devices") + table;
}

/**
 * A device's events grouped by kind, deployment and service, newest group first: a crash loop's
 * 84 `container_died` events are one row (`count` 84, `first` and `last` times, the newest
 * event's message), so the log pane below stays in reach. `events` are oldest first, as the
 * agent sends them.
 * @template {{ kind: string, deployment?: string, service?: string, time: string, seq: number }} E
 * @param {E[] | undefined} events
 */
export function groupEvents(events) {
  const groups = new Map();
  for (const e of events ?? []) {
    const key = JSON.stringify([e.kind, e.deployment ?? null, e.service ?? null]);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, { count: 1, first: e.time, last: e.time, event: e });
    else {
      group.count++;
      if (e.time >= group.last) {
        group.last = e.time;
        group.event = e;
      }
      if (e.time < group.first) group.first = e.time;
    }
  }
  return [...groups.values()].sort((a, b) => cmp(b.last, a.last) || cmp(b.event.seq, a.event.seq));
}

/**
 * `deployment/service` pairs a device's status reports, sorted: what its log pane can tail.
 * @param {DeviceDetail | undefined} detail
 * @returns {string[]}
 */
export function logTargets(detail) {
  const out = [];
  for (const [name, dep] of Object.entries(detail?.status?.deployments ?? {})) {
    for (const service of Object.keys(dep?.services ?? {})) out.push(`${name}/${service}`);
  }
  return out.sort(cmp);
}

/**
 * The device page's live part. `detail` is `{status, reported_at}` (the agent's report and when
 * it was stored, ms), `{error}` or null.
 * The events and logs panes (`#events`, `#logs`) are outside this part (operator/api/dashboard/page.ts
 * `devicePanes`): re-rendering it must not wipe a log being followed.
 */
/**
 * @param {Model} model
 * @param {string} id
 * @param {DeviceDetail | undefined} detail
 * @param {number} now
 */
export function renderDevice(model, id, detail, now) {
  const d = model.devices.find((x) => x.id === id);
  if (d === undefined) {
    return `<p role="alert">No device <strong>${esc(id)}</strong> is registered or reporting.</p>`;
  }
  // What the agent reported is true as of its report: on an offline device it is history, so
  // every observation carries its age and is greyed out.
  const reportedAt = detail?.status !== undefined ? detail.reported_at : d.seen;
  const stale = !d.online;
  const asOf = reportedAt === null || reportedAt === undefined
    ? ""
    : ` <span class="as-of">as of ${agoCell(reportedAt, now)}</span>`;
  const observed = (/** @type {string} */ html) =>
    `<span class="${stale ? "stale" : ""}">${html}</span>${asOf}`;
  const note = stale
    ? `<p id="stale-note" class="stale-note" role="note">This device is offline (last contact ${
      agoCell(d.seen, now)
    }): what it reported then is shown greyed out and may no longer be true.</p>`
    : "";
  const summary = note +
    `<dl class="kv"><dt>Status</dt><dd id="device-status">${
      observed(badge(d.status))
    }</dd><dt>Online</dt><dd>${
      badge(d.online ? "online" : "offline")
    }</dd><dt>Last contact</dt><dd>${agoCell(d.seen, now)}</dd><dt>Status reported</dt><dd>${
      agoCell(reportedAt, now)
    }</dd><dt>Agent version</dt><dd>${esc(d.agent_version ?? "-")}</dd><dt>Registered</dt><dd>${
      d.registered ? "yes" : "no"
    }</dd><dt>Labels</dt><dd>${esc(labelsText(d.labels) || "-")}</dd><dt>Reported labels</dt><dd>${
      esc(labelsText(d.reported_labels) || "-")
    }</dd>${d.reason ? `<dt>Reason</dt><dd class="msg">${esc(d.reason)}</dd>` : ""}${
      d.message ? `<dt>Note</dt><dd class="msg">${esc(d.message)}</dd>` : ""
    }</dl>`;
  const rowClass = stale ? ' class="stale"' : "";
  const seenCell = `<td>${agoCell(reportedAt, now)}</td>`;
  const reported = detail?.status?.deployments ?? {};
  /** @type {string[]} */
  const rows = [];
  const names = [...new Set([...d.deployments, ...Object.keys(reported)])].sort(cmp);
  for (const name of names) {
    const dep = reported[name];
    const target = (model.rows.get(name) ?? []).find((r) => r.id === id);
    const link = `<a href="/deployments/${encodeURIComponent(name)}">${esc(name)}</a>`;
    const phase = badge(target?.phase ?? dep?.phase ?? "unknown");
    const services = Object.entries(dep?.services ?? {}).sort(([a], [b]) => cmp(a, b));
    const message = esc(target?.message || dep?.message || "-");
    if (services.length === 0) {
      rows.push(
        `<tr${rowClass}><th scope="row">${link}</th><td>${phase}</td><td>${
          esc(dep?.deployment_revision ?? "-")
        }</td><td colspan="5" class="muted">no services reported</td>${seenCell}<td class="msg">${message}</td></tr>`,
      );
    }
    for (const [svc, s] of services) {
      rows.push(
        `<tr${rowClass}><th scope="row">${link}</th><td>${phase}</td><td>${
          esc(dep?.deployment_revision ?? "-")
        }</td><td>${esc(svc)}</td><td>${badge(s.state)}</td><td>${esc(s.health ?? "-")}</td><td>${
          esc(s.image)
        }</td><td>${esc(s.restarts ?? "-")}</td>${seenCell}<td class="msg">${message}</td></tr>`,
      );
    }
  }
  const error = detail?.error ? `<p role="alert">Invalid status: ${esc(detail.error)}</p>` : "";
  const table =
    `<div class="scroll"><table id="services"><caption>Deployments and services</caption>
<thead><tr><th scope="col">Deployment</th><th scope="col">Phase</th><th scope="col">Revision</th>
<th scope="col">Service</th><th scope="col">State</th><th scope="col">Health</th>
<th scope="col">Image</th><th scope="col">Restarts</th><th scope="col">Observed</th>
<th scope="col">Message</th></tr></thead><tbody>${
      rows.join("") ||
      `<tr><td colspan="10" class="muted">No deployments.</td></tr>`
    }</tbody></table></div>`;
  return summary + error + table;
}
