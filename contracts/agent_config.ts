/**
 * The agent's configuration file (`/etc/drover/agent.toml`). Strict at every
 * level: a misspelt key is an error that names it, not a silent default.
 *
 * @module
 */

import { z } from "zod";
import { Name } from "./score.ts";
import { DeviceLabels } from "./labels.ts";
import { isRegistryHost } from "./image.ts";
import { ReleasePublicKey } from "./agent_update.ts";
import { byteSize, canonicalCapability, CAPABILITIES, MIN_MEM_LIMIT_BYTES } from "./workload.ts";

/** Where the agent keeps its cache by default. */
export const DEFAULT_STATE_DIR = "/var/lib/drover";
/** Default podman API socket (rootful podman.socket). */
export const DEFAULT_PODMAN_SOCKET = "/run/podman/podman.sock";
/** Default seconds between status heartbeats. */
export const DEFAULT_HEARTBEAT_SECONDS = 10;
/** Default NATS server. */
export const DEFAULT_NATS_SERVER = "nats://127.0.0.1:4222";

/** Log levels accepted in config and `DROVER_LOG_LEVEL`. */
export const LogLevel = z.enum(["trace", "debug", "info", "warning", "error", "fatal"]);
/** A log level. */
export type LogLevel = z.infer<typeof LogLevel>;

const absolutePath = z.string().min(1).refine((p) => p.startsWith("/"), {
  message: "must be an absolute path",
});

const PortRange = z.union([
  z.number().int().min(1).max(65535),
  z.string().regex(/^[0-9]{1,5}-[0-9]{1,5}$/, 'port ranges are written "low-high"').refine(
    (r) => {
      // The regex above guarantees two numbers around the dash.
      const [lo = 0, hi = 0] = r.split("-").map(Number);
      return lo >= 1 && hi <= 65535 && lo <= hi;
    },
    { message: "port range must satisfy 1 <= low <= high <= 65535" },
  ),
]);

/** What the device accepts, whatever the operator sends. */
export const AgentPolicy = z.strictObject({
  /** Registry hosts images may come from; absent means any. */
  allowed_registries: z.array(z.string().refine(isRegistryHost, { message: "not a registry host" }))
    .optional(),
  /** Host path prefixes that may be bind-mounted; named volumes are always allowed. */
  allowed_host_paths: z.array(absolutePath).default([]),
  /** Host ports (or `"low-high"` ranges) that may be published; absent means any. */
  allowed_host_ports: z.array(PortRange).optional(),
  /** Most containers Drover may run on this device; absent means no limit. */
  max_containers: z.number().int().positive().optional(),
  /** Whether the operator may read container logs through `operator logs`; absent = allowed. */
  allow_logs: z.boolean().optional(),
  /** Host device paths or globs (`/dev/ttyUSB*`) services may map in; absent = none. */
  allowed_devices: z.array(
    absolutePath.refine((p) => p.startsWith("/dev/"), { message: "must be under /dev/" }),
  ).optional(),
  /** Capabilities services may add (`cap_add`); absent = none. */
  allowed_capabilities: z.array(
    z.string().refine(
      (c) => CAPABILITIES.includes(canonicalCapability(c).slice(4)),
      { message: 'unknown capability (expected e.g. "NET_ADMIN")' },
    ),
  ).optional(),
  /** Whether a service may use `network_mode: "host"`; absent = no. */
  allow_host_network: z.boolean().optional(),
  /** Largest `mem_limit` a service may ask for (`"256m"`); absent = any. */
  max_mem_limit: byteSize(MIN_MEM_LIMIT_BYTES).optional(),
  /** Refuse services without a `mem_limit` (so every container is capped); absent = no. */
  require_mem_limit: z.boolean().optional(),
});
/** What the device accepts. */
export type AgentPolicy = z.infer<typeof AgentPolicy>;

/** Credentials and TLS settings for one private registry. */
export const RegistryConfig = z.strictObject({
  username: z.string().optional(),
  password: z.string().optional(),
  tls_verify: z.boolean().default(true),
}).refine((r) => (r.username === undefined) === (r.password === undefined), {
  message: "username and password go together",
});
/** Credentials and TLS settings for one private registry. */
export type RegistryConfig = z.infer<typeof RegistryConfig>;

/** NATS connection settings; every auth method nats.js supports. */
export const NatsConfig = z.strictObject({
  servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)])
    .default([DEFAULT_NATS_SERVER])
    .transform((s) => (Array.isArray(s) ? s : [s])),
  user: z.string().optional(),
  password: z.string().optional(),
  token: z.string().optional(),
  creds: absolutePath.optional(),
  nkey_seed: absolutePath.optional(),
  tls_ca: absolutePath.optional(),
  tls_cert: absolutePath.optional(),
  tls_key: absolutePath.optional(),
}).refine((n) => n.password === undefined || n.user !== undefined, {
  message: "password needs user",
  path: ["user"],
}).refine((n) => (n.tls_cert === undefined) === (n.tls_key === undefined), {
  message: "tls_cert and tls_key go together",
  path: ["tls_cert"],
});
/** NATS connection settings. */
export type NatsConfig = z.infer<typeof NatsConfig>;

/** Default seconds between asks for the wanted agent version. */
export const DEFAULT_UPDATE_CHECK_SECONDS = 300;
/** Default seconds a new agent version gets to connect, reconcile and report. */
export const DEFAULT_UPDATE_TRIAL_SECONDS = 120;

/** Self-update; absent = the agent never updates itself. */
export const UpdateConfig = z.strictObject({
  /** The only key releases may be signed with (`operator agent key`). */
  release_key: ReleasePublicKey,
  /** Seconds between asks for the wanted version (also asked after every reconnect). */
  check_seconds: z.number().positive().max(86_400).default(DEFAULT_UPDATE_CHECK_SECONDS),
  /** Seconds a new version gets to connect, reconcile and report before it is rolled back. */
  trial_seconds: z.number().positive().max(3_600).default(DEFAULT_UPDATE_TRIAL_SECONDS),
});
/** Self-update settings. */
export type UpdateConfig = z.infer<typeof UpdateConfig>;

/** The whole agent configuration. */
export const AgentConfig = z.strictObject({
  agent: z.strictObject({
    device_id: Name,
    state_dir: absolutePath.default(DEFAULT_STATE_DIR),
    labels: DeviceLabels.default({}),
    heartbeat_seconds: z.number().positive().max(3600).default(DEFAULT_HEARTBEAT_SECONDS),
    log_level: LogLevel.default("info"),
  }),
  nats: NatsConfig.default({ servers: [DEFAULT_NATS_SERVER] }),
  podman: z.strictObject({ socket: absolutePath.default(DEFAULT_PODMAN_SOCKET) })
    .default({ socket: DEFAULT_PODMAN_SOCKET }),
  registries: z.record(
    z.string().refine(isRegistryHost, { message: 'registry keys are "host" or "host:port"' }),
    RegistryConfig,
  ).default({}),
  policy: AgentPolicy.default({ allowed_host_paths: [] }),
  /** Prometheus metrics; off unless `listen` is set. */
  metrics: z.strictObject({
    /** `host:port` to serve `/metrics` on, e.g. `127.0.0.1:9101`; absent = no metrics. */
    listen: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/, {
      message: 'must be "host:port", e.g. "127.0.0.1:9101"',
    }).refine((l) => {
      const port = Number(l.slice(l.lastIndexOf(":") + 1));
      return port >= 1 && port <= 65535;
    }, { message: "port must be 1-65535" }).optional(),
  }).optional(),
  update: UpdateConfig.optional(),
  /** The device's sealing key: secrets reach it sealed to this xkey (`device add` writes it). */
  secrets: z.strictObject({
    /** Absolute path of the xkey seed file (`SX…`, 0600). */
    key: absolutePath,
  }).optional(),
});
/** The whole agent configuration (after defaults are applied). */
export type AgentConfig = z.infer<typeof AgentConfig>;
/** The agent configuration as written. */
export type AgentConfigInput = z.input<typeof AgentConfig>;
