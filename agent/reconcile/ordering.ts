/**
 * Start order and run-to-completion jobs, decided purely from the score and
 * the observed containers (compose's `depends_on`):
 *
 * - a service starts only once each dependency meets its condition —
 *   `service_started` (its current container has started), `service_healthy`
 *   (its current container is running and healthy) or
 *   `service_completed_successfully` (its container of this revision exited 0);
 * - a *job* is a service others wait on with `service_completed_successfully`
 *   (the contract requires it to have `restart: "no"`): it runs once per
 *   revision — a container of an older revision is replaced even when its spec
 *   hash is the same — and an exit other than 0 fails the deployment, without a
 *   rerun, until the revision changes.
 *
 * Nothing here waits: a service whose dependencies are not met is simply not
 * created in this pass; the container events of its dependencies (start,
 * died, health_status) bring the deployment back for another look.
 *
 * @module
 */

import { dependenciesOf, type Dependency, type PodmanService } from "@drover/contracts";
import type { ObservedContainer } from "../runtime/runtime.ts";

/** Names of the services others wait on with `service_completed_successfully`. */
export function jobServices(services: readonly PodmanService[]): ReadonlySet<string> {
  // Desired values are immutable once decoded: one answer per services list.
  let jobs = jobsOf.get(services);
  if (jobs !== undefined) return jobs;
  jobs = new Set<string>();
  for (const service of services) {
    for (const dep of dependenciesOf(service)) {
      if (dep.condition === "service_completed_successfully") jobs.add(dep.service);
    }
  }
  jobsOf.set(services, jobs);
  return jobs;
}

const jobsOf = new WeakMap<readonly PodmanService[], Set<string>>();

/** A job's container of this revision that exited with a code other than 0. */
export interface FailedJob {
  service: string;
  exitCode: number;
  containerId: string;
}

/** Where one dependency stands. */
export type DependencyState = "met" | "waiting" | "failed";

/**
 * Whether `dep` is met by the containers of its service. `current` picks the
 * container that counts: same spec hash (and, for a job, same revision).
 */
export function dependencyState(
  dep: Dependency,
  current: ObservedContainer | undefined,
): DependencyState {
  if (current === undefined) return "waiting";
  switch (dep.condition) {
    case "service_started":
      return current.state === "running" || current.startedAtMs !== undefined ||
          current.exitCode !== undefined
        ? "met"
        : "waiting";
    case "service_healthy":
      return current.state === "running" && current.health === "healthy" ? "met" : "waiting";
    case "service_completed_successfully":
      if (current.state === "running" || current.exitCode === undefined) return "waiting";
      if (!EXITED.has(current.state)) return "waiting";
      return current.exitCode === 0 ? "met" : "failed";
  }
}

const EXITED = new Set(["exited", "stopped"]);

/**
 * The container of `service` that counts for the current spec: its spec hash
 * is `hash` and, for a job, it was created for `revision`.
 */
export function currentContainer(
  containers: readonly ObservedContainer[],
  hash: string,
  job: boolean,
  revision: number,
): ObservedContainer | undefined {
  return containers.find((c) => c.specHash === hash && (!job || c.revision === revision));
}

/** The dependencies of `service` not met yet, with how each stands. */
export function unmetDependencies(
  service: PodmanService,
  current: (service: string) => ObservedContainer | undefined,
): Array<Dependency & { state: Exclude<DependencyState, "met"> }> {
  return dependenciesOf(service).flatMap((dep) => {
    const state = dependencyState(dep, current(dep.service));
    return state === "met" ? [] : [{ ...dep, state }];
  });
}

/** Jobs of this revision that exited with a code other than 0. */
export function failedJobs(
  services: readonly PodmanService[],
  current: (service: string) => ObservedContainer | undefined,
): FailedJob[] {
  const out: FailedJob[] = [];
  for (const name of jobServices(services)) {
    const c = current(name);
    if (c && c.state !== "running" && EXITED.has(c.state) && c.exitCode !== undefined) {
      if (c.exitCode !== 0) out.push({ service: name, exitCode: c.exitCode, containerId: c.id });
    }
  }
  return out.sort((a, b) => (a.service < b.service ? -1 : 1));
}

/** `"waiting for migrate (service_completed_successfully), db (service_healthy)"`. */
export function waitingMessage(
  waiting: ReadonlyArray<{ service: string; waitsFor: readonly Dependency[] }>,
): string | undefined {
  if (waiting.length === 0) return undefined;
  return waiting.map(({ service, waitsFor }) =>
    `${service} waits for ${waitsFor.map((d) => `${d.service} (${d.condition})`).join(", ")}`
  ).join("; ");
}
