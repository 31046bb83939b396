/**
 * Text rendering of the fleet view for people: tables, one deployment's
 * status, and the rollout progress line. Pure.
 *
 * Much of what is shown comes from devices (status messages, reported
 * labels and deployment names), and a stolen device can write anything
 * there. Every cell and line goes through {@linkcode escapeControl}, so that
 * text can neither move the cursor, clear the screen, retitle the window nor
 * break a table row: a device's ESC shows as `\u001b`, a newline as `\n`.
 *
 * @module
 */

import type { DeploymentView, DeviceView } from "../fleet/aggregate.ts";
import { formatLabels } from "@drover/contracts";

/**
 * C0 controls, DEL, C1 controls (U+0080–U+009F: U+009B is an 8-bit CSI some
 * terminals obey), the line and paragraph separators and the bidirectional
 * formatting characters (they reorder what is displayed around them).
 */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** The subset JSON.stringify leaves raw inside strings (it escapes C0 itself). */
const CONTROL_RAW_IN_JSON = /[\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const SHORT_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

const unicodeEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/**
 * `text` with every control character written out as JSON writes it —
 * `\n`, `\r`, `\t`, otherwise `\uXXXX` (ESC is `\u001b`) — so it prints
 * as visible text on one line. Other characters, backslashes included, are
 * kept as they are. Pure.
 */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, (c) => SHORT_ESCAPES[c] ?? unicodeEscape(c));
}

/**
 * A log line a device sent, for the terminal: {@linkcode escapeControl} but
 * TAB kept (logs align with it, and a TAB cannot move the cursor back or off
 * the line). Pure.
 */
export function escapeLogLine(text: string): string {
  return text.replace(CONTROL, (c) => c === "\t" ? c : SHORT_ESCAPES[c] ?? unicodeEscape(c));
}

/**
 * `JSON.stringify(value, null, 2)` plus a newline, with DEL, C1 and the other
 * characters {@linkcode escapeControl} handles that JSON leaves raw written as
 * `\uXXXX` too: the same JSON value, safe to print on a terminal. Pure.
 */
export function jsonForTerminal(value: unknown): string {
  // These characters only occur inside strings there, where `\uXXXX` means the same.
  return JSON.stringify(value, null, 2).replace(CONTROL_RAW_IN_JSON, unicodeEscape) + "\n";
}

/** Renders rows as left-aligned columns separated by two spaces; cells are escaped. */
export function table(header: string[], rows: string[][]): string {
  header = header.map(escapeControl);
  rows = rows.map((r) => r.map(escapeControl));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

/** `30s`, `5m`, `2h`, `3d` — a compact age. */
export function formatAge(seconds: number | null): string {
  if (seconds === null) return "never";
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

/** `k=v,…` sorted by key, `-` for none. */
function labelsCell(labels: Record<string, string>): string {
  const sorted = Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
  return formatLabels(sorted) || "-";
}

/**
 * The AGENT column: the release a device runs (its built-in version for the
 * installed agent) and, during or after an update, where that stands, e.g.
 * `1.1.0→1.2.0 downloading 40%`, `1.2.0 trial`, `1.1.0 (1.2.0 failed)`. Pure.
 */
export function agentColumn(d: Pick<DeviceView, "agent_version" | "agent_update">): string {
  const u = d.agent_update;
  const running = u === undefined || u.running === "factory" || u.running === "unmanaged"
    ? d.agent_version ?? "-"
    : u.running;
  if (u === undefined || u.phase === "idle" || u.wanted === undefined) return running;
  if (u.phase === "failed") return `${running} (${u.wanted} failed)`;
  if (u.phase === "trial") return `${u.wanted} trial`;
  const progress = u.phase === "downloading" && u.size
    ? ` ${Math.floor(((u.downloaded ?? 0) / u.size) * 100)}%`
    : "";
  return `${running}→${u.wanted} ${u.phase}${progress}`;
}

/** The `get devices` table. */
export function devicesTable(devices: readonly DeviceView[]): string {
  if (devices.length === 0) return "No devices are registered or have reported yet.\n";
  return table(
    ["DEVICE", "STATUS", "ONLINE", "LAST SEEN", "AGENT", "LABELS", "DEPLOYMENTS", "MESSAGE"],
    devices.map((d) => [
      d.device_id,
      d.status,
      d.online ? "online" : "offline",
      formatAge(d.heartbeat_age_seconds),
      agentColumn(d),
      labelsCell(d.labels),
      d.deployments.length === 0 ? "-" : d.deployments.join(","),
      // Why it is not ready (the device's words), then the operator's notes about it.
      [
        d.reason,
        d.message,
        d.agent_update?.phase === "failed" ? `agent update: ${d.agent_update.message}` : undefined,
      ].filter((m) => m !== undefined && m !== "").join("; ") || "-",
    ]),
  );
}

/** The `get deployments` table. */
export function deploymentsTable(deployments: readonly DeploymentView[]): string {
  if (deployments.length === 0) return "No deployments.\n";
  return table(
    ["NAME", "REVISION", "TARGETED", "READY", "FAILED", "PENDING", "OFFLINE", "SOURCE"],
    deployments.map((d) => [
      d.name,
      d.revision === null ? "-" : String(d.revision),
      String(d.targeted),
      String(d.ready),
      String(d.failed),
      String(d.pending),
      String(d.offline),
      d.source ?? "-",
    ]),
  );
}

/**
 * The `status NAME` report: summary line and one row per device. Every
 * revision shown is a deployment revision (what `apply` printed).
 */
export function deploymentStatus(d: DeploymentView): string {
  const revision = d.revision === null ? "" : ` (revision ${d.revision})`;
  const head = `Deployment ${escapeControl(d.name)}${revision}: ${summaryCounts(d)}\n`;
  if (d.devices.length === 0) return head + "No device is targeted.\n";
  return head + "\n" + table(
    ["DEVICE", "PHASE", "WANTED", "APPLIED", "ONLINE", "MESSAGE"],
    d.devices.map((r) => [
      r.device_id,
      r.phase,
      r.wanted_revision === null ? "-" : String(r.wanted_revision),
      r.applied_revision === null ? "-" : String(r.applied_revision),
      r.online ? "online" : "offline",
      r.message || "-",
    ]),
  );
}

/** `3/5 ready, 1 failed, 1 pending`. */
export function summaryCounts(d: DeploymentView): string {
  const parts = [`${d.ready}/${d.targeted} ready`];
  if (d.failed > 0) parts.push(`${d.failed} failed`);
  if (d.pending > 0) parts.push(`${d.pending} pending`);
  if (d.offline > 0) parts.push(`${d.offline} offline`);
  return parts.join(", ");
}
