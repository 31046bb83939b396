/**
 * `PodmanRuntime`: the {@linkcode ContainerRuntime} over podman's libpod REST
 * API ({@linkcode PodmanClient}). It translates Drover's container spec into
 * podman's create body, podman's errors into the runtime's, and podman's event
 * stream into "look again at deployment X" events that survive the podman
 * service going away.
 *
 * Round trips are kept to podman's floor: one list per observation; restart
 * counts (absent from list results on podman 4.3) come from inspect only for
 * containers not seen before or after a `restart` event.
 *
 * @module
 */

import { abortableSleep, backoffDelay, type BackoffOptions } from "@drover/common";
import {
  LABELS,
  MANAGED_LABEL_VALUE,
  normalizeImageReference,
  qualifiedImageName,
} from "@drover/contracts";
import {
  type ContainerSummary,
  type HealthCheckResults,
  isImageNotFoundError,
  isNameConflictError,
  isNotFoundError,
  isPodmanError,
  isPodmanUnavailableError,
  isPullError,
  type LibpodCreateSpec,
  PodmanClient,
  type PodmanEvent,
} from "./podman/mod.ts";
import {
  ContainerNameConflictError,
  type ContainerRuntime,
  type ContainerSpec,
  type FileMountSpec,
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

/** Longest health-check output kept in a report, in characters. */
export const HEALTH_OUTPUT_MAX_CHARS = 200;
/** Default wait before starting a container found stopped, in ms; see `startStopped`. */
export const DEFAULT_STOPPED_SETTLE_MS = 1_000;
/** Delays between event stream reconnects: 250 ms doubling up to 5 s. */
const EVENTS_RECONNECT_BACKOFF: Readonly<BackoffOptions> = {
  baseMs: 250,
  capMs: 5_000,
  jitter: 0,
};

/** Container events that can change what the reconciler should do. */
const RELEVANT_ACTIONS = new Set([
  "create",
  "start",
  "stop",
  "died",
  "remove",
  "restart",
  "pause",
  "unpause",
  "rename",
  "health_status",
]);
const HEALTH_STATES = new Set(["starting", "healthy", "unhealthy"]);

/** Options of {@linkcode PodmanRuntime}. */
export interface PodmanRuntimeOptions {
  /** Podman API socket; the runtime opens (and closes) its own client. */
  socketPath?: string;
  /** An existing client instead of `socketPath`; the caller keeps ownership. */
  client?: PodmanClient;
  /**
   * Overrides every container's own stop timeout on removal, in seconds (tests that
   * do not care about graceful stops). Without it, removal honours the container's
   * `stop_timeout`, set at create from the service's.
   */
  stopTimeoutSeconds?: number;
  /**
   * How long a container found stopped is left alone before it is started again, in ms
   * (default {@linkcode DEFAULT_STOPPED_SETTLE_MS}); see {@linkcode PodmanRuntime.startStopped}.
   */
  stoppedSettleMs?: number;
}

/** The podman implementation of {@linkcode ContainerRuntime}. */
export class PodmanRuntime implements ContainerRuntime, Disposable {
  readonly #client: PodmanClient;
  readonly #ownsClient: boolean;
  readonly #stopTimeoutSeconds: number | undefined;
  readonly #stoppedSettleMs: number;
  /** Restart count per container id; missing means "inspect to learn it". */
  readonly #restarts = new Map<string, number>();
  /**
   * Last exit code per container id. Podman's list shows 0 again once the restart policy has
   * restarted a container, so a crash loop's code is remembered from lists and `died` events.
   */
  readonly #exitCodes = new Map<string, number>();

  constructor(options: PodmanRuntimeOptions) {
    if (options.client) {
      this.#client = options.client;
      this.#ownsClient = false;
    } else if (options.socketPath) {
      this.#client = new PodmanClient({ socketPath: options.socketPath });
      this.#ownsClient = true;
    } else {
      throw new TypeError("Cannot create a PodmanRuntime: give it a socketPath or a client");
    }
    this.#stopTimeoutSeconds = options.stopTimeoutSeconds;
    this.#stoppedSettleMs = options.stoppedSettleMs ?? DEFAULT_STOPPED_SETTLE_MS;
  }

  /** Closes the client if this runtime opened it. */
  [Symbol.dispose](): void {
    if (this.#ownsClient) this.#client.close();
  }

  /** See {@linkcode ContainerRuntime.listManaged}. */
  async listManaged(signal?: AbortSignal): Promise<ObservedContainer[]> {
    const list = await mapErrors(() =>
      this.#client.listContainers({
        all: true,
        labels: { [LABELS.managed]: MANAGED_LABEL_VALUE },
        signal,
      })
    );
    const present = new Set(list.map((c) => c.Id));
    for (const id of this.#restarts.keys()) if (!present.has(id)) this.#restarts.delete(id);
    for (const id of this.#exitCodes.keys()) if (!present.has(id)) this.#exitCodes.delete(id);
    for (const c of list) {
      if (c.Exited && c.State !== "running") this.#exitCodes.set(c.Id, c.ExitCode);
    }
    const unknown = list.filter((c) => !this.#restarts.has(c.Id));
    await Promise.all(unknown.map((c) => this.#learnRestarts(c.Id, signal)));
    return list.flatMap((c) => {
      const observed = toObserved(c, this.#restarts.get(c.Id), this.#exitCodes.get(c.Id));
      return observed ? [observed] : [];
    });
  }

  async #learnRestarts(id: string, signal?: AbortSignal): Promise<void> {
    try {
      const inspect = await this.#client.inspectContainer(id, { signal });
      this.#restarts.set(id, inspect.RestartCount ?? 0);
    } catch (err) {
      // Gone since the list: it will be missing from the next one.
      if (isNotFoundError(err)) return;
      throw translate(err);
    }
  }

  /** See {@linkcode ContainerRuntime.hasImage}. */
  hasImage(image: string, signal?: AbortSignal): Promise<boolean> {
    // Fully qualified: podman matches a short name against any local image ending in it.
    return mapErrors(() => this.#client.imageExists(qualifiedImageName(image), { signal }));
  }

  /** See {@linkcode ContainerRuntime.pullImage}. */
  async pullImage(image: string, auth: RegistryAuth | undefined, signal?: AbortSignal) {
    // Fully qualified: podman would resolve a short name through registries.conf aliases.
    const ref = normalizeImageReference(image);
    if (typeof ref === "string") throw new ImagePullError(image, `invalid image reference: ${ref}`);
    const registry = ref.registry;
    await mapErrors(() =>
      this.#client.pullImage(ref.name, {
        policy: "always",
        signal,
        ...(auth?.username !== undefined && auth.password !== undefined && registry
          ? {
            auth: {
              username: auth.username,
              password: auth.password,
              serveraddress: registry,
            },
          }
          : {}),
        ...(auth ? { tlsVerify: auth.tlsVerify } : {}),
      })
    );
  }

  /** See {@linkcode ContainerRuntime.createContainer}. */
  async createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    const { id } = await mapErrors(() =>
      this.#client.createContainer(toLibpodSpec(spec), { signal })
    );
    this.#restarts.set(id, 0);
    return id;
  }

  /** See {@linkcode ContainerRuntime.ensureSecret}. */
  async ensureSecret(name: string, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    await mapErrors(() => this.#client.createSecret(name, data, { signal }));
  }

  /** See {@linkcode ContainerRuntime.listSecrets}. */
  async listSecrets(prefix: string, signal?: AbortSignal): Promise<string[]> {
    const names = await mapErrors(() => this.#client.listSecrets({ signal }));
    return names.filter((n) => n.startsWith(prefix));
  }

  /** See {@linkcode ContainerRuntime.removeSecret}. */
  removeSecret(name: string, signal?: AbortSignal): Promise<void> {
    return mapErrors(() => this.#client.removeSecret(name, { signal }));
  }

  /** See {@linkcode ContainerRuntime.startContainer}. */
  startContainer(id: string, signal?: AbortSignal): Promise<void> {
    return mapErrors(() => this.#client.startContainer(id, { signal }));
  }

  /**
   * See {@linkcode ContainerRuntime.startStopped}. Waits first, then starts the container
   * only if it is still there and still stopped. A container that just stopped may be in
   * the middle of someone's `podman rm -f` or `podman stop`: podman 4.3 lets a start slip
   * in between their kill and their removal or clean-up, and then loses track of the
   * restarted container while its conmon keeps the published ports bound (measured: 11 of
   * 20 races leaked one; every later create of the service then failed with "address
   * already in use"), or the CLI fails with "refusing to clean up". With a pause first,
   * none leaked in 20 (docs/podman-api.md).
   */
  async startStopped(id: string, signal?: AbortSignal): Promise<boolean> {
    if (this.#stoppedSettleMs > 0) await abortableSleep(this.#stoppedSettleMs, signal);
    let state: string;
    try {
      state = (await this.#client.inspectContainer(id, { signal })).State.Status;
    } catch (err) {
      if (isNotFoundError(err)) return false;
      throw translate(err);
    }
    if (!STARTABLE_STATES.has(state)) return false;
    await this.startContainer(id, signal);
    return true;
  }

  /** See {@linkcode ContainerRuntime.removeContainer}; a missing container is success. */
  async removeContainer(id: string, signal?: AbortSignal): Promise<void> {
    try {
      // Without `timeout`, podman waits the container's own StopTimeout (measured on 4.3).
      await this.#client.removeContainer(id, {
        force: true,
        ...(this.#stopTimeoutSeconds !== undefined
          ? { timeoutSeconds: this.#stopTimeoutSeconds }
          : {}),
        volumes: true,
        signal,
      });
    } catch (err) {
      if (isNotFoundError(err)) return;
      throw translate(err);
    }
    this.#restarts.delete(id);
  }

  /**
   * See {@linkcode ContainerRuntime.runHealthcheck}. The endpoint's own answer carries
   * only this check's pass/fail (podman 4.3: `Status` "unhealthy" after one failure
   * while the container is still "starting", `Log` null), so the container's health
   * is read with inspect after it. A check slower than its timeout is a 500 that
   * podman has recorded as a failure (exit code -1) by then.
   */
  async runHealthcheck(id: string, signal?: AbortSignal): Promise<HealthReport | undefined> {
    try {
      await this.#client.runHealthcheck(id, { signal });
    } catch (err) {
      // 409: "has no defined healthcheck" or "is not running"; 404: gone.
      if (isNotFoundError(err) || (isPodmanError(err) && err.status === 409)) return undefined;
      if (!(isPodmanError(err) && /exceeded timeout/.test(err.podmanMessage ?? ""))) {
        throw translate(err);
      }
    }
    return await this.inspectHealth(id, signal);
  }

  /** See {@linkcode ContainerRuntime.inspectHealth}. */
  async inspectHealth(id: string, signal?: AbortSignal): Promise<HealthReport | undefined> {
    try {
      const inspect = await this.#client.inspectContainer(id, { signal });
      return toHealthReport(inspect.State.Health);
    } catch (err) {
      if (isNotFoundError(err)) return undefined;
      throw translate(err);
    }
  }

  /** See {@linkcode ContainerRuntime.ensureNetwork}. */
  async ensureNetwork(
    name: string,
    labels: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<void> {
    await mapErrors(() => this.#client.createNetwork(name, labels, { signal }));
  }

  /** See {@linkcode ContainerRuntime.removeNetwork}. */
  async removeNetwork(name: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.#client.removeNetwork(name, { signal });
    } catch (err) {
      if (isNotFoundError(err)) return;
      throw translate(err);
    }
  }

  /** See {@linkcode ContainerRuntime.listManagedNetworks}. */
  async listManagedNetworks(signal?: AbortSignal): Promise<ObservedNetwork[]> {
    const list = await mapErrors(() =>
      this.#client.listNetworks({ [LABELS.managed]: MANAGED_LABEL_VALUE }, { signal })
    );
    return list.map((n) => ({ name: n.name, labels: n.labels }));
  }

  /** See {@linkcode ContainerRuntime.ensureVolume}. */
  async ensureVolume(
    name: string,
    labels: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<void> {
    await mapErrors(async () => {
      if (!(await this.#client.volumeExists(name, { signal }))) {
        await this.#client.createVolume(name, labels, { signal });
      }
    });
  }

  /** See {@linkcode ContainerRuntime.listManagedVolumes}. */
  async listManagedVolumes(signal?: AbortSignal): Promise<ObservedVolume[]> {
    const list = await mapErrors(() =>
      this.#client.listVolumes({ [LABELS.managed]: MANAGED_LABEL_VALUE }, { signal })
    );
    return list.map((v) => ({ name: v.Name, labels: v.Labels }));
  }

  /** See {@linkcode ContainerRuntime.removeVolume}. */
  async removeVolume(name: string, signal?: AbortSignal): Promise<"removed" | "in-use" | "gone"> {
    try {
      await this.#client.removeVolume(name, { signal });
      return "removed";
    } catch (err) {
      if (isNotFoundError(err)) return "gone";
      if (isPodmanError(err) && err.status === 409) return "in-use";
      throw translate(err);
    }
  }

  /** See {@linkcode ContainerRuntime.logTail}; a container gone meanwhile has none. */
  async logTail(id: string, lines: number, signal?: AbortSignal): Promise<string[]> {
    try {
      const frames = await this.#client.containerLogs(id, { tail: lines, signal });
      return frames.flatMap((f) => f.text.split("\n")).filter((l) => l !== "").slice(-lines);
    } catch (err) {
      if (isNotFoundError(err)) return [];
      throw translate(err);
    }
  }

  /**
   * See {@linkcode ContainerRuntime.watchEvents}. Follows podman's events for
   * managed containers; when the service goes away it reconnects with
   * backoff, replays from the last event seen (`since=`) and yields a
   * `resync`, since anything may have happened meanwhile.
   */
  async *watchEvents(signal: AbortSignal): AsyncIterable<RuntimeEvent> {
    let since: number | undefined;
    let attempt = 0;
    let interrupted = false;
    while (!signal.aborted) {
      const openedAt = Math.floor(Date.now() / 1000);
      const stream = this.#client.events({
        filters: { type: ["container"], label: [`${LABELS.managed}=${MANAGED_LABEL_VALUE}`] },
        ...(since !== undefined ? { since } : {}),
        signal,
      });
      try {
        await stream.opened;
        attempt = 0;
        if (interrupted) {
          interrupted = false;
          yield { kind: "resync", reason: "podman event stream reconnected" };
        }
        since ??= openedAt;
        for await (const event of stream) {
          since = Math.max(since, event.time);
          const mapped = this.#toRuntimeEvent(event);
          if (mapped) yield mapped;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (!isPodmanUnavailableError(err)) throw translate(err);
      } finally {
        stream.close();
      }
      if (signal.aborted) return;
      // The stream ended: the service stopped or restarted.
      interrupted = true;
      since ??= openedAt;
      await abortableSleep(backoffDelay(attempt++, EVENTS_RECONNECT_BACKOFF), signal);
    }
  }

  #toRuntimeEvent(event: PodmanEvent): RuntimeEvent | undefined {
    if (event.Type !== "container" || !RELEVANT_ACTIONS.has(event.Action)) return undefined;
    const attributes = event.Actor?.Attributes ?? {};
    if (attributes[LABELS.managed] !== MANAGED_LABEL_VALUE) return undefined;
    const deployment = attributes[LABELS.deployment];
    if (!deployment) return undefined;
    // Podman counts the restart; learn the new count on the next list.
    if (event.Action === "restart" && event.Actor?.ID) this.#restarts.delete(event.Actor.ID);
    const exitCode = Number(attributes.containerExitCode);
    if (event.Action === "died" && event.Actor?.ID && Number.isInteger(exitCode)) {
      this.#exitCodes.set(event.Actor.ID, exitCode);
    }
    const service = attributes[LABELS.service];
    const device = attributes[LABELS.device];
    return {
      kind: "container",
      action: event.Action,
      deployment,
      ...(service ? { service } : {}),
      ...(device ? { device } : {}),
      ...(event.Actor?.ID ? { containerId: event.Actor.ID } : {}),
    };
  }
}

/**
 * Podman's create body for a container spec: env as a map (an array is a
 * 500 on podman 4.3), bind mounts as OCI mounts, named volumes as volumes, the
 * image fully qualified (the planner already qualifies it; a short name here
 * would let podman pick the registry).
 */
export function toLibpodSpec(spec: ContainerSpec): LibpodCreateSpec {
  return {
    name: spec.name,
    image: qualifiedImageName(spec.image),
    ...(spec.command ? { command: spec.command } : {}),
    ...(spec.entrypoint ? { entrypoint: spec.entrypoint } : {}),
    env: { ...spec.env },
    labels: { ...spec.labels },
    portmappings: spec.ports.map((p) => ({
      container_port: p.containerPort,
      ...(p.hostPort !== undefined ? { host_port: p.hostPort } : {}),
      ...(p.hostIp !== undefined ? { host_ip: p.hostIp } : {}),
      protocol: p.protocol,
    })),
    mounts: [
      ...spec.volumes.filter((v) => v.type === "bind").map((v) => ({
        destination: v.target,
        type: "bind",
        source: v.source,
        options: ["rbind", v.readOnly ? "ro" : "rw"],
      })),
      ...(spec.tmpfs ?? []).map((t) => ({
        destination: t.target,
        type: "tmpfs",
        source: "tmpfs",
        options: t.options.length > 0 ? [...t.options] : ["rw", "nosuid", "nodev"],
      })),
    ],
    volumes: spec.volumes.filter((v) => v.type === "volume").map((v) => ({
      Name: v.source,
      Dest: v.target,
      Options: v.readOnly ? ["ro"] : [],
    })),
    restart_policy: spec.restart,
    ...networkFields(spec.network),
    ...resourceFields(spec),
    ...(spec.user !== undefined ? { user: spec.user } : {}),
    ...(spec.workingDir !== undefined ? { work_dir: spec.workingDir } : {}),
    ...(spec.readOnly !== undefined ? { read_only_filesystem: spec.readOnly } : {}),
    ...(spec.capAdd?.length ? { cap_add: [...spec.capAdd] } : {}),
    ...(spec.capDrop?.length ? { cap_drop: [...spec.capDrop] } : {}),
    ...(spec.devices?.length
      ? {
        devices: spec.devices.map((d) => ({ path: `${d.host}:${d.container}:${d.permissions}` })),
      }
      : {}),
    ...(spec.log
      ? {
        log_configuration: {
          driver: spec.log.driver,
          ...(spec.log.maxSizeBytes !== undefined ? { size: spec.log.maxSizeBytes } : {}),
        },
      }
      : {}),
    ...(spec.stopTimeoutSeconds !== undefined ? { stop_timeout: spec.stopTimeoutSeconds } : {}),
    ...libpodFiles(spec.files ?? []),
    ...(spec.healthcheck
      ? {
        healthconfig: {
          Test: [...spec.healthcheck.test],
          Interval: spec.healthcheck.intervalMs * NS_PER_MS,
          Timeout: spec.healthcheck.timeoutMs * NS_PER_MS,
          Retries: spec.healthcheck.retries,
          StartPeriod: spec.healthcheck.startPeriodMs * NS_PER_MS,
        },
      }
      : {}),
  };
}

const NS_PER_MS = 1_000_000;
/** CFS period podman uses for `--cpus` (100 ms, in µs). */
const CPU_PERIOD_US = 100_000;

/** The create spec's network fields: the deployment's bridge (with aliases) or the host's. */
function networkFields(network: ContainerSpec["network"]): Partial<LibpodCreateSpec> {
  if (network === undefined) return {};
  if (network.mode === "host") return { netns: { nsmode: "host" } };
  return {
    netns: { nsmode: "bridge" },
    Networks: { [network.name]: { aliases: [...network.aliases] } },
  };
}

/** `resource_limits` (OCI LinuxResources) for memory, CPU share and pids, when any is set. */
function resourceFields(spec: ContainerSpec): Partial<LibpodCreateSpec> {
  const limits: Record<string, unknown> = {};
  if (spec.memoryBytes !== undefined) limits.memory = { limit: spec.memoryBytes };
  if (spec.cpus !== undefined) {
    limits.cpu = { quota: Math.round(spec.cpus * CPU_PERIOD_US), period: CPU_PERIOD_US };
  }
  if (spec.pidsLimit !== undefined) limits.pids = { limit: spec.pidsLimit };
  return Object.keys(limits).length > 0 ? { resource_limits: limits } : {};
}

/** Configs and secrets as libpod's `secrets` (files) and `secret_env` (variables). */
function libpodFiles(files: readonly FileMountSpec[]): Partial<LibpodCreateSpec> {
  const mounted = files.filter((f) => f.type === "file");
  const env = files.filter((f) => f.type === "env");
  return {
    ...(mounted.length > 0
      ? {
        secrets: mounted.map((f) => ({
          Source: f.runtimeName,
          Target: f.target,
          UID: f.uid ?? 0,
          GID: f.gid ?? 0,
          Mode: f.mode ?? 0o400,
        })),
      }
      : {}),
    ...(env.length > 0
      ? { secret_env: Object.fromEntries(env.map((f) => [f.target, f.runtimeName])) }
      : {}),
  };
}

/** Podman's health record as a report; undefined without a health check (`Status` ""). */
export function toHealthReport(health: HealthCheckResults | undefined): HealthReport | undefined {
  if (!health || !HEALTH_STATES.has(health.Status)) return undefined;
  const last = health.Log?.at(-1);
  const endedAtMs = last ? Date.parse(last.End) : NaN;
  const output = last?.Output.trim();
  return {
    status: health.Status as HealthReport["status"],
    failingStreak: health.FailingStreak ?? 0,
    ...(last ? { lastExitCode: last.ExitCode } : {}),
    ...(output
      ? {
        lastOutput: output.length <= HEALTH_OUTPUT_MAX_CHARS
          ? output
          : `${output.slice(0, HEALTH_OUTPUT_MAX_CHARS - 1)}…`,
      }
      : {}),
    ...(Number.isFinite(endedAtMs) ? { lastEndedAtMs: endedAtMs } : {}),
  };
}

/**
 * A list entry as an observed container, or `undefined` if it lacks Drover's labels.
 * `lastExitCode` is the code remembered from an earlier exit (the list's own is 0 while
 * the container runs again).
 */
export function toObserved(
  c: ContainerSummary,
  restarts: number | undefined,
  lastExitCode?: number,
): ObservedContainer | undefined {
  const labels = c.Labels ?? {};
  const deployment = labels[LABELS.deployment];
  const service = labels[LABELS.service];
  if (!deployment || !service) return undefined;
  // Containers made before the KV revision had its own label carry it in drover.revision.
  const revision = Number(labels[LABELS.kvRevision] ?? labels[LABELS.revision]);
  const device = labels[LABELS.device];
  const exitCode = c.Exited && c.State !== "running" ? c.ExitCode : lastExitCode;
  return {
    id: c.Id,
    name: (c.Names?.[0] ?? "").replace(/^\//, ""),
    deployment,
    service,
    revision: Number.isSafeInteger(revision) && revision >= 0 ? revision : 0,
    specHash: labels[LABELS.specHash] ?? "",
    state: c.State,
    image: c.Image,
    ...(restarts !== undefined ? { restarts } : {}),
    ...(exitCode !== undefined ? { exitCode } : {}),
    // Unix seconds; podman reports year 1 (negative) for "never".
    ...(c.StartedAt > 0 ? { startedAtMs: c.StartedAt * 1000 } : {}),
    ...(device ? { device } : {}),
    labels,
    // On podman 4.3 a list entry's `Status` is the health check's state ("" without one).
    ...(HEALTH_STATES.has(c.Status) ? { health: c.Status as HealthReport["status"] } : {}),
  };
}

async function mapErrors<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw translate(err);
  }
}

/** Podman client errors as runtime errors the reconciler handles; others unchanged. */
function translate(err: unknown): unknown {
  if (isPodmanUnavailableError(err)) {
    return new RuntimeUnavailableError(err.message, { cause: err });
  }
  if (isNameConflictError(err)) {
    return new ContainerNameConflictError(err.containerName, { cause: err });
  }
  if (isImageNotFoundError(err)) return new ImageMissingError(err.image, { cause: err });
  if (isPullError(err)) return new ImagePullError(err.image, err.registryMessage, { cause: err });
  return err;
}
