/**
 * Health checks, decided purely: a service's check in the runtime's terms,
 * which containers need the agent to run their checks, when the next check
 * is due, and what a container's health means for its deployment.
 *
 * The verdict itself (`starting` / `healthy` / `unhealthy`, retries, start
 * period) is podman's, read from its record after every check: podman 4.3
 * applies compose's rules (measured, docs/podman-api.md), and one judge keeps
 * `podman ps` and Drover's status in agreement.
 *
 * @module
 */

import {
  DEFAULT_MIN_READY,
  DEFAULT_STOP_TIMEOUT,
  type HealthCheck,
  healthCheckRuns,
  parseComposeDuration,
  type PodmanService,
  type ServiceHealth,
} from "@drover/contracts";
import type { HealthCheckSpec, HealthReport, ObservedContainer } from "../runtime/runtime.ts";
import type { DesiredEntry } from "./desired.ts";

/** Extra time a check call gets beyond the check's own timeout (podman waits for the command). */
export const HEALTH_CHECK_GRACE_MS = 5_000;
/** Most intervals a check is put off after calls that had to be given up. */
export const HEALTH_ABANDONED_MAX_INTERVALS = 8;

/** The service's health check in the runtime's terms; undefined without one. */
export function healthCheckSpec(check: HealthCheck | undefined): HealthCheckSpec | undefined {
  if (check === undefined) return undefined;
  return {
    test: [...check.test],
    intervalMs: durationMs(check.interval),
    timeoutMs: durationMs(check.timeout),
    retries: check.retries,
    startPeriodMs: durationMs(check.start_period),
  };
}

/**
 * How long a container of `service` must have run to count as ready, in ms:
 * its `min_ready` (default `DEFAULT_MIN_READY`); 0 with a health check that
 * runs (passing it is the proof).
 */
export function minReadyMs(service: PodmanService): number {
  if (healthCheckRuns(service.healthcheck)) return 0;
  return durationMs(service.min_ready ?? DEFAULT_MIN_READY);
}

/** The service's stop timeout in whole seconds (default `DEFAULT_STOP_TIMEOUT`). */
export function stopTimeoutSeconds(service: PodmanService): number {
  return Math.round(durationMs(service.stop_timeout ?? DEFAULT_STOP_TIMEOUT) / 1000);
}

function durationMs(text: string): number {
  // Every status computation reads min_ready: the few texts a device sees are parsed once.
  const known = parsedDurations.get(text);
  if (known !== undefined) return known;
  const ms = parseComposeDuration(text);
  // Impossible for a value that passed the contract schema.
  if (ms === undefined) throw new Error(`Cannot read duration ${JSON.stringify(text)}`);
  if (parsedDurations.size >= PARSED_DURATIONS_MAX) parsedDurations.clear();
  parsedDurations.set(text, ms);
  return ms;
}

/** Bound of {@linkcode parsedDurations}: desired values choose the texts. */
const PARSED_DURATIONS_MAX = 256;
const parsedDurations = new Map<string, number>();

/** One container whose health check the agent runs. */
export interface HealthTarget {
  containerId: string;
  deployment: string;
  service: string;
  intervalMs: number;
  timeoutMs: number;
  /** When the container last started, ms since the epoch. */
  startedAtMs?: number;
}

/**
 * The containers of `entry` that need their checks run: running, created from
 * the desired spec (an outdated one is about to be replaced), with a check
 * that runs a command.
 */
export function healthTargets(
  entry: DesiredEntry | undefined,
  observed: readonly ObservedContainer[],
  /** The desired spec hash of a service of `entry` (see spec_hashes.ts). */
  specHashOf: (service: string) => string | undefined,
): HealthTarget[] {
  if (entry?.kind !== "valid") return [];
  const services = new Map(entry.state.score.services.map((s) => [s.name, s]));
  const out: HealthTarget[] = [];
  for (const c of observed) {
    const service = services.get(c.service);
    if (!service || !healthCheckRuns(service.healthcheck) || c.state !== "running") continue;
    if (c.specHash !== specHashOf(service.name)) continue;
    const spec = healthCheckSpec(service.healthcheck)!;
    out.push({
      containerId: c.id,
      deployment: entry.deployment,
      service: service.name,
      intervalMs: spec.intervalMs,
      timeoutMs: spec.timeoutMs,
      ...(c.startedAtMs !== undefined ? { startedAtMs: c.startedAtMs } : {}),
    });
  }
  return out.sort((a, b) => (a.containerId < b.containerId ? -1 : 1));
}

/** What {@linkcode nextCheckDelayMs} looks at. */
export interface CheckTiming {
  intervalMs: number;
  nowMs: number;
  /** When the container started; absent: unknown (check one interval from now). */
  startedAtMs?: number;
  /** When the latest check ended, whoever ran it (the agent, or podman's systemd timer). */
  lastEndedAtMs?: number;
  /** Check calls given up in a row (the command outlived its timeout). */
  abandoned?: number;
}

/**
 * Milliseconds until the next check is due: one interval after the latest check
 * ended (or after the start), so checks podman ran itself (systemd timers) are not
 * doubled and a container found long running after an agent restart is checked at
 * once. After calls had to be given up, the wait doubles per such call (at most
 * {@linkcode HEALTH_ABANDONED_MAX_INTERVALS} intervals): podman lets a check run
 * past its timeout, and hung checks must not pile up in the container.
 */
export function nextCheckDelayMs(timing: CheckTiming): number {
  const { intervalMs, nowMs } = timing;
  const abandoned = timing.abandoned ?? 0;
  const factor = Math.min(HEALTH_ABANDONED_MAX_INTERVALS, 2 ** abandoned);
  const from = Math.max(timing.lastEndedAtMs ?? -Infinity, timing.startedAtMs ?? -Infinity);
  if (!Number.isFinite(from)) return intervalMs * factor;
  return Math.max(0, from + intervalMs * factor - nowMs);
}

/** A service's health as reported: the runtime's verdict, `starting` until there is one. */
export function serviceHealth(
  service: PodmanService,
  container: ObservedContainer | undefined,
): ServiceHealth | undefined {
  if (!healthCheckRuns(service.healthcheck) || container === undefined) return undefined;
  return container.health ?? "starting";
}

/**
 * Why an unhealthy service fails its deployment, in one line with the latest check's
 * output (short), e.g. `service "web" is unhealthy: 3 failed health checks in a row
 * (exit code 1: connection refused)`.
 */
export function unhealthyMessage(service: string, report: HealthReport | undefined): string {
  const streak = report && report.failingStreak > 0
    ? `${report.failingStreak} failed health check${report.failingStreak === 1 ? "" : "s"} in a row`
    : "health check failing";
  const detail: string[] = [];
  if (report?.lastExitCode === -1) detail.push("timed out");
  else if (report?.lastExitCode !== undefined) detail.push(`exit code ${report.lastExitCode}`);
  if (report?.lastOutput) detail.push(oneLine(report.lastOutput));
  return `service "${service}" is unhealthy: ${streak}` +
    (detail.length > 0 ? ` (${detail.join(": ")})` : "");
}

/** Services still waiting for a first passing check, for a pending deployment's message. */
export function startingMessage(services: readonly string[]): string {
  const names = services.map((s) => `"${s}"`).join(", ");
  return `waiting for the health check of ${services.length === 1 ? "service" : "services"} ` +
    `${names} to pass`;
}

const OUTPUT_MAX_CHARS = 120;

function oneLine(text: string): string {
  // deno-lint-ignore no-control-regex
  const line = text.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  return line.length <= OUTPUT_MAX_CHARS ? line : `${line.slice(0, OUTPUT_MAX_CHARS - 1)}…`;
}
