/**
 * The container-runtime boundary. The reconciler, status reporting and the
 * NATS side only ever see this interface; podman is one implementation
 * (`runtime/podman/`), an in-memory stand-in for fleet benchmarks is another.
 *
 * @module
 */

import type {
  DeviceMapping,
  PortMapping,
  RestartPolicy,
  ServiceHealth,
  TmpfsMount,
  VolumeMount,
} from "@drover/contracts";

/** A service's health check, with durations in milliseconds. */
export interface HealthCheckSpec {
  /** `["CMD", …]`, `["CMD-SHELL", "…"]`, or `["NONE"]` (disables the image's check). */
  test: string[];
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
}

/** Everything needed to create one container. Built by the planner from a service spec. */
export interface ContainerSpec {
  /** `<deployment>_<service>`. */
  name: string;
  image: string;
  command?: string[];
  entrypoint?: string[];
  env: Record<string, string>;
  ports: PortMapping[];
  volumes: VolumeMount[];
  restart: RestartPolicy;
  /** User labels plus Drover's own (`drover.*`). */
  labels: Record<string, string>;
  /** The health check; absent: the image's own (if any). */
  healthcheck?: HealthCheckSpec;
  /**
   * Grace between SIGTERM and SIGKILL whenever the container is stopped or removed
   * (the planner always sets it; absent: the runtime's default).
   */
  stopTimeoutSeconds?: number;
  /**
   * The network: the deployment's own bridge with DNS, joined under `aliases` (the service
   * name), created with `labels` if missing; or the host's. Absent: the runtime's default.
   */
  network?: NetworkSpec;
  /** Named volumes to create (with `labels`) if missing, before the container. */
  volumeLabels?: Record<string, string>;
  /** Memory cap in bytes (`mem_limit`). */
  memoryBytes?: number;
  /** CPU share (`cpus`: 0.5 = half a CPU). */
  cpus?: number;
  /** Most processes (`pids_limit`). */
  pidsLimit?: number;
  /** `user[:group]`. */
  user?: string;
  /** Working directory of the process. */
  workingDir?: string;
  /** Read-only root file system. */
  readOnly?: boolean;
  /** tmpfs mounts. */
  tmpfs?: TmpfsMount[];
  /** Capabilities added, podman's spelling (`CAP_NET_ADMIN`). */
  capAdd?: string[];
  /** Capabilities dropped (`CAP_…` or `ALL`). */
  capDrop?: string[];
  /** Host devices mapped in. */
  devices?: DeviceMapping[];
  /** Log driver and the cap of the log file in bytes (`k8s-file` only). */
  log?: { driver: "k8s-file" | "journald" | "none"; maxSizeBytes?: number };
  /** Configs and secrets; the executor creates them in the runtime before the container. */
  files?: FileMountSpec[];
}

/**
 * A config or secret the container gets from the runtime's secret store: a
 * file at `target` with `mode`, or (`env`) the environment variable `target`.
 * `runtimeName` carries the device, deployment, name and version (secrets) or
 * content hash (configs), so one name always means one value.
 */
export interface FileMountSpec {
  runtimeName: string;
  kind: "config" | "secret";
  type: "file" | "env";
  target: string;
  /** Permission bits of the file (files only). */
  mode?: number;
  /** Owner and group of the file (files only; default root). */
  uid?: number;
  gid?: number;
  /** Where the value comes from: a config's content, or a secret sealed to this device. */
  source:
    | { content: string }
    | { name: string; version: number; sealed: string; sender: string };
}

/** Where a container's network comes from. */
export type NetworkSpec =
  | { mode: "bridge"; name: string; aliases: string[]; labels: Record<string, string> }
  | { mode: "host" };

/** A network Drover created, as the runtime lists it. */
export interface ObservedNetwork {
  name: string;
  labels: Record<string, string>;
}

/** A named volume Drover created, as the runtime lists it. */
export interface ObservedVolume {
  name: string;
  labels: Record<string, string>;
}

/** A container Drover manages, as the runtime reports it now. */
export interface ObservedContainer {
  id: string;
  name: string;
  deployment: string;
  service: string;
  /** Desired-state revision it was created from (label `drover.revision`). */
  revision: number;
  /** Label `drover.spec-hash`. */
  specHash: string;
  /** Runtime state: `running`, `exited`, `created`, `paused`, `stopped`, … */
  state: string;
  image: string;
  /** Restarts by the runtime's restart policy (not starts by Drover). */
  restarts?: number;
  /** Exit code of its last exit; absent when it never exited. */
  exitCode?: number;
  /** When it last started, in ms since the epoch; absent when it never ran. */
  startedAtMs?: number;
  /**
   * Label `drover.device`: the device whose agent owns it. Absent on containers
   * created before agents labelled their device (see docs/architecture.md, "Ownership").
   */
  device?: string;
  labels: Record<string, string>;
  /** The runtime's verdict of its health check; absent without one. */
  health?: ServiceHealth;
}

/** A container's health as the runtime keeps it, after its latest check. */
export interface HealthReport {
  status: ServiceHealth;
  /** Failed checks in a row (not counting those within the start period). */
  failingStreak: number;
  /** Exit code of the latest check (-1: it took longer than its timeout). */
  lastExitCode?: number;
  /** What the latest check printed, trimmed. */
  lastOutput?: string;
  /** When the latest check ended, in ms since the epoch; absent before the first. */
  lastEndedAtMs?: number;
}

/** Runtime states from which a container can be started (the others run or are in transition). */
export const STARTABLE_STATES: ReadonlySet<string> = new Set([
  "created",
  "initialized",
  "configured",
  "stopped",
  "exited",
]);

/** Credentials for pulling from one registry. */
export interface RegistryAuth {
  username?: string;
  password?: string;
  /** Verify the registry's TLS certificate (default true). */
  tlsVerify: boolean;
}

/**
 * Something changed in the runtime. Events only say "look again at this
 * deployment" (or everything); the reconciler re-observes before acting.
 */
export type RuntimeEvent =
  | {
    kind: "container";
    action: string;
    deployment: string;
    service?: string;
    device?: string;
    /** The container's id, when the runtime said. */
    containerId?: string;
  }
  | { kind: "resync"; reason: string };

/** The operations the reconciler needs from a container runtime. All idempotent where possible. */
export interface ContainerRuntime {
  /** Every container labelled `drover.managed=true`, in any state. */
  listManaged(signal?: AbortSignal): Promise<ObservedContainer[]>;
  /** True when `image` is present locally. */
  hasImage(image: string, signal?: AbortSignal): Promise<boolean>;
  /** Pulls `image`; rejects with the registry's message on failure. */
  pullImage(image: string, auth: RegistryAuth | undefined, signal?: AbortSignal): Promise<void>;
  /** Creates (does not start) a container; returns its id. */
  createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<string>;
  /** Starts a container (by id or name); already running is success. */
  startContainer(id: string, signal?: AbortSignal): Promise<void>;
  /**
   * Starts a container that was observed stopped, if it still is; resolves false
   * when it went away or left the stopped state meanwhile (the caller looks again).
   * A runtime where a start can race a hand-made stop or removal guards against it
   * here (podman 4.3: see `PodmanRuntime.startStopped`).
   */
  startStopped(id: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * Force-removes a container, giving it its own stop timeout (`ContainerSpec.stopTimeoutSeconds`)
   * between SIGTERM and SIGKILL; already gone is success.
   */
  removeContainer(id: string, signal?: AbortSignal): Promise<void>;
  /**
   * Runs the container's health check once, now, and returns its health after it;
   * undefined when it has no health check or is not running.
   */
  runHealthcheck(id: string, signal?: AbortSignal): Promise<HealthReport | undefined>;
  /** The container's health as last recorded; undefined without a health check. */
  inspectHealth(id: string, signal?: AbortSignal): Promise<HealthReport | undefined>;
  /** Creates runtime secret `name` with `data` unless it exists (a name never changes value). */
  ensureSecret(name: string, data: Uint8Array, signal?: AbortSignal): Promise<void>;
  /** Names of the runtime's secrets that start with `prefix`. */
  listSecrets(prefix: string, signal?: AbortSignal): Promise<string[]>;
  /** Removes runtime secret `name`; already gone is success. */
  removeSecret(name: string, signal?: AbortSignal): Promise<void>;
  /** Creates a bridge network with DNS unless one of that name exists. */
  ensureNetwork(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void>;
  /** Removes a network; already gone is success. */
  removeNetwork(name: string, signal?: AbortSignal): Promise<void>;
  /** Every network labelled `drover.managed=true`. */
  listManagedNetworks(signal?: AbortSignal): Promise<ObservedNetwork[]>;
  /** Creates a named volume with `labels` unless one of that name exists (its data is kept). */
  ensureVolume(name: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void>;
  /** Every named volume labelled `drover.managed=true`. */
  listManagedVolumes(signal?: AbortSignal): Promise<ObservedVolume[]>;
  /** Removes a named volume with its data: `removed`, `in-use` (kept), or `gone` already. */
  removeVolume(name: string, signal?: AbortSignal): Promise<"removed" | "in-use" | "gone">;
  /** The last `lines` lines a container wrote (stdout and stderr), oldest first. */
  logTail(id: string, lines: number, signal?: AbortSignal): Promise<string[]>;
  /**
   * Changes to managed containers until `signal` aborts. Survives the
   * runtime going away: it yields a `resync` event once it is back.
   */
  watchEvents(signal: AbortSignal): AsyncIterable<RuntimeEvent>;
}

/**
 * The runtime cannot be reached (podman socket gone, service restarting).
 * Transient: the reconciler keeps its last known status and retries.
 */
export class RuntimeUnavailableError extends Error {
  override name = "RuntimeUnavailableError";
}

/**
 * Create failed because a container with that name already exists. The
 * reconciler re-observes: either it is ours (a crash left it) or a foreign
 * container squats the name, which is reported, never removed.
 */
export class ContainerNameConflictError extends Error {
  override name = "ContainerNameConflictError";
  /** The name that is taken. */
  readonly containerName: string;
  constructor(containerName: string, options?: ErrorOptions) {
    super(`Cannot create container "${containerName}": the name is already in use`, options);
    this.containerName = containerName;
  }
}

/** Create failed because the image is not in local storage (someone removed it). */
export class ImageMissingError extends Error {
  override name = "ImageMissingError";
  /** The missing image reference. */
  readonly image: string;
  constructor(image: string, options?: ErrorOptions) {
    super(`Cannot create a container from image "${image}": it is not in local storage`, options);
    this.image = image;
  }
}

/** A pull failed; `registryMessage` is what the registry/runtime said, for the status. */
export class ImagePullError extends Error {
  override name = "ImagePullError";
  /** The reference that was being pulled. */
  readonly image: string;
  /** The registry's (or runtime's) own explanation. */
  readonly registryMessage: string;
  constructor(image: string, registryMessage: string, options?: ErrorOptions) {
    super(`Cannot pull image "${image}": ${registryMessage}`, options);
    this.image = image;
    this.registryMessage = registryMessage;
  }
}
