/**
 * The operator's in-memory picture of the buckets, fed by KV entries (from
 * watches or snapshots) and by its own writes. No I/O.
 *
 * Setters of what targeting depends on (manifests, the device registry,
 * desired state) say whether the change can alter it. Statuses never can:
 * a device's report about itself decides nothing, so the heartbeats of
 * 5 000 devices cost no reconcile pass.
 *
 * @module
 */

import {
  AgentStatus,
  canonicalJson,
  decodeJson,
  DeploymentManifest,
  type DesiredState,
  DeviceRegistration,
  type Heartbeat,
  isValidName,
  MAX_VALUE_BYTES,
  SealedSecret,
  secretNamesOf,
} from "@drover/contracts";
import { z } from "zod";
import type {
  DesiredKeyRecord,
  DeviceRecord,
  FleetView,
  RegistrationRecord,
  RolloutLookup,
} from "./aggregate.ts";
import { summarise } from "./aggregate.ts";
import type { MirrorEntry } from "../nats/kv.ts";
import { desiredContent, sealingOf, type StoredDesired } from "../desired/fanout.ts";

const SealedSecrets = z.array(SealedSecret);

/** One stored manifest: valid, or the reason it is not. */
export interface ManifestRecord {
  revision: number;
  manifest?: DeploymentManifest;
  error?: string;
}

/** Decoded contents of the buckets. */
export class FleetState {
  /** Deployment name → stored manifest. */
  readonly manifests: Map<string, ManifestRecord> = new Map();
  /** Desired-state key → stored revision and canonical value. */
  readonly desired: Map<string, DesiredKeyRecord> = new Map();
  /** Device id → status record (what the device says; shown, never used for targeting). */
  readonly statuses: Map<string, DeviceRecord> = new Map();
  /** Device id → entry in the operator's device registry (labels that decide targeting). */
  readonly registry: Map<string, RegistrationRecord> = new Map();
  /**
   * Rollout states and earlier manifests, when the reader has them (`serve`'s
   * rollout book, or what a CLI command read): the view then shows a rolled
   * back deployment at its stable revision and held devices as held.
   */
  rollouts: RolloutLookup | undefined = undefined;
  /** Highest desired-state revision accounted for per key; older echoes are ignored. */
  readonly #desiredSeen = new Map<string, number>();
  /** Told after changes (the dashboard's live feed); see {@linkcode onChange}. */
  readonly #listeners = new Set<() => void>();
  #notifyQueued = false;

  /**
   * Calls `listener` once after a burst of changes (a microtask after the
   * first one, so it sees them applied); returns the function that stops it.
   * Cheap for 5 000 heart-beating devices: the listener only marks something dirty.
   */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    if (this.#notifyQueued || this.#listeners.size === 0) return;
    this.#notifyQueued = true;
    queueMicrotask(() => {
      this.#notifyQueued = false;
      for (const listener of this.#listeners) listener();
    });
  }

  /** Applies a `deployments` entry; true when targeting may change. */
  applyDeployment(entry: MirrorEntry): boolean {
    this.#changed();
    if (entry.operation !== "PUT") return this.manifests.delete(entry.key);
    const decoded = decodeJson(DeploymentManifest, entry.value);
    const record: ManifestRecord = decoded.ok
      ? { revision: entry.revision, manifest: decoded.value }
      : { revision: entry.revision, error: decoded.error };
    if (decoded.ok && decoded.value.name !== entry.key) {
      delete record.manifest;
      record.error = `name "${decoded.value.name}" does not match key "${entry.key}"`;
    }
    const unpinned = record.manifest === undefined
      ? []
      : secretNamesOf(record.manifest.score).filter((name) =>
        record.manifest?.secret_versions?.[name] === undefined
      );
    if (unpinned.length > 0) {
      delete record.manifest;
      record.error = `no version pinned for secret(s) ${unpinned.join(", ")}: store the ` +
        `manifest with "operator apply", which pins the current versions`;
    }
    this.manifests.set(entry.key, record);
    return true;
  }

  /**
   * Applies a `devices` (registry) entry; true when the device was registered,
   * unregistered or relabelled. An invalid value keeps the last valid labels,
   * so a bad write neither pulls deployments from a device nor adds any.
   */
  applyRegistration(entry: MirrorEntry): boolean {
    this.#changed();
    // A key that is not a device id can never be targeted (nor be a key part): skip it.
    if (!isValidName(entry.key)) return false;
    const before = this.registry.get(entry.key);
    if (entry.operation !== "PUT") return this.registry.delete(entry.key);
    const decoded = decodeJson(DeviceRegistration, entry.value);
    const record: RegistrationRecord = decoded.ok
      ? {
        labels: decoded.value.labels,
        updatedAt: decoded.value.updated_at,
        ...(decoded.value.sealing_key !== undefined
          ? { sealingKey: decoded.value.sealing_key }
          : {}),
      }
      : {
        error: decoded.error,
        ...(before?.labels !== undefined ? { labels: before.labels } : {}),
        ...(before?.updatedAt !== undefined ? { updatedAt: before.updatedAt } : {}),
        ...(before?.sealingKey !== undefined ? { sealingKey: before.sealingKey } : {}),
      };
    this.registry.set(entry.key, record);
    return before === undefined || !sameLabels(before.labels, record.labels) ||
      before.sealingKey !== record.sealingKey;
  }

  /**
   * Applies an `agent-status` entry. Returns nothing: a status, labels
   * included, never changes which devices a deployment targets.
   */
  applyStatus(entry: MirrorEntry): void {
    // A key that is not a device id is no device: skip it.
    if (!isValidName(entry.key)) return;
    const before = this.statuses.get(entry.key);
    // A re-read after a heartbeat may have brought a newer value than the watch's.
    if (before?.revision !== undefined && entry.revision < before.revision) return;
    this.#changed();
    if (entry.operation !== "PUT") {
      this.statuses.delete(entry.key);
      return;
    }
    const decoded = decodeJson(AgentStatus, entry.value);
    const seenAt = entry.created.getTime();
    let record: DeviceRecord;
    if (decoded.ok && decoded.value.device_id === entry.key) {
      record = { status: decoded.value, seenAt };
    } else {
      const error = decoded.ok
        ? `device_id "${decoded.value.device_id}" does not match key "${entry.key}"`
        : decoded.error;
      const labels = before?.status?.labels ?? before?.labels;
      record = { error, ...(labels !== undefined ? { labels } : {}), seenAt };
    }
    record.revision = entry.revision;
    if (before?.heartbeatAt !== undefined) record.heartbeatAt = before.heartbeatAt;
    this.statuses.set(entry.key, record);
  }

  /**
   * Applies a heartbeat of `device` heard at `at` (ms). Returns `missed-status`
   * when the stored status this picture holds is older than the one the device
   * last put (or there is none): the caller re-reads `agent-status/<device>`.
   */
  applyHeartbeat(device: string, heartbeat: Heartbeat, at: number): "ok" | "missed-status" {
    if (!isValidName(device)) return "ok";
    const record = this.statuses.get(device);
    if (record === undefined) return "missed-status";
    this.#changed();
    record.heartbeatAt = Math.max(at, record.heartbeatAt ?? 0);
    return heartbeat.status_revision > (record.revision ?? 0) ? "missed-status" : "ok";
  }

  /**
   * Records that `device`'s last heartbeat was heard at `at` (ms), as another
   * process (`operator serve`) heard it; a device with no status is skipped.
   */
  heardAt(device: string, at: number): void {
    const record = this.statuses.get(device);
    if (record === undefined) return;
    record.heartbeatAt = Math.max(at, record.heartbeatAt ?? 0);
  }

  /** Device id → ms since its last heartbeat was heard, at `now` (what `serve` tells the CLI). */
  heardAgo(now: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, record] of this.statuses) {
      if (record.heartbeatAt !== undefined) {
        out[id] = Math.max(0, Math.round(now - record.heartbeatAt));
      }
    }
    return out;
  }

  /**
   * Applies a `desired-state` entry seen on the watch; true when it is news
   * (not the echo of a write this process already recorded).
   */
  applyDesired(entry: MirrorEntry): boolean {
    this.#changed();
    const seen = this.#desiredSeen.get(entry.key) ?? 0;
    if (entry.revision <= seen) return false;
    this.#desiredSeen.set(entry.key, entry.revision);
    if (entry.operation !== "PUT") return this.desired.delete(entry.key) || true;
    this.desired.set(entry.key, { revision: entry.revision, ...storedDesired(entry.value) });
    return true;
  }

  /** Records this process's own put of `value` at `revision`. */
  recordPut(key: string, value: StoredDesired, revision: number): void {
    this.#changed();
    if (revision <= (this.#desiredSeen.get(key) ?? 0)) return;
    this.#desiredSeen.set(key, revision);
    this.desired.set(key, {
      revision,
      canonical: value.canonical,
      ...(value.deploymentRevision !== undefined
        ? { deploymentRevision: value.deploymentRevision }
        : {}),
      ...(value.sealing !== undefined ? { sealing: value.sealing } : {}),
    });
  }

  /** Records this process's own delete of `key`. */
  recordDelete(key: string): void {
    this.#changed();
    const stored = this.desired.get(key);
    if (stored !== undefined) {
      this.#desiredSeen.set(key, Math.max(stored.revision, this.#desiredSeen.get(key) ?? 0));
    }
    this.desired.delete(key);
  }

  /** Valid manifests. */
  validManifests(): DeploymentManifest[] {
    const out: DeploymentManifest[] = [];
    for (const record of this.manifests.values()) if (record.manifest) out.push(record.manifest);
    return out;
  }

  /** Deployment name → revision of its valid manifest in `deployments`. */
  manifestRevisions(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [name, record] of this.manifests) {
      if (record.manifest) out.set(name, record.revision);
    }
    return out;
  }

  /** Names of deployments whose stored manifest is invalid: their keys are left alone. */
  frozenDeployments(): Set<string> {
    const out = new Set<string>();
    for (const [name, record] of this.manifests) if (!record.manifest) out.add(name);
    return out;
  }

  /** The fleet view at `now`. */
  view(now: number): FleetView {
    return summarise(
      this.validManifests(),
      this.desired,
      this.statuses,
      this.registry,
      now,
      this.manifestRevisions(),
      this.rollouts,
    );
  }
}

function sameLabels(
  a: Record<string, string> | undefined,
  b: Record<string, string> | undefined,
): boolean {
  if (a === undefined || b === undefined) return a === b;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => b[k] === a[k]);
}

/**
 * A stored value as the diff compares it: canonical JSON without its
 * `deployment_revision` (kept apart), or the raw text when it is not JSON.
 */
function storedDesired(value: Uint8Array): StoredDesired {
  const text = new TextDecoder().decode(
    value.byteLength > MAX_VALUE_BYTES ? new Uint8Array() : value,
  );
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { canonical: text };
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return { canonical: canonicalJson(parsed) };
  }
  const { deployment_revision: revision, secrets, ...content } = parsed as Record<
    string,
    unknown
  >;
  const sealed = secrets === undefined ? undefined : SealedSecrets.safeParse(secrets);
  if (sealed !== undefined && !sealed.success) {
    return { canonical: canonicalJson({ ...content, secrets }) };
  }
  return {
    canonical: sealed === undefined
      ? canonicalJson(content)
      : desiredContent({ ...content, secrets: sealed.data } as DesiredState),
    ...(sealed !== undefined ? { sealing: sealingOf(sealed.data)! } : {}),
    ...(typeof revision === "number" && Number.isSafeInteger(revision) && revision > 0
      ? { deploymentRevision: revision }
      : {}),
  };
}
