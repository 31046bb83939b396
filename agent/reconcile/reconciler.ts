/**
 * The reconcile loop: keeps the device's containers at the desired state.
 *
 * Level-triggered, as in controller-runtime: every input — a desired-state
 * change, a runtime event, the periodic resync — only marks a deployment key
 * dirty in a {@linkcode WorkQueue}. Workers take keys one at a time per key
 * (different keys run concurrently, so a slow pull of one deployment does not
 * hold up another), re-observe the runtime, {@linkcode plan} and execute, and
 * repeat until the plan is empty. Failures requeue the key with capped
 * exponential backoff; invalid or policy-violating values are terminal until
 * the value changes.
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
  canonicalJson,
  type DeploymentStatus,
  type DeviceStatus,
  parseImageReference,
  type RegistryConfig,
} from "@drover/contracts";
import {
  ContainerNameConflictError,
  type ContainerRuntime,
  ImageMissingError,
  ImagePullError,
  type ObservedContainer,
  type RegistryAuth,
  RuntimeUnavailableError,
} from "../runtime/runtime.ts";
import { abortableSleep } from "../abortable_sleep.ts";
import { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.ts";
import type { DesiredEntry, DesiredSnapshot } from "./desired.ts";
import {
  type Action,
  type CreateAction,
  plan,
  type PullAction,
  STARTABLE,
  type StartAction,
} from "./plan.ts";
import { type HostPathFacts, hostPathsToResolve, policyViolations } from "./policy.ts";
import { resolveHostPaths } from "./host_paths.ts";
import { WorkQueue } from "./queue.ts";
import { serviceHashes } from "./spec_hashes.ts";
import { deploymentStatus, summariseDevice } from "./status.ts";

/** Default interval of the full resync safety net, in milliseconds. */
export const DEFAULT_RESYNC_INTERVAL_MS = 60_000;
/** Default number of deployments reconciled at the same time. */
export const DEFAULT_MAX_CONCURRENT = 8;
/** Default longest wait for one runtime call (pulls excepted), in milliseconds. */
export const DEFAULT_CALL_TIMEOUT_MS = 120_000;
/** Default wait before starting a container found stopped, in milliseconds. */
export const DEFAULT_STOPPED_SETTLE_MS = 1_000;
/** Plan/execute rounds in one pass before the pass counts as failed. */
export const DEFAULT_MAX_STEPS_PER_PASS = 5;

/** Options of {@linkcode Reconciler}. */
export interface ReconcilerOptions {
  /** This device's id (for logs). */
  deviceId: string;
  /** The container runtime to drive. */
  runtime: ContainerRuntime;
  /** What this device accepts. */
  policy: AgentPolicy;
  /** Credentials and TLS settings per registry host[:port]. */
  registries: Record<string, RegistryConfig>;
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
   * {@linkcode DEFAULT_CALL_TIMEOUT_MS}); a hung podman then counts as unavailable.
   */
  callTimeoutMs?: number;
  /**
   * How long a container found stopped is left alone before it is started again, in ms
   * (default {@linkcode DEFAULT_STOPPED_SETTLE_MS}); see `#settledStopped`.
   */
  stoppedSettleMs?: number;
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
   * or found running) has had one reconcile attempt — successful or not, so a
   * missing podman does not hold it forever; an image pull under way counts as
   * attempted, as a registry may take minutes — or when `run` stops.
   */
  readonly firstPass: Promise<void>;

  readonly #runtime: ContainerRuntime;
  readonly #policy: AgentPolicy;
  readonly #registries: Record<string, RegistryConfig>;
  readonly #resyncIntervalMs: number;
  readonly #onChange: () => void;
  readonly #backoff: BackoffOptions;
  readonly #maxConcurrent: number;
  readonly #random: () => number;
  readonly #callTimeoutMs: number;
  readonly #stoppedSettleMs: number;
  readonly #log: Logger;

  #desired = new Map<string, DesiredEntry>();
  #authoritative = false;
  /** Keys deleted in KV while the view is otherwise partial: removable anyway. */
  #deleted = new Set<string>();
  #statuses = new Map<string, DeploymentStatus>();
  #statusJson = new Map<string, string>();
  /** Last error per key; shown as the status message until a pass succeeds. */
  #errors = new Map<string, string>();
  #failures = new Map<string, number>();
  #pulling = new Map<string, Set<string>>();
  /** Containers of each key as last observed, for statuses written on errors. */
  #lastObserved = new Map<string, ObservedContainer[]>();
  /**
   * Bind sources under allowed prefixes, and the prefixes, as last resolved (policy.ts).
   * Only those are looked at, so without `allowed_host_paths` no file is touched.
   */
  #hostPaths: HostPathFacts = new Map();
  /** Images known to be present; saves a round trip per create. */
  #knownImages = new Set<string>();
  #pullsInFlight = new Map<string, Promise<void>>();
  #imageChecks = new Map<string, Promise<boolean>>();
  #queue = new WorkQueue();
  #running = false;
  #runSignal: AbortSignal = new AbortController().signal;
  #runtimeAvailable = true;
  /** Why the runtime is unreachable, while it is; shown on deployments that cannot progress. */
  #runtimeProblem: string | undefined;
  #firstPassDone = false;
  #firstPassPending: Set<string> | undefined;
  #resolveFirstPass!: () => void;

  constructor(options: ReconcilerOptions) {
    this.#runtime = options.runtime;
    this.#policy = options.policy;
    this.#registries = options.registries;
    this.#resyncIntervalMs = options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    this.#onChange = options.onChange ?? (() => {});
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.#maxConcurrent = Math.max(1, options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT);
    this.#random = options.random ?? Math.random;
    this.#callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#stoppedSettleMs = options.stoppedSettleMs ?? DEFAULT_STOPPED_SETTLE_MS;
    this.#log = getLogger(["drover", "reconcile"]).with({ device: options.deviceId });
    this.firstPass = new Promise((resolve) => (this.#resolveFirstPass = resolve));
  }

  // ---- inputs ---------------------------------------------------------------

  /**
   * Replaces the whole desired state (a KV snapshot or the offline cache).
   * With `authoritative: false`, deployments not listed are left alone.
   */
  setSnapshot(snapshot: DesiredSnapshot): void {
    const previous = this.#desired;
    this.#desired = new Map(snapshot.entries);
    this.#authoritative = snapshot.authoritative;
    this.#deleted.clear();
    const keys = new Set([...previous.keys(), ...this.#desired.keys(), ...this.#statuses.keys()]);
    for (const key of keys) {
      if (!sameEntry(previous.get(key), this.#desired.get(key))) this.#resetRetry(key);
      this.#queue.add(key);
    }
    // An authoritative view may make containers of unknown deployments removable.
    if (snapshot.authoritative && this.#running) void this.#resync(this.#runSignal);
  }

  /** Sets (or, with `null`, deletes) one deployment's desired state. */
  setDesired(deployment: string, entry: DesiredEntry | null): void {
    const previous = this.#desired.get(deployment);
    if (entry === null) {
      this.#desired.delete(deployment);
      this.#deleted.add(deployment);
    } else {
      this.#desired.set(deployment, entry);
      this.#deleted.delete(deployment);
    }
    if (!sameEntry(previous, entry ?? undefined)) this.#resetRetry(deployment);
    this.#queue.add(deployment);
    // A change can free or take container slots other deployments wait for.
    if (this.#policy.max_containers !== undefined) {
      for (const [key, status] of this.#statuses) {
        if (status.message?.includes("policy.max_containers")) this.#queue.add(key);
      }
    }
  }

  // ---- outputs --------------------------------------------------------------

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
      runtimeAvailable: this.#runtimeAvailable,
    });
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
    const stopped = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
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
    } finally {
      this.#markFirstPassDone();
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
        this.#attempted(key);
      }
    }
  }

  /** One pass for one key, with the error policy around it. Never throws. */
  async #process(key: string, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    try {
      await this.#reconcileKey(key, signal);
      this.#failures.delete(key);
      this.#queue.cancelDelayed(key);
    } catch (err) {
      if (signal.aborted) return;
      const attempt = this.#failures.get(key) ?? 0;
      this.#failures.set(key, attempt + 1);
      const delayMs = backoffDelay(attempt, this.#backoff, this.#random);
      this.#queue.addAfter(key, delayMs);
      if (err instanceof RuntimeUnavailableError) {
        // Keep the last known container states (they most likely still run), but
        // a deployment that cannot progress says why rather than nothing at all.
        this.#setRuntimeAvailable(false, err);
        await this.#updateStatus(key, this.#lastObserved.get(key) ?? []);
        return;
      }
      const message = errorMessage(err);
      const log = this.#log.with({ deployment: key, revision: this.#desired.get(key)?.revision });
      if (this.#errors.get(key) !== message) {
        log.warn("Reconcile of {deployment} failed, retrying in {delayMs} ms: {error}", {
          error: message,
          delayMs,
        });
      } else {
        log.debug("Reconcile of {deployment} still failing, retrying in {delayMs} ms", {
          delayMs,
        });
      }
      this.#errors.set(key, message);
      await this.#updateStatus(key, this.#lastObserved.get(key) ?? []);
    }
  }

  async #reconcileKey(key: string, signal: AbortSignal): Promise<void> {
    const conflicts = new Set<string>();
    for (let step = 0; step < DEFAULT_MAX_STEPS_PER_PASS; step++) {
      const entry = this.#desired.get(key);
      // Again before every plan: a directory checked in an earlier pass may be a symlink now.
      const hostPaths = hostPathsToResolve(this.#desired.values(), this.#policy);
      this.#hostPaths = hostPaths.size === 0 ? new Map() : await resolveHostPaths(hostPaths);
      const blocked = this.#violations().has(key);
      const hashes = await serviceHashes(entry ? [entry] : []);
      const all = await this.#call("list containers", signal, (s) => this.#runtime.listManaged(s));
      this.#setRuntimeAvailable(true);
      this.#discover(all);
      const observed = all.filter((c) => c.deployment === key);
      this.#lastObserved.set(key, observed);
      const actions = plan(entry ? new Map([[key, entry]]) : new Map(), observed, {
        removable: this.#authoritative || this.#deleted.has(key),
        specHashes: hashes,
        blocked: blocked ? new Set([key]) : undefined,
      });
      if (actions.length === 0) {
        this.#errors.delete(key);
        await this.#updateStatus(key, observed);
        if (observed.length === 0 && !entry) this.#lastObserved.delete(key);
        return;
      }
      if (step === 0) await this.#updateStatus(key, observed);
      await this.#execute(actions, signal, conflicts);
    }
    throw new NotConvergedError(
      `Cannot converge deployment "${key}": still changing after ` +
        `${DEFAULT_MAX_STEPS_PER_PASS} rounds (does a container exit right after it starts?)`,
    );
  }

  /**
   * Runs a plan: removals of unwanted containers first (they may hold ports),
   * then each service's steps in order, services concurrently.
   */
  async #execute(
    actions: readonly Action[],
    signal: AbortSignal,
    conflicts: Set<string>,
  ): Promise<void> {
    const isCleanup = (a: Action) =>
      a.action === "remove" &&
      (a.reason === "duplicate" || a.reason === "service-removed" ||
        a.reason === "deployment-removed");
    await settleAll(actions.filter(isCleanup).map((a) => this.#perform(a, signal, conflicts)));
    const groups = new Map<string, Action[]>();
    for (const a of actions) {
      if (isCleanup(a)) continue;
      const list = groups.get(a.service) ?? [];
      list.push(a);
      groups.set(a.service, list);
    }
    await settleAll(
      [...groups.values()].map(async (steps) => {
        for (const step of steps) await this.#perform(step, signal, conflicts);
      }),
    );
  }

  async #perform(action: Action, signal: AbortSignal, conflicts: Set<string>): Promise<void> {
    const log = this.#log.with({
      deployment: action.deployment,
      service: action.service,
      revision: action.action === "create"
        ? action.revision
        : this.#desired.get(action.deployment)?.revision,
    });
    switch (action.action) {
      case "pull":
        return await this.#ensureImage(action, signal, log);
      case "create":
        return await this.#create(action, signal, conflicts, log);
      case "start":
        if (action.reason === "stopped" && !(await this.#settledStopped(action, signal))) return;
        await this.#call(
          `start container ${action.name}`,
          signal,
          (s) => this.#runtime.startContainer(action.containerId, s),
        );
        log.info("Started container {container} ({reason})", {
          container: action.name,
          reason: action.reason,
        });
        return;
      case "remove":
        await this.#call(
          `remove container ${action.name}`,
          signal,
          (s) => this.#runtime.removeContainer(action.containerId, s),
        );
        log.info("Removed container {container} ({reason})", {
          container: action.name,
          reason: action.reason,
        });
        return;
    }
  }

  /**
   * Waits, then tells whether the container is still there and still stopped. A container that
   * just stopped may be in the middle of someone's `podman rm -f` or `podman stop`: podman 4.3
   * lets a start slip in between their kill and their removal or clean-up, and then loses track
   * of the restarted container while its conmon keeps the published ports bound (measured: 11 of
   * 20 races leaked one; every later create of the service then failed with "address already in
   * use"), or the CLI fails with "refusing to clean up". With a pause first, none leaked in 20.
   * If the container went away meanwhile, the next round recreates it.
   */
  async #settledStopped(action: StartAction, signal: AbortSignal): Promise<boolean> {
    if (this.#stoppedSettleMs <= 0) return true;
    await abortableSleep(this.#stoppedSettleMs, signal);
    const now = await this.#call(
      "list containers",
      signal,
      (s) => this.#runtime.listManaged(s),
    );
    const container = now.find((c) => c.id === action.containerId);
    return container !== undefined && STARTABLE.has(container.state);
  }

  async #create(
    action: CreateAction,
    signal: AbortSignal,
    conflicts: Set<string>,
    log: Logger,
  ): Promise<void> {
    const { spec } = action;
    let id: string;
    try {
      id = await this.#call(
        `create container ${spec.name}`,
        signal,
        (s) => this.#runtime.createContainer(spec, s),
      );
    } catch (err) {
      if (err instanceof ImageMissingError) {
        // Removed behind our back since we last looked: the next round pulls it.
        this.#knownImages.delete(spec.image);
        return;
      }
      if (err instanceof ContainerNameConflictError) {
        // Once: a container we do not see yet (a crash left one, a list raced a
        // create). Twice in one pass: the name belongs to something we do not manage.
        if (!conflicts.has(spec.name)) {
          conflicts.add(spec.name);
          return;
        }
        throw new Error(
          `Cannot create container "${spec.name}": the name is taken by a container ` +
            "Drover does not manage; remove or rename it",
          { cause: err },
        );
      }
      throw err;
    }
    await this.#call(
      `start container ${spec.name}`,
      signal,
      (s) => this.#runtime.startContainer(id, s),
    );
    log.info("Created and started container {container} ({reason})", {
      container: spec.name,
      reason: action.reason,
      image: spec.image,
    });
  }

  /** Makes sure the image is present, pulling at most once at a time per image. */
  async #ensureImage(action: PullAction, signal: AbortSignal, log: Logger): Promise<void> {
    const { image } = action;
    if (action.policy === "if-missing") {
      if (this.#knownImages.has(image)) return;
      let check = this.#imageChecks.get(image);
      if (check === undefined) {
        check = this.#call(
          `look up image ${image}`,
          signal,
          (s) => this.#runtime.hasImage(image, s),
        )
          .finally(() => this.#imageChecks.delete(image));
        this.#imageChecks.set(image, check);
      }
      if (await check) {
        this.#knownImages.add(image);
        return;
      }
    }
    let pull = this.#pullsInFlight.get(image);
    if (pull === undefined) {
      pull = this.#pull(image, signal, log).finally(() => this.#pullsInFlight.delete(image));
      this.#pullsInFlight.set(image, pull);
    }
    // A registry may take minutes: readiness (sd_notify) must not wait for it.
    this.#attempted(action.deployment);
    const pulling = this.#pulling.get(action.deployment) ?? new Set();
    pulling.add(action.service);
    this.#pulling.set(action.deployment, pulling);
    await this.#updateStatus(action.deployment, this.#lastObserved.get(action.deployment) ?? []);
    try {
      await pull;
    } catch (err) {
      // `:latest` is pulled even when present; offline devices still run what they have.
      if (
        action.policy === "always" && err instanceof ImagePullError &&
        await this.#call(`look up image ${image}`, signal, (s) => this.#runtime.hasImage(image, s))
      ) {
        log.warn("Using the local copy of {image}: pulling it failed: {error}", {
          image,
          error: err.registryMessage,
        });
        return;
      }
      throw err;
    } finally {
      pulling.delete(action.service);
      if (pulling.size === 0) this.#pulling.delete(action.deployment);
    }
  }

  async #pull(image: string, signal: AbortSignal, log: Logger): Promise<void> {
    const started = Date.now();
    log.debug("Pulling image {image}", { image });
    await this.#runtime.pullImage(image, this.#registryAuth(image), signal);
    this.#knownImages.add(image);
    log.info("Pulled image {image} in {ms} ms", { image, ms: Date.now() - started });
  }

  /**
   * One runtime call bounded by {@linkcode ReconcilerOptions.callTimeoutMs}:
   * a podman that accepts connections but never answers must not hold a
   * deployment (or the first pass) forever.
   */
  async #call<T>(
    what: string,
    signal: AbortSignal,
    call: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const timeout = AbortSignal.timeout(this.#callTimeoutMs);
    try {
      return await call(AbortSignal.any([signal, timeout]));
    } catch (err) {
      if (timeout.aborted && !signal.aborted) {
        throw new RuntimeUnavailableError(
          `Cannot ${what}: the runtime did not answer within ${this.#callTimeoutMs} ms`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  #registryAuth(image: string): RegistryAuth | undefined {
    const ref = parseImageReference(image);
    if (typeof ref === "string") return undefined;
    const config = this.#registries[ref.registry] ??
      Object.entries(this.#registries).find(([host]) =>
        host.toLowerCase() === ref.registry.toLowerCase()
      )?.[1];
    if (!config) return undefined;
    return {
      ...(config.username !== undefined ? { username: config.username } : {}),
      ...(config.password !== undefined ? { password: config.password } : {}),
      tlsVerify: config.tls_verify,
    };
  }

  // ---- runtime events and resync ---------------------------------------------

  async #watch(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      try {
        for await (const event of this.#runtime.watchEvents(signal)) {
          attempt = 0;
          if (event.kind === "container") this.#queue.add(event.deployment);
          else {
            this.#log.debug("Runtime asked for a resync: {reason}", { reason: event.reason });
            void this.#resync(signal);
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        this.#log.debug("Runtime event stream failed: {error}", { error: errorMessage(err) });
      }
      if (signal.aborted) return;
      // The stream ended without a resync event: events may be lost, look again.
      await abortableSleep(backoffDelay(attempt++, this.#backoff, this.#random), signal);
      void this.#resync(signal);
    }
  }

  /** Marks every deployment dirty: desired ones, reported ones and any found running. */
  async #resync(signal: AbortSignal, options: { first?: boolean } = {}): Promise<void> {
    const keys = new Set([...this.#desired.keys(), ...this.#statuses.keys()]);
    try {
      const observed = await this.#call(
        "list containers",
        signal,
        (s) => this.#runtime.listManaged(s),
      );
      this.#setRuntimeAvailable(true);
      for (const c of observed) keys.add(c.deployment);
    } catch (err) {
      if (err instanceof RuntimeUnavailableError) this.#setRuntimeAvailable(false, err);
      else {this.#log.warn("Cannot list containers for a resync: {error}", {
          error: errorMessage(err),
        });}
    }
    if (options.first) {
      this.#firstPassPending = new Set(keys);
      if (keys.size === 0) this.#markFirstPassDone();
    }
    for (const key of keys) this.#queue.add(key);
  }

  /** Queues deployments seen in the runtime that nobody asked about yet. */
  #discover(observed: readonly ObservedContainer[]): void {
    for (const c of observed) {
      const key = c.deployment;
      if (!this.#desired.has(key) && !this.#statuses.has(key) && !this.#queue.isBusy(key)) {
        this.#queue.add(key);
      }
    }
  }

  // ---- status ---------------------------------------------------------------

  #violations(): Map<string, string[]> {
    return policyViolations(this.#desired.values(), this.#policy, this.#hostPaths);
  }

  async #updateStatus(key: string, observed: readonly ObservedContainer[]): Promise<void> {
    const entry = this.#desired.get(key);
    const status = deploymentStatus({
      deployment: key,
      entry,
      observed,
      specHashes: await serviceHashes(entry ? [entry] : []), // cached per value
      violations: this.#violations().get(key),
      error: this.#errors.get(key),
      keptForNow: !(this.#authoritative || this.#deleted.has(key)),
      pulling: this.#pulling.get(key),
      waiting: this.#runtimeProblem,
    });
    const json = status === undefined ? undefined : canonicalJson(status);
    if (json === this.#statusJson.get(key)) return;
    const before = this.#statuses.get(key);
    if (status === undefined) {
      this.#statuses.delete(key);
      this.#statusJson.delete(key);
    } else {
      this.#statuses.set(key, status);
      this.#statusJson.set(key, json!);
    }
    this.#logTransition(key, before, status);
    this.#changed();
  }

  #logTransition(
    key: string,
    before: DeploymentStatus | undefined,
    after: DeploymentStatus | undefined,
  ): void {
    const log = this.#log.with({ deployment: key, revision: after?.revision ?? before?.revision });
    if (after === undefined) {
      if (before) log.info("Deployment {deployment} removed");
      return;
    }
    if (before?.phase === after.phase && before.message === after.message) return;
    if (after.phase === "failed") {
      // Pass errors were logged with their retry delay; this is for terminal ones.
      if (this.#errors.has(key)) return;
      log.warn("Deployment {deployment} failed: {message}", { message: after.message ?? "" });
    } else if (after.phase === "running" && before?.phase !== "running") {
      log.info("Deployment {deployment} is running", {});
    }
  }

  #setRuntimeAvailable(available: boolean, err?: unknown): void {
    if (available === this.#runtimeAvailable) return;
    this.#runtimeAvailable = available;
    this.#runtimeProblem = available
      ? undefined
      : `container runtime unreachable: ${errorMessage(err)}`;
    // Backoff earned while the runtime was away says nothing about the deployments.
    if (available) this.#failures.clear();
    if (available) this.#log.info("Container runtime is reachable again");
    else {
      this.#log.warn("Container runtime is unreachable, retrying: {error}", {
        error: errorMessage(err),
      });
    }
    this.#changed();
  }

  /** Counts `key` as attempted for {@linkcode firstPass}. */
  #attempted(key: string): void {
    this.#firstPassPending?.delete(key);
    if (this.#firstPassPending?.size === 0) this.#markFirstPassDone();
  }

  #markFirstPassDone(): void {
    if (this.#firstPassDone) return;
    this.#firstPassDone = true;
    this.#firstPassPending = undefined;
    this.#resolveFirstPass();
    this.#changed();
  }

  #resetRetry(key: string): void {
    this.#failures.delete(key);
    this.#errors.delete(key);
    this.#queue.cancelDelayed(key);
  }

  #changed(): void {
    try {
      this.#onChange();
    } catch (err) {
      this.#log.error("onChange callback failed: {error}", { error: errorMessage(err) });
    }
  }
}

function sameEntry(a: DesiredEntry | undefined, b: DesiredEntry | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  return a.kind === b.kind && a.revision === b.revision;
}

/** Waits for all, then rethrows the first failure (the others are logged by nobody: same cause). */
async function settleAll(tasks: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

function errorMessage(err: unknown): string {
  if (err instanceof ImagePullError) return err.message;
  return err instanceof Error ? err.message : String(err);
}
