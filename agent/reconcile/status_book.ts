/**
 * The status book: what the reconciler knows about each deployment between
 * passes — the containers last observed, the last pass error, the policy
 * violations, the services being pulled for, whether the runtime is reachable
 * — and the statuses derived from it (status.ts, pure). It logs a
 * deployment's transitions once and tells its owner when anything changed.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { type DeploymentStatus, type DeviceStatus, jsonEqual } from "@drover/contracts";
import type { HealthReport, ObservedContainer } from "../runtime/runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import type { PolicyRule, PolicyViolation } from "./policy.ts";
import { deploymentStatus, deviceMessage, summariseDevice } from "./status.ts";
import { WarnLimiter } from "./warn_limit.ts";

/** Options of {@linkcode StatusBook}. */
export interface StatusBookOptions {
  log: Logger;
  /** Called (synchronously) whenever a deployment's status or the device status changes. */
  onChange?: (() => void) | undefined;
  /** The clock, in ms since the epoch (crash-loop windows). */
  now?: () => number;
  /** See `CRASH_LOOP_HEALTHY_MS`. */
  healthyMs?: number;
  /** At most one "failed" warning per deployment this often (default 60 s). */
  failureWarningIntervalMs?: number;
}

/** What {@linkcode StatusBook.update} needs about a deployment besides what the book keeps. */
export interface StatusFacts {
  entry: DesiredEntry | undefined;
  specHashes: ReadonlyMap<string, string>;
  violations: readonly PolicyViolation[] | undefined;
  /** Not desired, yet not removable (partial view). */
  keptForNow: boolean;
  /** Latest health-check reports by container id. */
  health?: ReadonlyMap<string, HealthReport>;
}

/** Per-deployment bookkeeping and the statuses derived from it. */
export class StatusBook {
  readonly #log: Logger;
  readonly #onChange: () => void;
  readonly #now: () => number;
  readonly #healthyMs: number | undefined;
  #statuses = new Map<string, DeploymentStatus>();
  /** Last pass error per key; shown as the status message until a pass succeeds. */
  #errors = new Map<string, string>();
  #violations = new Map<string, readonly PolicyViolation[]>();
  #pulling = new Map<string, Set<string>>();
  /** Containers of each key as last observed, for statuses written on errors. */
  #observed = new Map<string, readonly ObservedContainer[]>();
  /** When each key's containers were last observed (ms since the epoch). */
  #observedAt = new Map<string, number>();
  /** Why the runtime is unreachable, while it is. */
  #runtimeProblem: string | undefined;
  #firstPassDone = false;
  readonly #failureWarnings: WarnLimiter;

  constructor(options: StatusBookOptions) {
    this.#failureWarnings = new WarnLimiter(options.failureWarningIntervalMs);
    this.#log = options.log;
    this.#onChange = options.onChange ?? (() => {});
    this.#now = options.now ?? Date.now;
    this.#healthyMs = options.healthyMs;
  }

  // ---- what the loop tells the book -------------------------------------------

  /** The containers of `key` as just observed. */
  observed(key: string, containers: readonly ObservedContainer[]): void {
    this.#observedAt.set(key, this.#now());
    if (containers.length === 0) this.#observed.delete(key);
    else this.#observed.set(key, containers);
  }

  /** The containers of `key` as last observed. */
  lastObserved(key: string): readonly ObservedContainer[] {
    return this.#observed.get(key) ?? [];
  }

  /** Records the error of a failed pass; returns true when it differs from the last one. */
  failed(key: string, message: string): boolean {
    const isNew = this.#errors.get(key) !== message;
    this.#errors.set(key, message);
    return isNew;
  }

  /** Forgets the last pass error of `key` (it succeeded, or its value changed). */
  clearError(key: string): void {
    this.#errors.delete(key);
  }

  /** The device-policy violations of every deployment, as last computed. */
  setViolations(violations: ReadonlyMap<string, readonly PolicyViolation[]>): void {
    this.#violations = new Map(violations);
  }

  /** Violations of `key`. */
  violations(key: string): readonly PolicyViolation[] | undefined {
    return this.#violations.get(key);
  }

  /** Deployments refused because of `rule`. */
  blockedBy(rule: PolicyRule): string[] {
    return [...this.#violations].filter(([, list]) => list.some((v) => v.rule === rule))
      .map(([key]) => key);
  }

  /** Marks a service of `key` as being pulled for (or no longer). */
  pulling(key: string, service: string, active: boolean): void {
    const set = this.#pulling.get(key) ?? new Set<string>();
    if (active) set.add(service);
    else set.delete(service);
    if (set.size === 0) this.#pulling.delete(key);
    else this.#pulling.set(key, set);
  }

  /** The runtime became (un)reachable; `problem` says why it is not. */
  setRuntimeProblem(problem: string | undefined): void {
    if (problem === this.#runtimeProblem) return;
    this.#runtimeProblem = problem;
    this.#changed();
  }

  /** The first pass is over: the device may now be `ready`. */
  firstPassDone(): void {
    if (this.#firstPassDone) return;
    this.#firstPassDone = true;
    this.#changed();
  }

  /** Recomputes the status of `key`; logs and reports a change. */
  update(key: string, facts: StatusFacts): void {
    const status = deploymentStatus({
      deployment: key,
      entry: facts.entry,
      observed: this.lastObserved(key),
      specHashes: facts.specHashes,
      ...(facts.violations !== undefined ? { violations: facts.violations } : {}),
      error: this.#errors.get(key),
      keptForNow: facts.keptForNow,
      pulling: this.#pulling.get(key),
      waiting: this.#runtimeProblem,
      observedAtMs: this.#observedAt.get(key),
      nowMs: this.#now(),
      ...(facts.health !== undefined ? { health: facts.health } : {}),
      ...(this.#healthyMs !== undefined ? { healthyMs: this.#healthyMs } : {}),
    });
    const before = this.#statuses.get(key);
    if (status === undefined ? before === undefined : jsonEqual(status, before)) return;
    if (status === undefined) {
      this.#statuses.delete(key);
      this.#observedAt.delete(key);
    } else {
      this.#statuses.set(key, status);
    }
    this.#logTransition(key, before, status);
    this.#changed();
  }

  // ---- what the book tells others ---------------------------------------------

  /** Keys with a status. */
  keys(): string[] {
    return [...this.#statuses.keys()];
  }

  /** True when `key` has a status. */
  has(key: string): boolean {
    return this.#statuses.has(key);
  }

  /** Status of every deployment known to this device, keyed by name. */
  deploymentStatuses(): Record<string, DeploymentStatus> {
    const out: Record<string, DeploymentStatus> = {};
    for (const key of [...this.#statuses.keys()].sort()) out[key] = this.#statuses.get(key)!;
    return out;
  }

  /** `starting` before the first pass, `ready` when every deployment runs, else `degraded`. */
  deviceStatus(): DeviceStatus {
    return summariseDevice(this.#statuses.values(), {
      firstPassDone: this.#firstPassDone,
      runtimeAvailable: this.#runtimeProblem === undefined,
    });
  }

  /** Why the device is not ready, in one short line; undefined when it is. */
  deviceMessage(): string | undefined {
    const device = this.deviceStatus();
    // Asked for with every status put: a ready device has nothing to say, no statuses to copy.
    if (device === "ready") return undefined;
    return deviceMessage(this.deploymentStatuses(), {
      device,
      ...(this.#runtimeProblem !== undefined ? { runtimeProblem: this.#runtimeProblem } : {}),
    });
  }

  #logTransition(
    key: string,
    before: DeploymentStatus | undefined,
    after: DeploymentStatus | undefined,
  ): void {
    // The revision people see (what `apply` printed), the KV one when the value carries none.
    const shown = (s: DeploymentStatus | undefined) => s?.deployment_revision ?? s?.revision;
    const log = this.#log.with({ deployment: key, revision: shown(after) ?? shown(before) });
    if (after === undefined) {
      this.#failureWarnings.forget(key);
      if (before) log.info("Deployment {deployment} removed");
      return;
    }
    if (before?.phase === after.phase && before.message === after.message) return;
    if (after.phase === "failed") {
      // Pass errors were logged with their retry delay; this is for the others.
      if (this.#errors.get(key) === after.message) return;
      const message = after.message ?? "";
      const decision = this.#failureWarnings.take(key, this.#now());
      if (!decision.log) log.debug("Deployment {deployment} failed: {message}", { message });
      else if (decision.suppressed === 0) {
        log.warn("Deployment {deployment} failed: {message}", { message });
      } else {
        log.warn(
          "Deployment {deployment} failed: {message} ({suppressed} more failure(s) since the " +
            "last warning)",
          { message, suppressed: decision.suppressed },
        );
      }
    } else if (after.phase === "running" && before?.phase !== "running") {
      log.info("Deployment {deployment} is running", {});
    }
  }

  #changed(): void {
    try {
      this.#onChange();
    } catch (err) {
      this.#log.error("onChange callback failed: {error}", {
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }
}
