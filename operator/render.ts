/**
 * Text rendering of the fleet view for people: tables, one deployment's
 * status, and the rollout progress line. Pure.
 *
 * @module
 */

import type { DeploymentView, DeviceView } from "./aggregate.ts";

/** Renders rows as left-aligned columns separated by two spaces. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd();
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

function formatLabels(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1));
  return pairs.length === 0 ? "-" : pairs.map(([k, v]) => `${k}=${v}`).join(",");
}

/** The `get devices` table. */
export function devicesTable(devices: readonly DeviceView[]): string {
  if (devices.length === 0) return "No devices are registered or have reported yet.\n";
  return table(
    ["DEVICE", "STATUS", "ONLINE", "LAST SEEN", "LABELS", "DEPLOYMENTS"],
    devices.map((d) => [
      d.device_id,
      d.status,
      d.online ? "online" : "offline",
      formatAge(d.heartbeat_age_seconds),
      formatLabels(d.labels),
      d.deployments.length === 0 ? "-" : d.deployments.join(","),
    ]),
  );
}

/** The `get deployments` table. */
export function deploymentsTable(deployments: readonly DeploymentView[]): string {
  if (deployments.length === 0) return "No deployments.\n";
  return table(
    ["NAME", "TARGETED", "READY", "FAILED", "PENDING", "OFFLINE"],
    deployments.map((d) => [
      d.name,
      String(d.targeted),
      String(d.ready),
      String(d.failed),
      String(d.pending),
      String(d.offline),
    ]),
  );
}

/** The `status NAME` report: summary line and one row per device. */
export function deploymentStatus(d: DeploymentView): string {
  const head = `Deployment ${d.name}: ${summaryCounts(d)}\n`;
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
