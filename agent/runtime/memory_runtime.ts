/**
 * `InMemoryRuntime` — a FAKE container runtime that keeps containers in a
 * map. It exists for two jobs the real one cannot do: the fleet benchmark,
 * where thousands of agents run in one process, and fast,
 * deterministic reconciler tests that inject latency, failed pulls and an
 * unavailable runtime on demand. The real path is `PodmanRuntime`, covered by
 * tests against a real podman service.
 *
 * What it models: create/start/stop/remove with podman's idempotence (start of
 * a running container and removal of a missing one succeed), name conflicts,
 * images that must be pulled before create, and events for managed
 * containers, and health checks that pass unless told otherwise
 * ({@linkcode InMemoryRuntime.setHealthCheck}) with podman's verdict rules
 * (retries, start period). What it does not: processes, ports, restart
 * policies, stop timeouts.
 *
 * @module
 */

import { LABELS, MANAGED_LABEL_VALUE } from "@drover/contracts";
import {
  ContainerNameConflictError,
  type ContainerRuntime,
  type ContainerSpec,
  type HealthReport,
  ImageMissingError,
  ImagePullError,
  type ObservedContainer,
  type ObservedNetwork,
  type ObservedVolume,
  type RegistryAuth,
  type RuntimeEvent,
  RuntimeUnavailableError,
  STARTABLE_STATES,
} from "./runtime.ts";

/** Runtime operations, for latency injection and call counting. */
export type MemoryRuntimeOperation =
  | "listManaged"
  | "hasImage"
  | "pullImage"
  | "createContainer"
  | "startContainer"
  | "removeContainer"
  | "runHealthcheck"
  | "inspectHealth"
  | "networks"
  | "volumes"
  | "logs"
  | "secrets";

/** Options of {@linkcode InMemoryRuntime}. */
export interface InMemoryRuntimeOptions {
  /** Images present from the start. */
  images?: Iterable<string>;
  /** Simulated latency per operation, in milliseconds (default none). */
  latencyMs?: Partial<Record<MemoryRuntimeOperation, number>>;
}

/** How a pull of one image behaves. */
export interface PullBehaviour {
  /** Extra time the pull takes, in milliseconds. */
  delayMs?: number;
  /** If set, the pull fails with this registry message. */
  error?: string;
}

/** The outcome the next health checks of a container have. */
export interface HealthCheckOutcome {
  exitCode: number;
  output?: string;
}

interface FakeContainer {
  id: string;
  spec: ContainerSpec;
  state: string;
  restarts: number;
  exitCode?: number;
  startedAtMs?: number;
  health?: HealthReport;
  /** Lines it wrote (see `exitByItself`). */
  output?: string[];
}

/** A fake, in-memory {@linkcode ContainerRuntime}. See the module doc. */
export class InMemoryRuntime implements ContainerRuntime {
  /** Calls made per operation (successful or not). */
  readonly calls: Record<MemoryRuntimeOperation, number> = {
    listManaged: 0,
    hasImage: 0,
    pullImage: 0,
    createContainer: 0,
    startContainer: 0,
    removeContainer: 0,
    runHealthcheck: 0,
    inspectHealth: 0,
    networks: 0,
    volumes: 0,
    logs: 0,
    secrets: 0,
  };
  /** Networks by name, with their labels. */
  readonly networks = new Map<string, Record<string, string>>();
  /** Named volumes by name, with their labels. */
  readonly volumes = new Map<string, Record<string, string>>();
  /** The runtime's secrets by name (values kept as given, as podman's store does). */
  readonly secrets = new Map<string, Uint8Array>();
  /** Every pull as `[image, auth]`, in order. */
  readonly pulls: Array<[string, RegistryAuth | undefined]> = [];

  #containers = new Map<string, FakeContainer>();
  #images: Set<string>;
  #latency: Partial<Record<MemoryRuntimeOperation, number>>;
  #pullBehaviour = new Map<string, PullBehaviour>();
  #available = true;
  #nextId = 1;
  #watchers = new Set<(e: RuntimeEvent) => void>();
  /** Outcome of health checks per container name (default: they pass). */
  #checkOutcomes = new Map<string, HealthCheckOutcome>();

  constructor(options: InMemoryRuntimeOptions = {}) {
    this.#images = new Set(options.images ?? []);
    this.#latency = { ...options.latencyMs };
  }

  // ---- ContainerRuntime ---------------------------------------------------

  /** See {@linkcode ContainerRuntime.listManaged}. */
  async listManaged(signal?: AbortSignal): Promise<ObservedContainer[]> {
    await this.#enter("listManaged", signal);
    return [...this.#containers.values()]
      .filter((c) => c.spec.labels[LABELS.managed] === MANAGED_LABEL_VALUE)
      .map((c) => this.#observe(c));
  }

  /** See {@linkcode ContainerRuntime.hasImage}. */
  async hasImage(image: string, signal?: AbortSignal): Promise<boolean> {
    await this.#enter("hasImage", signal);
    return this.#images.has(image);
  }

  /** See {@linkcode ContainerRuntime.pullImage}. Pulls succeed unless {@linkcode setPull} says otherwise. */
  async pullImage(image: string, auth: RegistryAuth | undefined, signal?: AbortSignal) {
    await this.#enter("pullImage", signal);
    this.pulls.push([image, auth]);
    const behaviour = this.#pullBehaviour.get(image) ?? {};
    if (behaviour.delayMs) await delay(behaviour.delayMs, signal);
    this.#ensureAvailable();
    if (behaviour.error !== undefined) throw new ImagePullError(image, behaviour.error);
    this.#images.add(image);
  }

  /** See {@linkcode ContainerRuntime.createContainer}. */
  async createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    await this.#enter("createContainer", signal);
    if (this.#byName(spec.name)) throw new ContainerNameConflictError(spec.name);
    if (!this.#images.has(spec.image)) throw new ImageMissingError(spec.image);
    const id = (this.#nextId++).toString(16).padStart(12, "0");
    this.#containers.set(id, { id, spec: structuredClone(spec), state: "created", restarts: 0 });
    this.#emit(id, "create");
    return id;
  }

  /** See {@linkcode ContainerRuntime.startContainer}; accepts an id or a name. */
  async startContainer(id: string, signal?: AbortSignal): Promise<void> {
    await this.#enter("startContainer", signal);
    const c = this.#find(id);
    if (c.state === "running") return;
    c.state = "running";
    c.startedAtMs = Date.now();
    // As podman: every start begins a new health record.
    if (hasHealthCheck(c.spec)) c.health = { status: "starting", failingStreak: 0 };
    this.#emit(c.id, "start");
  }

  /** See {@linkcode ContainerRuntime.startStopped}: no race to wait out in memory. */
  async startStopped(id: string, signal?: AbortSignal): Promise<boolean> {
    const c = this.#containers.get(id);
    if (c === undefined || !STARTABLE_STATES.has(c.state)) return false;
    await this.startContainer(id, signal);
    return true;
  }

  /** See {@linkcode ContainerRuntime.ensureSecret}. */
  async ensureSecret(name: string, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.#enter("secrets", signal);
    if (!this.secrets.has(name)) this.secrets.set(name, new Uint8Array(data));
  }

  /** See {@linkcode ContainerRuntime.listSecrets}. */
  async listSecrets(prefix: string, signal?: AbortSignal): Promise<string[]> {
    await this.#enter("secrets", signal);
    return [...this.secrets.keys()].filter((n) => n.startsWith(prefix)).sort();
  }

  /** See {@linkcode ContainerRuntime.removeSecret}. */
  async removeSecret(name: string, signal?: AbortSignal): Promise<void> {
    await this.#enter("secrets", signal);
    this.secrets.delete(name);
  }

  /** See {@linkcode ContainerRuntime.removeContainer}. */
  async removeContainer(id: string, signal?: AbortSignal): Promise<void> {
    await this.#enter("removeContainer", signal);
    const c = this.#containers.get(id) ?? this.#byName(id);
    if (!c) return;
    this.#containers.delete(c.id);
    this.#emit(c.id, "remove", c);
  }

  /**
   * See {@linkcode ContainerRuntime.runHealthcheck}. The outcome is the one set with
   * {@linkcode setHealthCheck} (default: exit 0); the verdict follows podman's rules:
   * a pass is healthy, `retries` failures in a row outside the start period unhealthy.
   */
  async runHealthcheck(id: string, signal?: AbortSignal): Promise<HealthReport | undefined> {
    await this.#enter("runHealthcheck", signal);
    const c = this.#containers.get(id) ?? this.#byName(id);
    if (!c || c.state !== "running" || !c.health || !c.spec.healthcheck) return undefined;
    const outcome = this.#checkOutcomes.get(c.spec.name) ?? { exitCode: 0 };
    const now = Date.now();
    const check = c.spec.healthcheck;
    const health: HealthReport = {
      ...c.health,
      lastExitCode: outcome.exitCode,
      lastEndedAtMs: now,
      ...(outcome.output !== undefined ? { lastOutput: outcome.output } : {}),
    };
    if (outcome.output === undefined) delete health.lastOutput;
    if (outcome.exitCode === 0) {
      health.status = "healthy";
      health.failingStreak = 0;
    } else if (now - (c.startedAtMs ?? 0) >= check.startPeriodMs) {
      health.failingStreak++;
      if (health.failingStreak >= check.retries) health.status = "unhealthy";
    }
    c.health = health;
    this.#emit(c.id, "health_status");
    return { ...health };
  }

  /** See {@linkcode ContainerRuntime.inspectHealth}. */
  async inspectHealth(id: string, signal?: AbortSignal): Promise<HealthReport | undefined> {
    await this.#enter("inspectHealth", signal);
    const c = this.#containers.get(id) ?? this.#byName(id);
    return c?.health ? { ...c.health } : undefined;
  }

  /** See {@linkcode ContainerRuntime.ensureNetwork}. */
  async ensureNetwork(name: string, labels: Record<string, string>, signal?: AbortSignal) {
    await this.#enter("networks", signal);
    if (!this.networks.has(name)) this.networks.set(name, { ...labels });
  }

  /** See {@linkcode ContainerRuntime.removeNetwork}. */
  async removeNetwork(name: string, signal?: AbortSignal): Promise<void> {
    await this.#enter("networks", signal);
    const used = [...this.#containers.values()].some((c) =>
      c.spec.network?.mode === "bridge" && c.spec.network.name === name
    );
    if (used) throw new Error(`Cannot remove network "${name}": containers use it`);
    this.networks.delete(name);
  }

  /** See {@linkcode ContainerRuntime.listManagedNetworks}. */
  async listManagedNetworks(signal?: AbortSignal): Promise<ObservedNetwork[]> {
    await this.#enter("networks", signal);
    return [...this.networks].filter(([, labels]) => labels[LABELS.managed] === MANAGED_LABEL_VALUE)
      .map(([name, labels]) => ({ name, labels: { ...labels } }));
  }

  /** See {@linkcode ContainerRuntime.ensureVolume}. */
  async ensureVolume(name: string, labels: Record<string, string>, signal?: AbortSignal) {
    await this.#enter("volumes", signal);
    if (!this.volumes.has(name)) this.volumes.set(name, { ...labels });
  }

  /** See {@linkcode ContainerRuntime.listManagedVolumes}. */
  async listManagedVolumes(signal?: AbortSignal): Promise<ObservedVolume[]> {
    await this.#enter("volumes", signal);
    return [...this.volumes].filter(([, labels]) => labels[LABELS.managed] === MANAGED_LABEL_VALUE)
      .map(([name, labels]) => ({ name, labels: { ...labels } }));
  }

  /** See {@linkcode ContainerRuntime.removeVolume}. */
  async removeVolume(name: string, signal?: AbortSignal): Promise<"removed" | "in-use" | "gone"> {
    await this.#enter("volumes", signal);
    if (!this.volumes.has(name)) return "gone";
    const used = [...this.#containers.values()].some((c) =>
      c.spec.volumes.some((v) => v.type === "volume" && v.source === name)
    );
    if (used) return "in-use";
    this.volumes.delete(name);
    return "removed";
  }

  /** See {@linkcode ContainerRuntime.logTail}: what {@linkcode exitByItself} said. */
  async logTail(id: string, lines: number, signal?: AbortSignal): Promise<string[]> {
    await this.#enter("logs", signal);
    const c = this.#containers.get(id) ?? this.#byName(id);
    return (c?.output ?? []).slice(-lines);
  }

  /** See {@linkcode ContainerRuntime.watchEvents}. Yields `resync` when the runtime comes back. */
  async *watchEvents(signal: AbortSignal): AsyncIterable<RuntimeEvent> {
    const pending: RuntimeEvent[] = [];
    let wake: (() => void) | undefined;
    const push = (e: RuntimeEvent) => {
      pending.push(e);
      wake?.();
    };
    const onAbort = () => wake?.();
    this.#watchers.add(push);
    signal.addEventListener("abort", onAbort);
    try {
      while (!signal.aborted) {
        const next = pending.shift();
        if (next) {
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.#watchers.delete(push);
      signal.removeEventListener("abort", onAbort);
    }
  }

  // ---- test and benchmark controls -----------------------------------------

  /**
   * Makes the health checks of the container named `name` (`<deployment>_<service>`,
   * also future ones) end with `outcome`; `undefined` restores passing checks.
   */
  setHealthCheck(name: string, outcome: HealthCheckOutcome | undefined): void {
    if (outcome) this.#checkOutcomes.set(name, outcome);
    else this.#checkOutcomes.delete(name);
  }

  /**
   * Sets a container's health verdict directly, as podman's own timer-run check
   * would, with a `health_status` event (no checks need to run: fleet benchmarks).
   */
  setHealth(nameOrId: string, status: HealthReport["status"], output?: string): void {
    const c = this.#find(nameOrId);
    c.health = {
      status,
      failingStreak: status === "unhealthy" ? (c.spec.healthcheck?.retries ?? 1) : 0,
      lastExitCode: status === "unhealthy" ? 1 : 0,
      lastEndedAtMs: Date.now(),
      ...(output !== undefined ? { lastOutput: output } : {}),
    };
    this.#emit(c.id, "health_status");
  }

  /** Makes pulls of `image` slow and/or fail; `undefined` restores the default. */
  setPull(image: string, behaviour: PullBehaviour | undefined): void {
    if (behaviour) this.#pullBehaviour.set(image, behaviour);
    else this.#pullBehaviour.delete(image);
  }

  /** Adds an image to local storage, as `podman load` would. */
  addImage(image: string): void {
    this.#images.add(image);
  }

  /** Removes an image from local storage, as `podman rmi` would. */
  removeImage(image: string): void {
    this.#images.delete(image);
  }

  /**
   * Takes the runtime away (every call throws {@linkcode RuntimeUnavailableError})
   * or brings it back (watchers get a `resync`).
   */
  setAvailable(available: boolean): void {
    const cameBack = available && !this.#available;
    this.#available = available;
    if (cameBack) this.#broadcast({ kind: "resync", reason: "runtime is available again" });
  }

  /** Changes the simulated latency of an operation. */
  setLatency(operation: MemoryRuntimeOperation, ms: number): void {
    this.#latency[operation] = ms;
  }

  /** A snapshot of every container, managed or not (no latency, never fails). */
  snapshot(): ObservedContainer[] {
    return [...this.#containers.values()].map((c) => this.#observe(c));
  }

  /** Creates a container as if someone (or a crashed agent) had; returns its id. */
  inject(spec: ContainerSpec, state = "running"): string {
    const id = (this.#nextId++).toString(16).padStart(12, "0");
    this.#containers.set(id, { id, spec: structuredClone(spec), state, restarts: 0 });
    return id;
  }

  /** Simulates `podman stop` by hand. */
  stopByHand(nameOrId: string): void {
    const c = this.#find(nameOrId);
    c.state = "exited";
    c.exitCode = 137;
    this.#emit(c.id, "died");
    this.#emit(c.id, "stop");
  }

  /** Simulates `podman rm -f` by hand. */
  removeByHand(nameOrId: string): void {
    const c = this.#find(nameOrId);
    if (c.state === "running") this.#emit(c.id, "died");
    this.#containers.delete(c.id);
    this.#emit(c.id, "remove", c);
  }

  /** Simulates the container's process ending by itself with `exitCode`, having written `output`. */
  exitByItself(nameOrId: string, exitCode: number, output: string[] = []): void {
    const c = this.#find(nameOrId);
    c.state = "exited";
    c.exitCode = exitCode;
    c.output = [...(c.output ?? []), ...output];
    this.#emit(c.id, "died");
  }

  /** Simulates a crash (exit with `exitCode`) that podman's restart policy recovers from. */
  crashAndRestart(nameOrId: string, exitCode = 1): void {
    const c = this.#find(nameOrId);
    c.restarts++;
    c.exitCode = exitCode;
    c.startedAtMs = Date.now();
    this.#emit(c.id, "died");
    this.#emit(c.id, "restart");
  }

  // ---- internals -----------------------------------------------------------

  async #enter(operation: MemoryRuntimeOperation, signal?: AbortSignal): Promise<void> {
    this.calls[operation]++;
    signal?.throwIfAborted();
    const ms = this.#latency[operation];
    if (ms) await delay(ms, signal);
    this.#ensureAvailable();
  }

  #ensureAvailable(): void {
    if (!this.#available) {
      throw new RuntimeUnavailableError(
        "Cannot reach the in-memory runtime as it was made unavailable",
      );
    }
  }

  #byName(name: string): FakeContainer | undefined {
    for (const c of this.#containers.values()) if (c.spec.name === name) return c;
    return undefined;
  }

  #find(nameOrId: string): FakeContainer {
    const c = this.#containers.get(nameOrId) ?? this.#byName(nameOrId);
    if (!c) throw new Error(`Cannot find container "${nameOrId}": no such container`);
    return c;
  }

  #observe(c: FakeContainer): ObservedContainer {
    const labels = c.spec.labels;
    return {
      id: c.id,
      name: c.spec.name,
      deployment: labels[LABELS.deployment] ?? "",
      service: labels[LABELS.service] ?? "",
      revision: Number(labels[LABELS.kvRevision] ?? labels[LABELS.revision] ?? 0),
      specHash: labels[LABELS.specHash] ?? "",
      state: c.state,
      image: c.spec.image,
      restarts: c.restarts,
      ...(c.exitCode !== undefined ? { exitCode: c.exitCode } : {}),
      ...(c.startedAtMs !== undefined ? { startedAtMs: c.startedAtMs } : {}),
      ...(labels[LABELS.device] ? { device: labels[LABELS.device] } : {}),
      labels: { ...labels },
      ...(c.health ? { health: c.health.status } : {}),
    };
  }

  #emit(id: string, action: string, removed?: FakeContainer): void {
    const c = removed ?? this.#containers.get(id);
    if (!c || c.spec.labels[LABELS.managed] !== MANAGED_LABEL_VALUE) return;
    const deployment = c.spec.labels[LABELS.deployment];
    if (!deployment) return;
    this.#broadcast({
      kind: "container",
      action,
      deployment,
      ...(c.spec.labels[LABELS.service] !== undefined
        ? { service: c.spec.labels[LABELS.service] }
        : {}),
      ...(c.spec.labels[LABELS.device] ? { device: c.spec.labels[LABELS.device] } : {}),
      containerId: c.id,
    });
  }

  #broadcast(event: RuntimeEvent): void {
    for (const watcher of this.#watchers) watcher(event);
  }
}

function hasHealthCheck(spec: ContainerSpec): boolean {
  return spec.healthcheck !== undefined && spec.healthcheck.test[0] !== "NONE";
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
