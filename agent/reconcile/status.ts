/**
 * Status of one deployment, derived from its desired entry, the containers
 * observed for it and what the last pass ran into; and the device's summary
 * of them, with a short reason when it is not ready. Pure.
 *
 * @module
 */

import {
  type Dependency,
  type DeploymentStatus,
  DEVICE_MESSAGE_MAX_LENGTH,
  type DeviceStatus,
  type ServiceStatus,
} from "@drover/contracts";
import type { HealthReport, ObservedContainer } from "../runtime/runtime.ts";
import { CRASH_LOOP_HEALTHY_MS, crashLoop, crashLoopMessage } from "./crash_loop.ts";
import type { DesiredEntry } from "./desired.ts";
import { serviceHealth, startingMessage, unhealthyMessage } from "./health.ts";
import { hashKey, isSatisfied, pickKeeper } from "./plan.ts";
import type { PolicyViolation } from "./policy.ts";
import { currentContainer, jobServices, unmetDependencies, waitingMessage } from "./ordering.ts";

/** What {@linkcode deploymentStatus} looks at. */
export interface StatusInput {
  deployment: string;
  entry: DesiredEntry | undefined;
  /** Containers of this deployment only. */
  observed: readonly ObservedContainer[];
  specHashes: ReadonlyMap<string, string>;
  /** Device-policy violations of this deployment. */
  violations?: readonly PolicyViolation[];
  /** Why the last pass failed, if it did (retried with backoff). */
  error?: string | undefined;
  /** True when the deployment, though not desired, may not be removed (partial view). */
  keptForNow?: boolean;
  /** Why the deployment cannot progress now though nothing is wrong with it (runtime away). */
  waiting?: string | undefined;
  /** Services currently being pulled for. */
  pulling?: ReadonlySet<string> | undefined;
  /** Now, in ms since the epoch (for crash loops); default: never a crash loop. */
  nowMs?: number;
  /** See {@linkcode CRASH_LOOP_HEALTHY_MS}. */
  healthyMs?: number;
  /** Latest health-check reports by container id (the last check's output for messages). */
  health?: ReadonlyMap<string, HealthReport>;
}

/**
 * The deployment's status, or `undefined` when there is nothing to report (not
 * desired and no container left).
 */
export function deploymentStatus(input: StatusInput): DeploymentStatus | undefined {
  const { entry, observed } = input;
  if (entry === undefined) {
    if (observed.length === 0) return undefined;
    return {
      revision: Math.max(...observed.map((c) => c.revision)),
      phase: input.keptForNow ? phaseOf(observed) : "removing",
      ...(input.keptForNow
        ? { message: "not in the desired state known to this agent; left untouched until it is" }
        : input.error
        ? { message: input.error }
        : {}),
      services: observedServices(observed),
    };
  }
  if (entry.kind === "invalid") {
    return {
      revision: entry.revision,
      phase: "failed",
      message: entry.error,
      services: observedServices(observed),
    };
  }
  // The deployment revision people see, echoed from the desired state (absent in older ones).
  const named = entry.state.deployment_revision !== undefined
    ? { deployment_revision: entry.state.deployment_revision }
    : {};
  if (input.violations && input.violations.length > 0) {
    return {
      revision: entry.revision,
      ...named,
      phase: "failed",
      message: input.violations.map((v) => v.message).join("\n"),
      services: observedServices(observed),
    };
  }
  const services: Record<string, ServiceStatus> = {};
  const crashes: string[] = [];
  const unhealthy: string[] = [];
  const starting: string[] = [];
  let allSatisfied = true;
  const jobs = jobServices(entry.state.score.services);
  const current = (name: string) =>
    currentContainer(
      observed.filter((c) => c.service === name),
      input.specHashes.get(hashKey(entry.deployment, name)) ?? "",
      jobs.has(name),
      entry.revision,
    );
  const waitingOn: Array<{ service: string; waitsFor: Dependency[] }> = [];
  for (const service of entry.state.score.services) {
    const hash = input.specHashes.get(hashKey(entry.deployment, service.name)) ?? "";
    const mine = observed.filter((c) => c.service === service.name);
    const keeper = mine.length > 0 ? pickKeeper(mine, hash, service.restart) : undefined;
    const satisfied = keeper !== undefined && mine.length === 1 &&
      isSatisfied(keeper, hash, service.restart);
    allSatisfied &&= satisfied;
    const loop = keeper !== undefined && input.nowMs !== undefined
      ? crashLoop(keeper, input.nowMs, input.healthyMs)
      : undefined;
    if (loop) crashes.push(crashLoopMessage(service.name, loop, input.healthyMs));
    // Running is not enough for a service with a health check: it must pass.
    const health = serviceHealth(service, keeper);
    if (keeper !== undefined && satisfied && keeper.state === "running" && health !== undefined) {
      if (health === "unhealthy") {
        unhealthy.push(unhealthyMessage(service.name, input.health?.get(keeper.id)));
      } else if (health === "starting") starting.push(service.name);
      allSatisfied &&= health === "healthy";
    }
    const unmet = unmetDependencies(service, current);
    if (!satisfied && unmet.length > 0 && !unmet.some((d) => d.state === "failed")) {
      waitingOn.push({ service: service.name, waitsFor: unmet });
    }
    services[service.name] = keeper === undefined
      ? { state: input.pulling?.has(service.name) ? "pulling" : "missing", image: service.image }
      : { ...containerStatus(keeper), ...(health !== undefined ? { health } : {}) };
  }
  const extra = observed.some((c) => !services[c.service]);
  // A crash loop explains more than the pass error it causes ("still changing after …").
  const failures = [...crashes, ...unhealthy];
  const failure = failures.length > 0 ? failures.join("\n") : input.error;
  const phase = failure ? "failed" : allSatisfied && !extra ? "running" : "pending";
  const message = failure ??
    (phase === "pending"
      ? input.waiting ?? waitingMessage(waitingOn) ??
        (starting.length > 0 ? startingMessage(starting) : undefined)
      : undefined);
  return {
    revision: entry.revision,
    ...named,
    phase,
    ...(message ? { message } : {}),
    services,
  };
}

/** `ready` when every deployment runs, `starting` before the first pass, else `degraded`. */
export function summariseDevice(
  statuses: Iterable<DeploymentStatus>,
  state: { firstPassDone: boolean; runtimeAvailable: boolean },
): DeviceStatus {
  if (!state.firstPassDone) return "starting";
  if (!state.runtimeAvailable) return "degraded";
  for (const s of statuses) if (s.phase !== "running") return "degraded";
  return "ready";
}

/** What {@linkcode deviceMessage} looks at besides the deployments. */
export interface DeviceMessageInput {
  device: DeviceStatus;
  /** Why the container runtime cannot be reached, while it cannot. */
  runtimeProblem?: string;
}

/**
 * One short line saying why the device is not `ready` (undefined when it is):
 * the runtime problem, or which deployments are not running and why. At most
 * {@linkcode DEVICE_MESSAGE_MAX_LENGTH} characters, on one line.
 */
export function deviceMessage(
  deployments: Record<string, DeploymentStatus>,
  input: DeviceMessageInput,
): string | undefined {
  let text: string;
  switch (input.device) {
    case "ready":
      return undefined;
    case "starting":
      text = "first reconcile pass not done yet";
      break;
    case "stopped":
      text = "agent stopped; containers keep running";
      break;
    case "degraded": {
      if (input.runtimeProblem !== undefined) {
        text = input.runtimeProblem;
        break;
      }
      const names = Object.keys(deployments);
      const bad = Object.entries(deployments)
        .filter(([, d]) => d.phase !== "running")
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      if (bad.length === 0) {
        text = "degraded";
        break;
      }
      const parts = bad.map(([n, d]) =>
        d.message ? `${n} ${d.phase}: ${d.message}` : `${n} ${d.phase}`
      );
      text = `${bad.length} of ${names.length} deployment${names.length === 1 ? "" : "s"} ` +
        `not running: ${parts.join("; ")}`;
    }
  }
  return shortLine(text);
}

/** Control characters become spaces, and a long text ends in "…". */
function shortLine(text: string, max = DEVICE_MESSAGE_MAX_LENGTH): string {
  // deno-lint-ignore no-control-regex
  const line = text.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

/**
 * In how many ms a crash-looping service of `observed` could count as healthy
 * (the reconciler looks again then), or undefined when none is crash-looping.
 */
export function crashLoopRecheckMs(
  observed: readonly ObservedContainer[],
  nowMs: number,
  healthyMs: number = CRASH_LOOP_HEALTHY_MS,
): number | undefined {
  const waits = observed.map((c) => crashLoop(c, nowMs, healthyMs)?.healthyInMs)
    .filter((ms): ms is number => ms !== undefined);
  return waits.length > 0 ? Math.min(...waits) : undefined;
}

function phaseOf(observed: readonly ObservedContainer[]): DeploymentStatus["phase"] {
  return observed.every((c) => c.state === "running") ? "running" : "pending";
}

function observedServices(observed: readonly ObservedContainer[]): Record<string, ServiceStatus> {
  const out: Record<string, ServiceStatus> = {};
  const sorted = [...observed].sort((a, b) =>
    (a.state === "running" ? 0 : 1) - (b.state === "running" ? 0 : 1) ||
    (a.id < b.id ? -1 : 1)
  );
  for (const c of sorted) out[c.service] ??= containerStatus(c);
  return out;
}

function containerStatus(c: ObservedContainer): ServiceStatus {
  return {
    container_id: c.id,
    state: c.state,
    image: c.image,
    ...(c.restarts !== undefined ? { restarts: c.restarts } : {}),
    ...(c.exitCode !== undefined && c.state !== "running" ? { exit_code: c.exitCode } : {}),
  };
}
