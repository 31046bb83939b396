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
import type { RolloutPhase, RolloutState } from "../rollout/state.ts";

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
  /** Deployment revision the agent reports as `running` now, or null when it runs none. */
  running_revision: number | null;
  /** KV revision of the device's desired-state key, or null when there is none. */
  wanted_kv_revision: number | null;
  /** KV revision of the desired state the agent reports about, or null. */
  applied_kv_revision: number | null;
  /**
   * `ready` (running the revision the deployment is at: the current one, or
   * the stable one after a rollback), `failed` (failed at it), `pending`, or
   * `held` (a staged rollout has not given it the current revision yet: it
   * keeps the one it has).
   */
  phase: "ready" | "failed" | "pending" | "held";
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

/** A device judged against one revision: a `held` device is judged at the one it keeps. */
export type JudgedDevice = DeploymentDeviceView & { phase: "ready" | "failed" | "pending" };

/** One deployment in the fleet view. */
export interface DeploymentView {
  name: string;
  /** Revision of the manifest in `deployments` (what `apply` printed), or null if unknown. */
  revision: number | null;
  /**
   * Where the latest rollout of `revision` stands (`complete` for one that
   * went everywhere at once), or null when none is recorded yet (no
   * `operator serve` has handled this revision).
   */
  state: RolloutPhase | null;
  /**
   * The last good revision: `revision` once its rollout completed, the one
   * devices went back to after a rollback, the one held devices keep during
   * a rollout; null when unknown or there is none.
   */
  stable_revision: number | null;
  /** The revision `ready` counts at: `stable_revision` after a rollback, else `revision`. */
  ready_revision: number | null;
  /** 1-based batch of a progressing or paused rollout, and how many there are; else null. */
  batch: number | null;
  batches: number | null;
  targeted: number;
  ready: number;
  failed: number;
  pending: number;
  /** Devices a staged rollout has not given `revision` yet (they keep what they run). */
  held: number;
  offline: number;
  devices: DeploymentDeviceView[];
  /** The set it was applied from (`apply --source`); absent when applied by hand. */
  source?: string;
}

/**
 * What the fleet view needs to know about rollouts: the stored rollout
 * states and the manifests of earlier revisions (the rollout book of
 * `operator serve`, or what a CLI command read).
 */
export interface RolloutLookup {
  /** Deployment name → its stored rollout state. */
  states(): ReadonlyMap<string, RolloutState>;
  /** The manifest of `revision` of `deployment`, if the history holds it. */
  manifestAt(deployment: string, revision: number): DeploymentManifest | undefined;
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
 * status and its last heartbeat; the CLI asks it what it heard
 * (`hearLiveness` in read.ts) and so applies the same rule. A reader of KV
 * alone (the CLI when no `serve` answers) only
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
 * @param rollouts rollout states and earlier manifests; without it deployments are judged
 *   against their current manifest alone
 */
export function summarise(
  manifests: readonly DeploymentManifest[],
  desired: ReadonlyMap<string, DesiredKeyRecord>,
  statuses: ReadonlyMap<string, DeviceRecord>,
  registry: ReadonlyMap<string, RegistrationRecord>,
  now: number,
  revisions: ReadonlyMap<string, number> = new Map(),
  rollouts?: RolloutLookup,
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

  const states = rollouts?.states() ?? new Map<string, RolloutState>();
  const fleet = { devices: devicesKnown, desired, statuses, now };
  const deployments = [...manifests]
    .sort((a, b) => compare(a.name, b.name))
    .map((m) => {
      const revision = revisions.get(m.name);
      const stored = states.get(m.name);
      const rollout = stored !== undefined && stored.revision === revision ? stored : undefined;
      const stable = rollout?.stable_revision === null || rollout === undefined
        ? undefined
        : rollouts?.manifestAt(m.name, rollout.stable_revision);
      return deploymentView(m, revision, fleet, rollout, stable);
    });

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

/** What {@linkcode deploymentView} reads besides the deployment. */
interface FleetContents {
  devices: readonly KnownDevice[];
  desired: ReadonlyMap<string, DesiredKeyRecord>;
  statuses: ReadonlyMap<string, DeviceRecord>;
  now: number;
}

/**
 * One deployment as it is: judged against what its rollout says each device
 * should run now. After a rollback every targeted device should run the
 * stable revision (ready counts there); during a staged rollout the devices
 * given the new revision are judged at it and the others are `held` at what
 * they have; otherwise every targeted device should run `revision`.
 */
function deploymentView(
  manifest: DeploymentManifest,
  revision: number | undefined,
  fleet: FleetContents,
  rollout: RolloutState | undefined,
  stable: DeploymentManifest | undefined,
): DeploymentView {
  const judge = (m: DeploymentManifest, judgedRevision: number | undefined) => {
    const wantedCanonical = desiredContent(desiredStateOf(m));
    return (device: string) =>
      deviceInDeployment(
        m.name,
        device,
        fleet.desired.get(desiredStateKey(device, m.name)),
        wantedCanonical,
        fleet.statuses.get(device),
        fleet.now,
        judgedRevision,
      );
  };
  const targetedOf = (m: DeploymentManifest) =>
    [...targetedDevices(m, fleet.devices)].sort(compare);
  const state = rollout?.state ?? null;
  let stableRevision = rollout === undefined
    ? null
    : state === "complete"
    ? rollout.revision
    : rollout.stable_revision;
  let readyRevision = revision ?? null;
  let rows: DeploymentDeviceView[];
  if (rollout !== undefined && state === "rolled_back") {
    if (rollout.stable_revision === null) {
      // Nothing to go back to: the operator removed it from the devices it had reached.
      rows = [];
      readyRevision = null;
    } else if (stable !== undefined) {
      rows = targetedOf(stable).map(judge(stable, rollout.stable_revision));
      readyRevision = rollout.stable_revision;
    } else {
      // The stable manifest is not in the history: the devices keep what they have.
      rows = targetedOf(manifest).map((d) => heldRow(d, fleet, rollout));
      stableRevision = rollout.stable_revision;
    }
  } else if (
    rollout !== undefined && (state === "progressing" || state === "paused" || state === "failed")
  ) {
    const updated = new Set(rollout.updated);
    const atRevision = judge(manifest, revision);
    rows = targetedOf(manifest).map((d) =>
      updated.has(d) ? atRevision(d) : heldRow(d, fleet, rollout)
    );
  } else {
    rows = targetedOf(manifest).map(judge(manifest, revision));
  }
  const count = (phase: DeploymentDeviceView["phase"]) =>
    rows.filter((r) => r.phase === phase).length;
  const staged = state === "progressing" || state === "paused";
  return {
    name: manifest.name,
    revision: revision ?? null,
    state,
    stable_revision: stableRevision,
    ready_revision: readyRevision,
    batch: staged ? rollout!.batch + 1 : null,
    batches: staged ? rollout!.batches : null,
    targeted: rows.length,
    ready: count("ready"),
    failed: count("failed"),
    pending: count("pending"),
    held: count("held"),
    offline: rows.filter((r) => !r.online).length,
    devices: rows,
    ...(manifest.source !== undefined ? { source: manifest.source } : {}),
  };
}

/**
 * A device a staged rollout has not given the new revision: it keeps its
 * stored desired state, judged as that (it may still fail at it), and says
 * why it waits — never that the operator has yet to write something.
 */
function heldRow(
  device: string,
  fleet: FleetContents,
  rollout: RolloutState,
): DeploymentDeviceView {
  const stored = fleet.desired.get(desiredStateKey(device, rollout.deployment));
  const row = deviceInDeployment(
    rollout.deployment,
    device,
    stored,
    stored?.canonical ?? "",
    fleet.statuses.get(device),
    fleet.now,
    stored?.deploymentRevision,
  );
  if (row.phase === "failed") return row;
  const at = stored === undefined
    ? "not given any revision yet"
    : `held at revision ${stored.deploymentRevision ?? rollout.stable_revision ?? "?"}`;
  const batch = `batch ${rollout.batch + 1} of ${rollout.batches}`;
  const why = rollout.state === "paused"
    ? `rollout paused at ${batch}`
    : rollout.state === "failed"
    ? "rollout stopped (failed)"
    : `rollout in ${batch}; its batch comes later`;
  const detail = row.phase === "ready" || stored === undefined ? "" : ` (${row.message})`;
  return { ...row, phase: "held", message: `${at}: ${why}${detail}` };
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
): JudgedDevice {
  const online = isOnline(record, now);
  const reported = record?.status?.deployments[deployment];
  const current = stored !== undefined && reported?.revision === stored.revision;
  const base = {
    device_id: device,
    online,
    // An agent that predates the echo still runs a known value when it reports its KV revision.
    applied_revision: reported?.deployment_revision ??
      (current ? stored.deploymentRevision : undefined) ?? null,
    running_revision: reported?.phase === "running"
      ? reported.deployment_revision ?? (current ? stored.deploymentRevision : undefined) ?? null
      : null,
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
  const pending = (message: string): JudgedDevice => ({
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
  const agentMessage = (reported.message ?? "") + observedAge(reported.observed_at, now);
  if (reported.phase === "running") {
    return { ...base, wanted_revision: wanted, phase: "ready", message: agentMessage };
  }
  return pending(agentMessage || reported.phase);
}

/** ` (40 s ago)`: the age of an `unknown` deployment's last observation, or "". */
function observedAge(observedAt: string | undefined, now: number): string {
  const at = observedAt === undefined ? NaN : Date.parse(observedAt);
  if (!Number.isFinite(at)) return "";
  return ` (${Math.max(0, Math.round((now - at) / 1000))} s ago)`;
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
