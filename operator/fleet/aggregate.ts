/**
 * The fleet view: devices and deployments as people and scripts see them
 * (`get`, `status`, the HTTP API, `apply --wait`). Pure: the caller passes
 * the KV contents and the time.
 *
 * @module
 */

import {
  type AgentStatus,
  type AgentUpdateStatus,
  DEFAULT_HEARTBEAT_SECONDS,
  type DeploymentManifest,
  type DeploymentPhase,
  desiredStateKey,
  parseDesiredStateKey,
  type ServiceStatus,
} from "@drover/contracts";
import { desiredContent, desiredStateOf } from "../desired/fanout.ts";
import { type KnownDevice, knownDevices, targetedDevices } from "../desired/targeting.ts";

/** A device is offline once its last status is older than this many heartbeat intervals. */
export const OFFLINE_AFTER_HEARTBEATS = 3;

/** One desired-state key as stored now. */
export interface DesiredKeyRecord {
  /** KV revision of the stored value. */
  revision: number;
  /**
   * Canonical JSON of the stored value without its `deployment_revision`
   * (the raw text when it is not JSON): what the device is asked to run.
   */
  canonical: string;
  /** The value's `deployment_revision`: the manifest revision its content came from. */
  deploymentRevision?: number;
  /** How its secrets were sealed (see `sealingOf`), when it has any. */
  sealing?: string;
}

/** What `agent-status/<device>` holds for one device. */
export interface DeviceRecord {
  /** The decoded status; absent when the stored value is invalid. */
  status?: AgentStatus;
  /** Why the stored value could not be decoded. */
  error?: string;
  /** Last valid reported labels, shown while the status is invalid (never used for targeting). */
  labels?: Record<string, string>;
  /** When the status was stored (server time of the KV entry), ms since epoch. */
  seenAt: number;
  /** KV revision of the stored status (what heartbeats name as `status_revision`). */
  revision?: number;
  /** When the last heartbeat (`drover.heartbeat.<device>`) arrived, ms since epoch; absent if none. */
  heartbeatAt?: number;
}

/** What `devices/<device>` (the operator's device registry) holds for one device. */
export interface RegistrationRecord {
  /**
   * Labels that decide label-selector targeting. After an invalid write, the
   * last valid labels stay; absent when no valid value was ever seen (then
   * only `selector.devices` can target the device).
   */
  labels?: Record<string, string>;
  /** Why the stored value could not be decoded. */
  error?: string;
  /** RFC 3339 time of the entry's last change, from the last valid value. */
  updatedAt?: string;
  /** The device's xkey public key, secrets are sealed to; absent: it has none. */
  sealingKey?: string;
}

/** One device in the fleet view. */
export interface DeviceView {
  device_id: string;
  /** Labels from the operator's device registry: what label selectors match ({} if unregistered). */
  labels: Record<string, string>;
  /** Whether the device has an entry in the operator's device registry. */
  registered: boolean;
  /** Labels the agent reports about itself: shown, never used for targeting; null if none. */
  reported_labels: Record<string, string> | null;
  /** The agent's own summary (`ready`, `degraded`, …), `unknown` if it never reported, `invalid`. */
  status: string;
  online: boolean;
  /** Seconds since the last status, or null when it never reported. */
  heartbeat_age_seconds: number | null;
  /** RFC 3339 time of the last status, or null. */
  last_seen: string | null;
  agent_version: string | null;
  /** Self-update as the agent reports it (the release it runs, the wanted one, where it stands). */
  agent_update?: AgentUpdateStatus;
  /** Deployments the device should run or reports, sorted. */
  deployments: string[];
  /**
   * Why the device is not `ready`, in the agent's words (its status
   * `message`), or else its deployments that are not running; absent when ready.
   */
  reason?: string;
  /** What the operator notes about the device (never reported, not registered, invalid). */
  message?: string;
}

/**
 * One device's part in one deployment. Revisions people see are deployment
 * revisions (the manifest's revision in `deployments`, what `apply` prints);
 * the desired-state KV sequence numbers are kept apart as `*_kv_revision`.
 */
export interface DeploymentDeviceView {
  device_id: string;
  online: boolean;
  /**
   * Deployment revision the device should run (the one its desired-state
   * content was last changed in), or null while not written yet.
   */
  wanted_revision: number | null;
  /** Deployment revision the agent reports running (or failing), or null if unknown. */
  applied_revision: number | null;
  /** KV revision of the device's desired-state key, or null when there is none. */
  wanted_kv_revision: number | null;
  /** KV revision of the desired state the agent reports about, or null. */
  applied_kv_revision: number | null;
  /** `ready` (running the wanted revision), `failed` (failed at the wanted revision) or `pending`. */
  phase: "ready" | "failed" | "pending";
  /** The agent's own phase for the revision it reports, if any. */
  agent_phase: DeploymentPhase | null;
  message: string;
  /**
   * The agent's view of each service (container state, image, restarts and,
   * with a health check, `health`), as it reported them; absent when it
   * reported none for this deployment.
   */
  services?: Record<string, ServiceStatus>;
}

/** One deployment in the fleet view. */
export interface DeploymentView {
  name: string;
  /** Revision of the manifest in `deployments` (what `apply` printed), or null if unknown. */
  revision: number | null;
  targeted: number;
  ready: number;
  failed: number;
  pending: number;
  offline: number;
  devices: DeploymentDeviceView[];
  /** The set it was applied from (`apply --source`); absent when applied by hand. */
  source?: string;
}

/** Everything `summarise` returns. */
export interface FleetView {
  devices: DeviceView[];
  deployments: DeploymentView[];
}

/** The last sign of life: the later of the stored status and the last heartbeat, ms. Pure. */
export function lastSeen(record: DeviceRecord): number {
  return Math.max(record.seenAt, record.heartbeatAt ?? 0);
}

/**
 * True when the device showed life recently enough at `now`. Pure.
 *
 * Whoever hears heartbeats (`operator serve`) counts a device offline after
 * {@linkcode OFFLINE_AFTER_HEARTBEATS} missed ones, from the later of its last
 * status and its last heartbeat. A reader of KV alone (the CLI's `get`) only
 * has the status, which agents refresh every `status_refresh_seconds`: it
 * allows that period plus the same three heartbeats (docs/nats-kv.md). Statuses
 * without `status_refresh_seconds` (older agents put every heartbeat) get
 * three heartbeats.
 */
export function isOnline(record: DeviceRecord | undefined, now: number): boolean {
  if (record === undefined) return false;
  if (record.status?.status === "stopped") return false;
  const interval = record.status?.heartbeat_seconds ?? DEFAULT_HEARTBEAT_SECONDS;
  const grace = OFFLINE_AFTER_HEARTBEATS * interval * 1000;
  if (record.heartbeatAt !== undefined) return now - lastSeen(record) <= grace;
  const refresh = (record.status?.status_refresh_seconds ?? 0) * 1000;
  return now - record.seenAt <= refresh + grace;
}

/**
 * Builds the fleet view.
 *
 * @param manifests valid manifests
 * @param desired desired-state key → stored revision and canonical value
 * @param statuses device id → its `agent-status` record
 * @param registry device id → its entry in the operator's device registry
 * @param now ms since epoch
 * @param revisions deployment name → its manifest's revision in `deployments`
 */
export function summarise(
  manifests: readonly DeploymentManifest[],
  desired: ReadonlyMap<string, DesiredKeyRecord>,
  statuses: ReadonlyMap<string, DeviceRecord>,
  registry: ReadonlyMap<string, RegistrationRecord>,
  now: number,
  revisions: ReadonlyMap<string, number> = new Map(),
): FleetView {
  const devicesKnown = knownDevices(registry);
  const deploymentsOf = new Map<string, Set<string>>();
  const note = (device: string, deployment: string) => {
    let set = deploymentsOf.get(device);
    if (set === undefined) deploymentsOf.set(device, set = new Set());
    set.add(deployment);
  };
  for (const key of desired.keys()) {
    const parsed = tryParseKey(key);
    if (parsed) note(parsed.device, parsed.deployment);
  }
  for (const [id, record] of statuses) {
    for (const name of Object.keys(record.status?.deployments ?? {})) note(id, name);
  }

  const deployments = [...manifests]
    .sort((a, b) => compare(a.name, b.name))
    .map((m) => deploymentView(m, revisions.get(m.name), devicesKnown, desired, statuses, now));

  const ids = new Set<string>([...statuses.keys(), ...registry.keys(), ...deploymentsOf.keys()]);
  const devices = [...ids].sort(compare).map((id) =>
    deviceView(id, statuses.get(id), registry.get(id), deploymentsOf.get(id), now)
  );
  return { devices, deployments };
}

function deviceView(
  id: string,
  record: DeviceRecord | undefined,
  registration: RegistrationRecord | undefined,
  deployments: Set<string> | undefined,
  now: number,
): DeviceView {
  const view: DeviceView = {
    device_id: id,
    labels: registration?.labels ?? {},
    registered: registration !== undefined,
    reported_labels: record?.status?.labels ?? record?.labels ?? null,
    status: record === undefined ? "unknown" : record.status?.status ?? "invalid",
    online: isOnline(record, now),
    heartbeat_age_seconds: record === undefined
      ? null
      : Math.max(0, Math.round((now - lastSeen(record)) / 100) / 10),
    last_seen: record === undefined ? null : new Date(lastSeen(record)).toISOString(),
    agent_version: record?.status?.agent_version ?? null,
    deployments: [...(deployments ?? [])].sort(compare),
  };
  const reason = notReadyReason(record?.status);
  if (reason !== undefined) view.reason = reason;
  if (record?.status?.update !== undefined) view.agent_update = record.status.update;
  const notes: string[] = [];
  if (record?.error !== undefined) notes.push(`invalid status: ${record.error}`);
  else if (record === undefined) notes.push("has never reported status");
  if (registration === undefined) {
    notes.push("not in the device registry: only deployments that name it are sent to it");
  } else if (registration.error !== undefined) {
    notes.push(`invalid registry entry: ${registration.error}`);
  }
  if (notes.length > 0) view.message = notes.join("; ");
  return view;
}

/** At most this many deployments are named in a derived reason. */
const REASON_DEPLOYMENTS = 3;

/**
 * Why a device is not ready: the agent's own device-level `message` when it
 * sends one, else the deployments it reports as not running (older agents).
 * Undefined for a ready device. Exported for unit tests.
 */
export function notReadyReason(status: AgentStatus | undefined): string | undefined {
  if (status === undefined || status.status === "ready") return undefined;
  // Read defensively: the device-level message is a newer, optional status field.
  const own = (status as { message?: unknown }).message;
  if (typeof own === "string" && own !== "") return own;
  const troubled = Object.entries(status.deployments)
    .filter(([, d]) => d.phase !== "running")
    .sort(([a], [b]) => compare(a, b));
  if (troubled.length === 0) return undefined;
  const parts = troubled.slice(0, REASON_DEPLOYMENTS).map(([name, d]) => {
    const first = d.message?.split("\n")[0];
    return first ? `${name} ${d.phase}: ${first}` : `${name} ${d.phase}`;
  });
  if (troubled.length > REASON_DEPLOYMENTS) {
    parts.push(`${troubled.length - REASON_DEPLOYMENTS} more not running`);
  }
  return parts.join("; ");
}

function deploymentView(
  manifest: DeploymentManifest,
  revision: number | undefined,
  devices: readonly KnownDevice[],
  desired: ReadonlyMap<string, DesiredKeyRecord>,
  statuses: ReadonlyMap<string, DeviceRecord>,
  now: number,
): DeploymentView {
  const wantedCanonical = desiredContent(desiredStateOf(manifest));
  const rows = [...targetedDevices(manifest, devices)].sort(compare).map((device) =>
    deviceInDeployment(
      manifest.name,
      device,
      desired.get(desiredStateKey(device, manifest.name)),
      wantedCanonical,
      statuses.get(device),
      now,
      revision,
    )
  );
  const count = (phase: DeploymentDeviceView["phase"]) =>
    rows.filter((r) => r.phase === phase).length;
  return {
    name: manifest.name,
    revision: revision ?? null,
    targeted: rows.length,
    ready: count("ready"),
    failed: count("failed"),
    pending: count("pending"),
    offline: rows.filter((r) => !r.online).length,
    devices: rows,
    ...(manifest.source !== undefined ? { source: manifest.source } : {}),
  };
}

/**
 * Judges one device of one deployment; exported for unit tests.
 *
 * @param revision the manifest's revision in `deployments`, if known
 */
export function deviceInDeployment(
  deployment: string,
  device: string,
  stored: DesiredKeyRecord | undefined,
  wantedCanonical: string,
  record: DeviceRecord | undefined,
  now: number,
  revision?: number,
): DeploymentDeviceView {
  const online = isOnline(record, now);
  const reported = record?.status?.deployments[deployment];
  const current = stored !== undefined && reported?.revision === stored.revision;
  const base = {
    device_id: device,
    online,
    // An agent that predates the echo still runs a known value when it reports its KV revision.
    applied_revision: reported?.deployment_revision ??
      (current ? stored.deploymentRevision : undefined) ?? null,
    wanted_kv_revision: stored?.revision ?? null,
    applied_kv_revision: reported?.revision ?? null,
    agent_phase: reported?.phase ?? null,
    ...(reported !== undefined && Object.keys(reported.services).length > 0
      ? { services: reported.services }
      : {}),
  };
  // An earlier revision's value, which the operator is about to replace: its failure is old news
  // (and must not end an `apply --wait` of the new revision).
  const superseded = stored !== undefined && stored.canonical !== wantedCanonical &&
    stored.deploymentRevision !== undefined && revision !== undefined &&
    stored.deploymentRevision < revision;
  if (current && reported.phase === "failed" && !superseded) {
    // The agent rejected exactly what is stored (a bad value, a policy breach): that is the
    // news, whether or not the stored value is what the manifest asks for.
    const rewrite = stored.canonical === wantedCanonical
      ? ""
      : " (the stored desired state differs from the manifest: is the operator service running?)";
    return {
      ...base,
      wanted_revision: stored.deploymentRevision ?? null,
      phase: "failed",
      message: (reported.message || "failed (no message)") + rewrite,
    };
  }
  if (stored === undefined || stored.canonical !== wantedCanonical) {
    return {
      ...base,
      wanted_revision: null,
      phase: "pending",
      message: "waiting for the operator to write the desired state",
    };
  }
  const wanted = stored.deploymentRevision ?? null;
  const pending = (message: string): DeploymentDeviceView => ({
    ...base,
    wanted_revision: wanted,
    phase: "pending",
    message: online ? message : `device offline; ${message}`,
  });
  if (record === undefined) return pending("device has never reported status");
  if (record.status === undefined) return pending(`device status is invalid: ${record.error}`);
  if (reported === undefined) return pending("agent has not picked it up yet");
  if (!current) {
    const applied = base.applied_revision;
    return pending(
      wanted !== null && applied !== null && applied !== wanted
        ? `agent reports revision ${applied} (${reported.phase}), waiting for revision ${wanted}`
        : `agent reports an earlier write (KV revision ${reported.revision}, ${reported.phase}), ` +
          `waiting for KV revision ${stored.revision}`,
    );
  }
  const agentMessage = reported.message ?? "";
  if (reported.phase === "running") {
    return { ...base, wanted_revision: wanted, phase: "ready", message: agentMessage };
  }
  return pending(agentMessage || reported.phase);
}

function tryParseKey(key: string) {
  try {
    return parseDesiredStateKey(key);
  } catch {
    return undefined;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
