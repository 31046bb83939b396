/**
 * Status of one deployment, derived from its desired entry, the containers
 * observed for it and what the last pass ran into. Pure.
 *
 * @module
 */

import type { DeploymentStatus, DeviceStatus, ServiceStatus } from "@drover/contracts";
import type { ObservedContainer } from "../runtime/runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import { hashKey, isSatisfied, pickKeeper } from "./plan.ts";

/** What {@linkcode deploymentStatus} looks at. */
export interface StatusInput {
  deployment: string;
  entry: DesiredEntry | undefined;
  /** Containers of this deployment only. */
  observed: readonly ObservedContainer[];
  specHashes: ReadonlyMap<string, string>;
  /** Device-policy violations of this deployment. */
  violations?: readonly string[];
  /** Why the last pass failed, if it did (retried with backoff). */
  error?: string;
  /** True when the deployment, though not desired, may not be removed (partial view). */
  keptForNow?: boolean;
  /** Why the deployment cannot progress now though nothing is wrong with it (runtime away). */
  waiting?: string;
  /** Services currently being pulled for. */
  pulling?: ReadonlySet<string>;
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
      message: input.violations.join("\n"),
      services: observedServices(observed),
    };
  }
  const services: Record<string, ServiceStatus> = {};
  let allSatisfied = true;
  for (const service of entry.state.score.services) {
    const hash = input.specHashes.get(hashKey(entry.deployment, service.name)) ?? "";
    const mine = observed.filter((c) => c.service === service.name);
    const keeper = mine.length > 0 ? pickKeeper(mine, hash, service.restart) : undefined;
    const satisfied = keeper !== undefined && mine.length === 1 &&
      isSatisfied(keeper, hash, service.restart);
    allSatisfied &&= satisfied;
    services[service.name] = keeper === undefined
      ? { state: input.pulling?.has(service.name) ? "pulling" : "missing", image: service.image }
      : containerStatus(keeper);
  }
  const extra = observed.some((c) => !services[c.service]);
  const phase = input.error ? "failed" : allSatisfied && !extra ? "running" : "pending";
  const message = input.error ?? (phase === "pending" ? input.waiting : undefined);
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
  };
}
