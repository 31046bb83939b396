/**
 * The value of `agent-status/<device>`: what an agent reports about itself.
 *
 * Wire objects here strip unknown keys rather than reject them, so an operator
 * can read the status of a newer agent that reports more.
 *
 * @module
 */

import { z } from "zod";
import { Name } from "./score.ts";
import { DeviceLabels } from "./labels.ts";
import { AgentUpdateStatus } from "./agent_update.ts";

/** Phase of one deployment on one device. */
export const DeploymentPhase = z.enum(["pending", "running", "failed", "removing"]);
/** Phase of one deployment on one device. */
export type DeploymentPhase = z.infer<typeof DeploymentPhase>;

/** Summary of the whole device. */
export const DeviceStatus = z.enum(["starting", "ready", "degraded", "stopped"]);
/** Summary of the whole device. */
export type DeviceStatus = z.infer<typeof DeviceStatus>;

/** Result of a service's health check: compose's and podman's three states. */
export const ServiceHealth = z.enum(["starting", "healthy", "unhealthy"]);
/** Result of a service's health check. */
export type ServiceHealth = z.infer<typeof ServiceHealth>;

/** State of one service's container. */
export const ServiceStatus = z.object({
  container_id: z.string().optional(),
  /** Podman's container state (`running`, `exited`, …), or `missing`/`pulling` before one exists. */
  state: z.string(),
  image: z.string(),
  restarts: z.number().int().nonnegative().optional(),
  /** Exit code of a container that is not running (a job's result); absent while it runs. */
  exit_code: z.number().int().optional(),
  /**
   * The container's health check: `starting` until one passes, `healthy`, or `unhealthy`
   * after `retries` failures in a row. Absent for a service without a health check.
   */
  health: ServiceHealth.optional(),
});
/** State of one service's container. */
export type ServiceStatus = z.infer<typeof ServiceStatus>;

/** State of one deployment on one device. */
export const DeploymentStatus = z.object({
  /** The desired-state KV revision this status describes. */
  revision: z.number().int().nonnegative(),
  /**
   * The desired state's `deployment_revision` (the manifest revision people
   * see), echoed; absent when that value had none or could not be read.
   */
  deployment_revision: z.number().int().positive().optional(),
  phase: DeploymentPhase,
  message: z.string().optional(),
  services: z.record(z.string(), ServiceStatus),
});
/** State of one deployment on one device. */
export type DeploymentStatus = z.infer<typeof DeploymentStatus>;

/**
 * Longest device-level {@linkcode AgentStatus} `message`, in characters. Agents shorten
 * longer reasons (with "…") so that a status is never refused for its message.
 */
export const DEVICE_MESSAGE_MAX_LENGTH = 500;

/** What an agent publishes to `agent-status/<device>`. */
export const AgentStatus = z.object({
  device_id: Name,
  status: DeviceStatus,
  /**
   * Why the device is not `ready`, in one short line (e.g. "container runtime unreachable:
   * …", "1 of 3 deployments not running: shop failed"). Absent when ready. Older agents
   * never send it.
   */
  message: z.string().max(DEVICE_MESSAGE_MAX_LENGTH).optional(),
  /** RFC 3339 UTC time at which this status was produced. */
  timestamp: z.iso.datetime(),
  agent_version: z.string(),
  /**
   * Labels the agent reports about itself (its config's): shown, never used to
   * select devices — selectors match the operator's `DeviceRegistration`.
   */
  labels: DeviceLabels,
  /** Seconds between heartbeats; lets readers judge staleness. */
  heartbeat_seconds: z.number().positive().optional(),
  /**
   * Seconds between full status puts while nothing changes (agents that send
   * liveness as core-NATS heartbeats, `drover.heartbeat.<device>`, put the full
   * status only on change and this often). A reader of KV alone counts a device
   * online while `now - timestamp ≤ status_refresh_seconds + 3 × heartbeat_seconds`;
   * absent (older agents put every heartbeat): `≤ 3 × heartbeat_seconds`.
   */
  status_refresh_seconds: z.number().positive().optional(),
  deployments: z.record(z.string(), DeploymentStatus),
  /** Self-update: the release it runs and where an update stands. Older agents never send it. */
  update: AgentUpdateStatus.optional(),
});
/** What an agent publishes to `agent-status/<device>`. */
export type AgentStatus = z.infer<typeof AgentStatus>;
