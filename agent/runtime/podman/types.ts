/**
 * Wire types of the libpod REST API (v4), limited to the fields Drover uses.
 *
 * Field names and casing are podman's own: the create spec is snake_case
 * (specgen), inspect/list/events are PascalCase. Podman sends more fields
 * than typed here; they pass through untouched.
 *
 * @module
 */

/** A published port (`portmappings` in the create spec). */
export interface LibpodPortMapping {
  container_port: number;
  /** Omitted or 0: podman picks a free port. */
  host_port?: number;
  /** Address to bind on the host; empty means all. */
  host_ip?: string;
  /** `"tcp"` (default), `"udp"` or `"sctp"`; a comma list is allowed. */
  protocol?: string;
  /** Number of consecutive ports from `container_port`/`host_port`. */
  range?: number;
}

/** An OCI mount (bind mounts, tmpfs) in the create spec. */
export interface LibpodMount {
  destination: string;
  /** `"bind"`, `"tmpfs"`, … */
  type: string;
  source?: string;
  /** e.g. `["rbind", "ro"]`. */
  options?: string[];
}

/** A named volume in the create spec; created by podman if missing. */
export interface LibpodNamedVolume {
  Name: string;
  Dest: string;
  Options?: string[];
}

/** Network namespace mode. */
export interface LibpodNamespace {
  nsmode: "bridge" | "host" | "none" | "private" | "slirp4netns" | "ns" | "container" | "path";
  value?: string;
}

/** Health check; durations are nanoseconds. */
export interface LibpodHealthConfig {
  /** e.g. `["CMD-SHELL", "wget -q -O- localhost"]` or `["CMD", "true"]`. */
  Test: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  Retries?: number;
}

/** Container restart policy names understood by podman. */
export type LibpodRestartPolicy = "no" | "always" | "on-failure" | "unless-stopped";

/**
 * The subset of podman's SpecGenerator (`POST /libpod/containers/create`)
 * Drover sends. Note `env` is a map: an array makes podman answer 500.
 */
export interface LibpodCreateSpec {
  /** Container name; must be unique. */
  name: string;
  /** Image reference; must already be in local storage (create never pulls). */
  image: string;
  /** Overrides the image's CMD. */
  command?: string[];
  /** Overrides the image's ENTRYPOINT. */
  entrypoint?: string[];
  /** Environment added to the image's. */
  env?: Record<string, string>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  portmappings?: LibpodPortMapping[];
  mounts?: LibpodMount[];
  volumes?: LibpodNamedVolume[];
  restart_policy?: LibpodRestartPolicy;
  /** Maximum restarts for `on-failure`. */
  restart_tries?: number;
  netns?: LibpodNamespace;
  /** Networks to join, by name (bridge mode). */
  Networks?: Record<string, { aliases?: string[] }>;
  hostname?: string;
  user?: string;
  work_dir?: string;
  /** Seconds podman waits after the stop signal before killing. */
  stop_timeout?: number;
  stop_signal?: number;
  healthconfig?: LibpodHealthConfig;
  /** OCI LinuxResources, e.g. `{ memory: { limit: 67108864 } }`. */
  resource_limits?: Record<string, unknown>;
  read_only_filesystem?: boolean;
  cap_add?: string[];
  cap_drop?: string[];
  terminal?: boolean;
  /** Host devices; `path` is `HOST[:CONTAINER[:PERMISSIONS]]` (podman parses it). */
  devices?: Array<{ path: string }>;
  /** Log driver and the cap of the log file in bytes (`size`, k8s-file). */
  log_configuration?: { driver?: string; size?: number; options?: Record<string, string> };
  /**
   * Podman secrets mounted as files: `Target` an absolute path (or a name under
   * /run/secrets), `Mode` the file's permission bits (measured on 4.3 and 5.4).
   */
  secrets?: LibpodSecretMount[];
  /** Environment variable → podman secret whose value it gets. */
  secret_env?: Record<string, string>;
}

/** One podman secret mounted as a file in the container. */
export interface LibpodSecretMount {
  Source: string;
  Target: string;
  UID: number;
  GID: number;
  Mode: number;
}

/** One entry of `GET /libpod/volumes/json`. */
export interface VolumeSummary {
  Name: string;
  /** Never null here: the client turns podman's `null` into `{}`. */
  Labels: Record<string, string>;
}

/** One entry of `GET /libpod/networks/json` (netavark). */
export interface NetworkSummary {
  name: string;
  id: string;
  driver: string;
  dns_enabled: boolean;
  /** Never null here: the client turns podman's `null` into `{}`. */
  labels: Record<string, string>;
}

/** Answer of container create. */
export interface CreateContainerResult {
  id: string;
  warnings: string[];
}

/** A published port as reported by list/inspect. */
export interface PortMappingSummary {
  host_ip: string;
  container_port: number;
  host_port: number;
  range: number;
  protocol: string;
}

/** Container state names podman reports. */
export type ContainerState =
  | "created"
  | "initialized"
  | "running"
  | "stopped"
  | "stopping"
  | "paused"
  | "exited"
  | "removing"
  | "unknown";

/** One entry of `GET /libpod/containers/json`. */
export interface ContainerSummary {
  Id: string;
  Names: string[];
  Image: string;
  ImageID: string;
  Command: string[] | null;
  /** RFC 3339 creation time. */
  Created: string;
  /** Unix seconds; negative (year 1) when never started. */
  StartedAt: number;
  Exited: boolean;
  /** Unix seconds; negative when never exited. */
  ExitedAt: number;
  ExitCode: number;
  State: ContainerState | string;
  Status: string;
  /** Never null here: the client turns podman's `null` into `{}`. */
  Labels: Record<string, string>;
  Pid: number;
  Ports: PortMappingSummary[] | null;
  Networks: string[] | null;
  Pod: string;
  PodName: string;
  AutoRemove: boolean;
  IsInfra: boolean;
}

/** Health state as reported by inspect and by the healthcheck endpoint. */
export interface HealthCheckResults {
  /** `"starting"`, `"healthy"`, `"unhealthy"`, or `""` without a health check. */
  Status: string;
  FailingStreak: number;
  Log: Array<{ Start: string; End: string; ExitCode: number; Output: string }> | null;
}

/** The subset of `GET /libpod/containers/{id}/json` Drover reads. */
export interface ContainerInspect {
  Id: string;
  /** Container name without a leading slash. */
  Name: string;
  Created: string;
  /** Image id. */
  Image: string;
  /** Image reference the container was created from. */
  ImageName: string;
  RestartCount: number;
  State: {
    Status: ContainerState | string;
    Running: boolean;
    Paused: boolean;
    Restarting: boolean;
    OOMKilled: boolean;
    Dead: boolean;
    Pid: number;
    ExitCode: number;
    Error: string;
    StartedAt: string;
    FinishedAt: string;
    Health?: HealthCheckResults;
  };
  Config: {
    Env: string[] | null;
    Cmd: string[] | null;
    Entrypoint: string[] | string | null;
    Image: string;
    /** Never null here: the client turns podman's `null` into `{}`. */
    Labels: Record<string, string>;
    StopSignal?: unknown;
    User: string;
    WorkingDir: string;
  };
  HostConfig: {
    RestartPolicy: { Name: string; MaximumRetryCount: number };
    PortBindings: Record<string, Array<{ HostIp: string; HostPort: string }> | null> | null;
  };
  Mounts: Array<{
    Type: string;
    Name?: string;
    Source: string;
    Destination: string;
    RW: boolean;
  }>;
}

/** Registry credentials sent in `X-Registry-Auth`. */
export interface RegistryAuth {
  username: string;
  password: string;
  /** Registry host[:port] the credentials are for. */
  serveraddress: string;
}

/** Podman's pull policies. */
export type PullPolicy = "missing" | "always" | "newer";

/** Result of a successful pull. */
export interface PullResult {
  /** Id of the pulled image. */
  id: string;
  /** All image ids the pull produced (one unless pulling every tag). */
  images: string[];
}

/**
 * One event of `GET /libpod/events`. Container labels arrive in
 * `Actor.Attributes` together with `name`, `image` and (for `died`)
 * `containerExitCode`.
 */
export interface PodmanEvent {
  /** `"container"`, `"image"`, `"volume"`, `"pod"`, `"network"`, `"system"`. */
  Type: string;
  /** e.g. `"create"`, `"start"`, `"died"`, `"remove"`, `"health_status"`. */
  Action: string;
  /** Same as `Action` (Docker-era field). */
  status?: string;
  /** Object id (Docker-era field). */
  id?: string;
  /** Image the container was created from (Docker-era field). */
  from?: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope?: string;
  /** Unix seconds. */
  time: number;
  /** Unix nanoseconds; may exceed 2^53, so treat as approximate. */
  timeNano: number;
}
