/**
 * The reconcile loop: keeps this device's containers at the desired state.
 *
 * Level-triggered, as in controller-runtime: every input — a change in the
 * {@linkcode DesiredStore}, a runtime event, the periodic resync — only marks
 * a deployment key dirty in a {@linkcode WorkQueue}. Workers take keys one at
 * a time per key (different keys run concurrently, so a slow pull of one
 * deployment does not hold up another) and repeat observe → {@linkcode plan} →
 * execute until the plan is empty. Failures requeue the key with capped
 * exponential backoff; invalid or policy-violating values are terminal until
 * the value changes.
 *
 * The parts, each in its own file: the store (desired_store.ts), the planner
 * (plan.ts, pure), the executor (executor.ts, one function per action kind),
 * images (image_manager.ts), the status book (status_book.ts), runtime
 * availability (runtime_guard.ts), ownership of containers (ownership.ts) and
 * first-pass tracking (first_pass.ts). docs/architecture.md shows the flow.
 *
 * Crash safety comes from the planner and the runtime, not from local state:
 * containers carry deterministic names and labels, so whatever a `kill -9`
 * leaves behind is observed and converged from on the next pass.
 *
 * @module
 */

import { getLogger, type Logger } from "@logtape/logtape";
import {
  type AgentPolicy,
  type DeploymentStatus,
  type DeviceStatus,
  LABELS,
  type RegistryConfig,
} from "@drover/contracts";
import {
  type ContainerRuntime,
  type ObservedContainer,
  RuntimeUnavailableError,
} from "../runtime/runtime.ts";
import { abortableSleep, openFrom, untilAborted } from "@drover/common";
import { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.ts";
import { CRASH_LOOP_HEALTHY_MS, type RestartTally, tallyRestarts } from "./crash_loop.ts";
import type { DesiredEntry, DesiredSnapshot } from "./desired.ts";
import { type DesiredChange, DesiredStore } from "./desired_store.ts";
import { actionHandlers, Executor } from "./executor.ts";
import { observationEvents, policyEvents, type ReconcileObserver } from "./events.ts";
import { FirstPass } from "./first_pass.ts";
import { healthTargets } from "./health.ts";
import { HealthScheduler } from "./health_scheduler.ts";
import { ImageManager } from "./image_manager.ts";
import { concernsDevice, ownContainers } from "./ownership.ts";
import { hashKey, plan } from "./plan.ts";
import { currentContainer, failedJobs, jobServices } from "./ordering.ts";
import { type HostPathFacts, hostPathsToResolve, policyViolations } from "./policy.ts";
import { resolveHostPaths } from "./host_paths.ts";
import { type QueueTimers, WorkQueue } from "./queue.ts";
import { GuardedRuntime } from "./runtime_guard.ts";
import { serviceHashes } from "./spec_hashes.ts";
import { runtimeSecretPrefix, secretProblems, wantedRuntimeSecrets } from "./files.ts";
import type { KeyPair } from "@nats-io/nkeys";
import { crashLoopRecheckMs, minReadyRecheckMs } from "./status.ts";
import { StatusBook } from "./status_book.ts";

export { DEFAULT_CALL_TIMEOUT_MS } from "./runtime_guard.ts";

/** Default interval of the full resync safety net, in milliseconds. */
export const DEFAULT_RESYNC_INTERVAL_MS = 60_000;
/** Default number of deployments reconciled at the same time. */
export const DEFAULT_MAX_CONCURRENT = 8;
/** Plan/execute rounds in one pass before the pass counts as failed. */
export const DEFAULT_MAX_STEPS_PER_PASS = 5;

/** Options of {@linkcode Reconciler}. */
export interface ReconcilerOptions {
  /** This device's id: logs, and the `drover.device` label of what it creates. */
  deviceId: string;
  /** The container runtime to drive. */
  runtime: ContainerRuntime;
  /** What this device accepts. */
  policy: AgentPolicy;
  /** Credentials and TLS settings per registry host[:port]. */
  registries: Record<string, RegistryConfig>;
  /** Where desired state lives (default: a store of its own, filled by `setSnapshot`/`setDesired`). */
  store?: DesiredStore;
  /** Full resync interval in ms (default {@linkcode DEFAULT_RESYNC_INTERVAL_MS}). */
  resyncIntervalMs?: number;
  /** Called (synchronously) whenever a deployment's status or the device status changes. */
  onChange?: () => void;
  /** Retry curve for failing deployments (default {@linkcode DEFAULT_BACKOFF}). */
  backoff?: BackoffOptions;
  /** Deployments reconciled concurrently (default {@linkcode DEFAULT_MAX_CONCURRENT}). */
  maxConcurrent?: number;
  /** Random source for backoff jitter, in [0, 1). */
  random?: () => number;
  /**
   * Longest wait for one runtime call other than a pull, in ms (default
   * `DEFAULT_CALL_TIMEOUT_MS`); a hung podman then counts as unavailable.
   */
  callTimeoutMs?: number;
  /** The clock, in ms since the epoch (crash-loop windows). */
  now?: () => number;
  /** How long a crash-looping service must run to be healthy (default `CRASH_LOOP_HEALTHY_MS`). */
  crashLoopHealthyMs?: number;
  /** Timers of delayed retries (backoff, crash-loop rechecks); tests inject a manual clock. */
  retryTimers?: QueueTimers;
  /** Timers of the health-check loops (health_scheduler.ts); tests inject a manual clock. */
  healthTimers?: QueueTimers;
  /** Told of events (the device's event ring) and pass durations (metrics). */
  observer?: ReconcileObserver;
  /**
   * This device's sealing key (xkey): secrets in desired state are sealed to
   * it. Absent: deployments that use secrets are refused with the reason.
   */
  sealingKey?: KeyPair;
}

/** Last log lines of a failed job shown in the deployment's status. */
export const JOB_LOG_LINES = 5;
/** Longest log line of a failed job shown, in characters. */
const JOB_LOG_LINE_MAX_CHARS = 200;

/** A job of the current revision exited with a code other than 0 (see ordering.ts). */
export class JobFailedError extends Error {
  override name = "JobFailedError";
}

/**
 * A pass planned actions round after round without reaching a steady state
 * (e.g. a container that exits as soon as it is started).
 */
export class NotConvergedError extends Error {
  override name = "NotConvergedError";
}

/** The reconcile loop of one device. See the module documentation. */
export class Reconciler {
  /**
   * Resolves once every deployment known when {@linkcode run} started (desired
   * or found running) has had one reconcile attempt (see first_pass.ts), or
   * when `run` stops.
   */
  readonly firstPass: Promise<void>;
  /** The desired state this loop works from. */
  readonly store: DesiredStore;

  readonly #deviceId: string;
  readonly #policy: AgentPolicy;
  /** This device's sealing key's public half (nkeys derives it anew on every call). */
  readonly #sealingPublicKey: string | undefined;
  readonly #runtime: GuardedRuntime;
  readonly #book: StatusBook;
  readonly #executor: Executor;
  readonly #health: HealthScheduler;
  readonly #first: FirstPass;
  readonly #queue: WorkQueue;
  readonly #resyncIntervalMs: number;
  readonly #backoff: BackoffOptions;
  readonly #maxConcurrent: number;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #healthyMs: number;
  readonly #log: Logger;
  readonly #observer: ReconcileObserver;
  /** Containers this agent removed (not "removed outside Drover"); pruned as they vanish. */
  #removedByAgent = new Set<string>();
  /** Containers whose crash loop was reported as an event. */
  #crashLoopsReported = new Set<string>();
  /** Last failure message per key, reported as an event once. */
  #failureEvents = new Map<string, string>();

  /** Deployments known to have no runtime secrets (nothing to prune until they mount some). */
  #noRuntimeSecrets = new Set<string>();
  /** Restart counts per container id that survive the runtime resetting them (crash_loop.ts). */
  #restarts = new Map<string, RestartTally>();
  /**
   * Bind sources under allowed prefixes, and the prefixes, as last resolved (policy.ts).
   * Only those are looked at, so without `allowed_host_paths` no file is touched.
   */
  #hostPaths: HostPathFacts = new Map();
  /** The store version whose policy verdicts hold, while they depend on nothing on disk. */
  #policyCheckedVersion: number | undefined;
  #runtimeAvailable = true;
  #running = false;
  #runSignal: AbortSignal = new AbortController().signal;

  constructor(options: ReconcilerOptions) {
    this.#deviceId = options.deviceId;
    this.#queue = new WorkQueue({
      timers: options.retryTimers,
      backoff: options.backoff,
      random: options.random,
    });
    this.#policy = options.policy;
    this.#sealingPublicKey = options.sealingKey?.getPublicKey();
    this.#resyncIntervalMs = options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.#maxConcurrent = Math.max(1, options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT);
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
    this.#healthyMs = options.crashLoopHealthyMs ?? CRASH_LOOP_HEALTHY_MS;
    this.#log = getLogger(["drover", "reconcile"]).with({ device: options.deviceId });
    this.#observer = options.observer ?? {};
    this.#book = new StatusBook({
      log: this.#log,
      onChange: options.onChange,
      now: this.#now,
      healthyMs: this.#healthyMs,
    });
    this.#first = new FirstPass(() => this.#book.firstPassDone());
    this.firstPass = this.#first.done;
    this.#runtime = new GuardedRuntime(options.runtime, {
      ...(options.callTimeoutMs !== undefined ? { callTimeoutMs: options.callTimeoutMs } : {}),
      onAvailability: (available, err) => this.#setRuntimeAvailable(available, err),
    });
    const images = new ImageManager(this.#runtime, options.registries);
    this.#executor = new Executor(actionHandlers({
      runtime: this.#runtime,
      images,
      onPull: (action, active) => {
        // A registry may take minutes: readiness (sd_notify) must not wait for it.
        if (active) this.#first.attempted(action.deployment);
        this.#book.pulling(action.deployment, action.service, active);
        this.#updateStatus(action.deployment);
      },
      onEvent: (event, containerId) => {
        if (containerId !== undefined) this.#removedByAgent.add(containerId);
        this.#emit(event);
      },
      ...(options.sealingKey !== undefined
        ? {
          openSecret: (sealed: string, sender: string) =>
            openFrom(options.sealingKey!, sender, sealed),
        }
        : {}),
    }));
    this.#health = new HealthScheduler({
      runtime: this.#runtime,
      // A verdict changed: look again (the list carries podman's verdict) and report.
      onChange: (deployment) => this.#queue.add(deployment),
      log: this.#log,
      ...(options.healthTimers ? { timers: options.healthTimers } : {}),
    });
    this.store = options.store ?? new DesiredStore();
    this.store.subscribe((change) => this.#desiredChanged(change));
  }

  // ---- inputs (for callers without a store of their own) ---------------------

  /**
   * Replaces the whole desired state (a KV snapshot or the offline cache).
   * With `authoritative: false`, deployments not listed are left alone.
   */
  setSnapshot(snapshot: DesiredSnapshot): void {
    this.store.replace(snapshot.entries, snapshot.authoritative);
  }

  /** Sets (or, with `null`, deletes) one deployment's desired state. */
  setDesired(deployment: string, entry: DesiredEntry | null): void {
    this.store.update(deployment, entry);
  }

  // ---- outputs --------------------------------------------------------------

  /** Status of every deployment known to this device, keyed by name. */
  deploymentStatuses(): Record<string, DeploymentStatus> {
    return this.#book.deploymentStatuses();
  }

  /** `starting` before the first pass, `ready` when every deployment runs, else `degraded`. */
  deviceStatus(): DeviceStatus {
    return this.#book.deviceStatus();
  }

  /** Why the device is not ready, in one short line; undefined when it is. */
  deviceMessage(): string | undefined {
    return this.#book.deviceMessage();
  }

  // ---- the loop -------------------------------------------------------------

  /**
   * Reconciles until `signal` aborts. Never rejects because of a deployment or
   * a runtime fault; containers keep running when it returns.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#running) throw new Error("Cannot run the reconciler twice: it is already running");
    this.#running = true;
    this.#runSignal = signal;
    const stopped = untilAborted(signal);
    try {
      // Know every key of the first pass before any worker starts on one.
      await this.#resync(signal, { first: true });
      const workers = Array.from({ length: this.#maxConcurrent }, () => this.#work(signal));
      const watcher = this.#watch(signal);
      const resync = setInterval(() => void this.#resync(signal), this.#resyncIntervalMs);
      await stopped;
      clearInterval(resync);
      this.#queue.shutDown();
      await Promise.allSettled([...workers, watcher]);
      await this.#health.stopAll();
    } finally {
      this.#first.finish();
      this.#running = false;
    }
  }

  async #work(signal: AbortSignal): Promise<void> {
    while (true) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      try {
        await this.#process(key, signal);
      } finally {
        this.#queue.done(key);
        this.#first.attempted(key);
      }
    }
  }

  /** One pass for one key, with the error policy around it. Never throws. */
  async #process(key: string, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    const started = performance.now();
    try {
      await this.#reconcileKey(key, signal);
      this.#queue.forget(key);
      this.#failureEvents.delete(key);
      this.#queue.cancelDelayed(key);
      this.#pass(key, started, true);
    } catch (err) {
      if (signal.aborted) return;
      this.#pass(key, started, false);
      const delayMs = this.#queue.addRateLimited(key);
      // Unreachable runtime: the guard said so once for all; keep the last known containers.
      if (!(err instanceof RuntimeUnavailableError)) {
        const message = err instanceof Error ? err.message : String(err);
        const log = this.#log.with({ deployment: key, revision: this.#shownRevision(key) });
        if (this.#failureEvents.get(key) !== message) {
          this.#failureEvents.set(key, message);
          const revision = this.#shownRevision(key);
          this.#emit({
            kind: "deployment_failed",
            deployment: key,
            ...(revision !== undefined ? { revision } : {}),
            message,
          });
        }
        if (this.#book.failed(key, message)) {
          log.warn("Reconcile of {deployment} failed, retrying in {delayMs} ms: {error}", {
            error: message,
            delayMs,
          });
        } else {
          log.debug("Reconcile of {deployment} still failing, retrying in {delayMs} ms", {
            delayMs,
          });
        }
      }
      this.#updateStatus(key);
    }
    // A crash loop ends by time alone: look again when it could be over.
    const recheckMs = crashLoopRecheckMs(
      this.#book.lastObserved(key),
      this.#now(),
      this.#healthyMs,
    );
    if (recheckMs !== undefined) this.#queue.addAfter(key, recheckMs + 50);
    // So does a service's min_ready: report it ready once it has run that long.
    const settleMs = minReadyRecheckMs(
      this.store.get(key),
      this.#book.lastObserved(key),
      this.#now(),
    );
    if (settleMs !== undefined) this.#queue.addAfter(key, settleMs + 50);
  }

  /** Observe → plan → execute until the plan is empty. */
  async #reconcileKey(key: string, signal: AbortSignal): Promise<void> {
    const conflicts = new Set<string>();
    for (let step = 0; step < DEFAULT_MAX_STEPS_PER_PASS; step++) {
      const entry = this.store.get(key);
      await this.#checkPolicy();
      const blocked = this.#book.violations(key) !== undefined;
      const observed = await this.#observe(key, signal);
      const specHashes = serviceHashes(entry ? [entry] : []);
      // Checks run for what runs now; a container about to be replaced stops being checked.
      this.#health.sync(
        key,
        healthTargets(entry, observed, (service) => specHashes.get(hashKey(key, service))),
      );
      // Only a deployment being removed has a network to remove: no extra call otherwise.
      const networks = entry === undefined ? await this.#networksOf(key, signal) : [];
      const actions = plan(entry ? new Map([[key, entry]]) : new Map(), observed, {
        removable: this.store.isRemovable(key),
        specHashes,
        ...(blocked ? { blocked: new Set([key]) } : {}),
        deviceId: this.#deviceId,
        ...(networks.length > 0 ? { networks: new Map([[key, networks]]) } : {}),
      });
      if (actions.length === 0) {
        if (entry?.kind === "valid" && !blocked) {
          await this.#checkJobs(entry, observed, specHashes, signal);
        }
        this.#book.clearError(key);
        this.#updateStatus(key);
        await this.#pruneSecrets(key, entry, blocked, specHashes, signal);
        return;
      }
      if (step === 0) this.#updateStatus(key);
      const revision = this.#shownRevision(key);
      const log = this.#log.with({ deployment: key, revision });
      await this.#executor.run(actions, { signal, conflicts, log, revision });
    }
    throw new NotConvergedError(
      `Cannot converge deployment "${key}": still changing after ` +
        `${DEFAULT_MAX_STEPS_PER_PASS} rounds (does a container exit right after it starts?)`,
    );
  }

  /**
   * Removes the runtime secrets of `key` that no container of its current
   * desired state mounts — after the pass converged, so every container that
   * mounted an old one is gone (podman lets a secret in use be removed, and
   * the container then cannot start again). All of them once the deployment
   * is removed; none while its fate is unknown (invalid, refused, or a
   * partial view).
   */
  async #pruneSecrets(
    key: string,
    entry: DesiredEntry | undefined,
    blocked: boolean,
    specHashes: ReadonlyMap<string, string>,
    signal: AbortSignal,
  ): Promise<void> {
    let wanted: Set<string>;
    if (entry === undefined) {
      if (!this.store.isRemovable(key)) return;
      wanted = new Set();
    } else if (entry.kind === "valid" && !blocked) {
      wanted = wantedRuntimeSecrets(
        this.#deviceId,
        key,
        entry.state,
        (service) => specHashes.get(hashKey(key, service)),
      );
    } else {
      return;
    }
    // Without anything to mount, one look per deployment (e.g. leftovers after a restart) does.
    if (wanted.size === 0 && this.#noRuntimeSecrets.has(key)) return;
    if (wanted.size > 0) this.#noRuntimeSecrets.delete(key);
    const prefix = runtimeSecretPrefix(this.#deviceId, key);
    const present = await this.#runtime.listSecrets(prefix, signal);
    if (wanted.size === 0) this.#noRuntimeSecrets.add(key);
    for (const name of present) {
      if (wanted.has(name)) continue;
      await this.#runtime.removeSecret(name, signal);
      this.#log.info("Removed runtime secret {name}: no container of {deployment} mounts it", {
        name,
        deployment: key,
      });
    }
  }

  /** Names of the networks this device's agent created for `key`. */
  async #networksOf(key: string, signal: AbortSignal): Promise<string[]> {
    return (await this.#runtime.listManagedNetworks(signal))
      .filter((n) => n.labels[LABELS.device] === this.#deviceId)
      .filter((n) => n.labels[LABELS.deployment] === key)
      .map((n) => n.name);
  }

  /**
   * Fails the pass when a job of this revision exited with a code other than 0, with
   * its exit code and last log lines; the job is not run again until the revision
   * changes (ordering.ts), so the retries only look again.
   */
  async #checkJobs(
    entry: Extract<DesiredEntry, { kind: "valid" }>,
    observed: readonly ObservedContainer[],
    specHashes: ReadonlyMap<string, string>,
    signal: AbortSignal,
  ): Promise<void> {
    const services = entry.state.score.services;
    const jobs = jobServices(services);
    const failed = failedJobs(services, (name) => {
      const hash = specHashes.get(hashKey(entry.deployment, name));
      const mine = observed.filter((c) => c.service === name);
      return hash === undefined
        ? undefined
        : currentContainer(mine, hash, jobs.has(name), entry.revision);
    });
    if (failed.length === 0) return;
    const parts = await Promise.all(failed.map(async (job) => {
      const lines = await this.#runtime.logTail(job.containerId, JOB_LOG_LINES, signal)
        .catch(() => []);
      const tail = lines.map((l) => `  ${l.slice(0, JOB_LOG_LINE_MAX_CHARS)}`).join("\n");
      return `job "${job.service}" exited with code ${job.exitCode}; it runs again only ` +
        `for a new revision` + (tail ? `; last log lines:\n${tail}` : " (it wrote nothing)");
    }));
    throw new JobFailedError(parts.join("\n"));
  }

  /** This device's containers of `key`, recorded in the book; queues others found. */
  async #observe(key: string, signal: AbortSignal): Promise<ObservedContainer[]> {
    const mine = this.#own(await this.#runtime.listManaged(signal));
    for (const c of mine) {
      // Deployments seen in the runtime that nobody asked about yet.
      const d = c.deployment;
      if (!this.store.get(d) && !this.#book.has(d) && !this.#queue.isBusy(d)) this.#queue.add(d);
    }
    // Passes of one key never overlap, so its containers' tallies are updated by one at a time.
    const observed = tallyRestarts(this.#restarts, mine.filter((c) => c.deployment === key));
    const present = new Set(observed.map((c) => c.id));
    for (
      const event of observationEvents(key, this.#book.lastObserved(key), observed, {
        removedByAgent: this.#removedByAgent,
        reported: this.#crashLoopsReported,
        nowMs: this.#now(),
        healthyMs: this.#healthyMs,
      })
    ) this.#emit(event);
    for (const c of this.#book.lastObserved(key)) {
      if (!present.has(c.id)) {
        this.#restarts.delete(c.id);
        this.#removedByAgent.delete(c.id);
      }
    }
    this.#book.observed(key, observed);
    return observed;
  }

  #own(observed: readonly ObservedContainer[]): ObservedContainer[] {
    return ownContainers(observed, this.#deviceId, (d) => this.store.isClaimed(d));
  }

  /** Device policy over every desired deployment (admission is in revision order). */
  async #checkPolicy(): Promise<void> {
    // Again before every plan: a directory checked in an earlier pass may be a symlink now.
    const paths = hostPathsToResolve(this.store.entries(), this.#policy);
    // Without host paths the verdicts depend on the entries alone: the same entries, the same.
    const version = this.store.version;
    if (paths.size === 0 && this.#policyCheckedVersion === version) return;
    this.#policyCheckedVersion = paths.size === 0 ? version : undefined;
    this.#hostPaths = paths.size === 0 ? new Map() : await resolveHostPaths(paths);
    const violations = policyViolations(this.store.entries(), this.#policy, this.#hostPaths);
    // A deployment whose secrets this device cannot open is refused the same way, with why.
    const ownKey = this.#sealingPublicKey;
    for (const entry of this.store.entries()) {
      if (entry.kind !== "valid") continue;
      const problems = secretProblems(entry.state, ownKey);
      if (problems.length > 0) {
        violations.set(entry.deployment, [
          ...(violations.get(entry.deployment) ?? []),
          ...problems,
        ]);
      }
    }
    const before = new Map(
      [...this.store.keys()].flatMap((k) => {
        const v = this.#book.violations(k);
        return v === undefined ? [] : [[k, v] as const];
      }),
    );
    for (const event of policyEvents(before, violations, (d) => this.#shownRevision(d))) {
      this.#emit(event);
    }
    this.#book.setViolations(violations);
  }

  #updateStatus(key: string): void {
    const entry = this.store.get(key);
    this.#book.update(key, {
      entry,
      specHashes: serviceHashes(entry ? [entry] : []), // cached per value
      violations: this.#book.violations(key),
      keptForNow: !this.store.isRemovable(key),
      health: this.#health.reports(),
    });
  }

  // ---- what marks keys dirty --------------------------------------------------

  #desiredChanged(change: DesiredChange): void {
    if (change.kind === "snapshot") {
      for (const key of change.changed) this.#resetRetry(key);
      for (const key of new Set([...this.store.keys(), ...change.changed, ...this.#book.keys()])) {
        this.#queue.add(key);
      }
      // An authoritative view may make containers of unknown deployments removable.
      if (change.authoritative && this.#running) void this.#resync(this.#runSignal);
      return;
    }
    if (change.changed) this.#resetRetry(change.deployment);
    this.#queue.add(change.deployment);
    // A change can free or take container slots other deployments wait for.
    for (const key of this.#book.blockedBy("max_containers")) this.#queue.add(key);
  }

  async #watch(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      try {
        for await (const event of this.#runtime.watchEvents(signal)) {
          attempt = 0;
          if (!concernsDevice(event, this.#deviceId)) continue;
          if (event.kind === "container" && event.action === "health_status") {
            // The scheduler marks the key dirty if the verdict changed.
            if (event.containerId) void this.#health.refresh(event.containerId);
          } else if (event.kind === "container") this.#queue.add(event.deployment);
          else {
            this.#log.debug("Runtime asked for a resync: {reason}", { reason: event.reason });
            void this.#resync(signal);
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        this.#log.debug("Runtime event stream failed: {error}", {
          error: err instanceof Error ? err.message : String(err),
        });
      }
      if (signal.aborted) return;
      // The stream ended without a resync event: events may be lost, look again.
      await abortableSleep(backoffDelay(attempt++, this.#backoff, this.#random), signal);
      void this.#resync(signal);
    }
  }

  /** Marks every deployment dirty: desired ones, reported ones and any of ours found running. */
  async #resync(signal: AbortSignal, options: { first?: boolean } = {}): Promise<void> {
    const keys = new Set([...this.store.keys(), ...this.#book.keys()]);
    try {
      for (const c of this.#own(await this.#runtime.listManaged(signal))) keys.add(c.deployment);
      // A network whose containers are gone (a crash between the removals) is removed too.
      for (const n of await this.#runtime.listManagedNetworks(signal)) {
        const deployment = n.labels[LABELS.deployment];
        if (n.labels[LABELS.device] === this.#deviceId && deployment) keys.add(deployment);
      }
    } catch (err) {
      // An unreachable runtime was reported by the guard.
      if (!(err instanceof RuntimeUnavailableError) && !signal.aborted) {
        this.#log.warn("Cannot list containers for a resync: {error}", {
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    if (options.first) this.#first.begin(keys);
    for (const key of keys) this.#queue.add(key);
  }

  // ---- runtime availability ---------------------------------------------------

  #setRuntimeAvailable(available: boolean, err?: RuntimeUnavailableError): void {
    if (available === this.#runtimeAvailable) return;
    this.#runtimeAvailable = available;
    if (available) {
      // Backoff earned while the runtime was away says nothing about the deployments.
      this.#queue.forgetAll();
      this.#log.info("Container runtime is reachable again");
      this.#book.setRuntimeProblem(undefined);
    } else {
      const error = err?.message ?? "unknown error";
      this.#log.warn("Container runtime is unreachable, retrying: {error}", { error });
      this.#book.setRuntimeProblem(`container runtime unreachable: ${error}`);
    }
    // Every status changes with it: unknown while nobody can look, observed again after.
    for (const key of this.#book.keys()) void this.#updateStatus(key);
  }

  #emit(event: Parameters<NonNullable<ReconcileObserver["event"]>>[0]): void {
    try {
      this.#observer.event?.(event);
    } catch (err) {
      this.#log.debug("Event observer failed: {error}", { error: String(err) });
    }
  }

  #pass(key: string, startedMs: number, ok: boolean): void {
    try {
      this.#observer.pass?.(key, performance.now() - startedMs, ok);
    } catch (err) {
      this.#log.debug("Pass observer failed: {error}", { error: String(err) });
    }
  }

  /**
   * The revision of `key` that logs and events name: the deployment revision
   * people see (what `apply` printed), or the KV revision of a desired state
   * that carries none.
   */
  #shownRevision(key: string): number | undefined {
    const entry = this.store.get(key);
    if (entry === undefined) return undefined;
    return entry.kind === "valid"
      ? entry.state.deployment_revision ?? entry.revision
      : entry.revision;
  }

  #resetRetry(key: string): void {
    this.#queue.forget(key);
    this.#book.clearError(key);
    this.#queue.cancelDelayed(key);
  }
}
