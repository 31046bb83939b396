/**
 * The operator's in-memory picture of the three buckets, fed by KV entries
 * (from watches or snapshots) and by its own writes. No I/O.
 *
 * Each setter says whether the change can alter targeting, so a heartbeat
 * from 5 000 devices does not trigger 5 000 reconcile passes.
 *
 * @module
 */

import {
  AgentStatus,
  canonicalJson,
  decodeJson,
  DeploymentManifest,
  isValidName,
  MAX_VALUE_BYTES,
} from "@drover/contracts";
import type { DesiredEntry, DeviceRecord, FleetView } from "./aggregate.ts";
import { summarise } from "./aggregate.ts";
import type { MirrorEntry } from "./kv.ts";

/** One stored manifest: valid, or the reason it is not. */
export interface ManifestRecord {
  revision: number;
  manifest?: DeploymentManifest;
  error?: string;
}

/** Decoded contents of the three buckets. */
export class FleetState {
  /** Deployment name → stored manifest. */
  readonly manifests: Map<string, ManifestRecord> = new Map();
  /** Desired-state key → stored revision and canonical value. */
  readonly desired: Map<string, DesiredEntry> = new Map();
  /** Device id → status record. */
  readonly statuses: Map<string, DeviceRecord> = new Map();
  /** Highest desired-state revision accounted for per key; older echoes are ignored. */
  readonly #desiredSeen = new Map<string, number>();

  /** Applies a `deployments` entry; true when targeting may change. */
  applyDeployment(entry: MirrorEntry): boolean {
    if (entry.operation !== "PUT") return this.manifests.delete(entry.key);
    const decoded = decodeJson(DeploymentManifest, entry.value);
    const record: ManifestRecord = decoded.ok
      ? { revision: entry.revision, manifest: decoded.value }
      : { revision: entry.revision, error: decoded.error };
    if (decoded.ok && decoded.value.name !== entry.key) {
      record.manifest = undefined;
      record.error = `name "${decoded.value.name}" does not match key "${entry.key}"`;
    }
    this.manifests.set(entry.key, record);
    return true;
  }

  /** Applies an `agent-status` entry; true when the device appeared, left or was relabelled. */
  applyStatus(entry: MirrorEntry): boolean {
    // A key that is not a device id can never be targeted (nor be a key part): skip it.
    if (!isValidName(entry.key)) return false;
    const before = this.statuses.get(entry.key);
    if (entry.operation !== "PUT") return this.statuses.delete(entry.key);
    const decoded = decodeJson(AgentStatus, entry.value);
    const seenAt = entry.created.getTime();
    let record: DeviceRecord;
    if (decoded.ok && decoded.value.device_id === entry.key) {
      record = { status: decoded.value, seenAt };
    } else {
      const error = decoded.ok
        ? `device_id "${decoded.value.device_id}" does not match key "${entry.key}"`
        : decoded.error;
      record = { error, labels: before?.status?.labels ?? before?.labels, seenAt };
    }
    this.statuses.set(entry.key, record);
    return before === undefined || !sameLabels(labelsOf(before), labelsOf(record));
  }

  /**
   * Applies a `desired-state` entry seen on the watch; true when it is news
   * (not the echo of a write this process already recorded).
   */
  applyDesired(entry: MirrorEntry): boolean {
    const seen = this.#desiredSeen.get(entry.key) ?? 0;
    if (entry.revision <= seen) return false;
    this.#desiredSeen.set(entry.key, entry.revision);
    if (entry.operation !== "PUT") return this.desired.delete(entry.key) || true;
    this.desired.set(entry.key, { revision: entry.revision, canonical: canonicalOf(entry.value) });
    return true;
  }

  /** Records this process's own put of `canonical` at `revision`. */
  recordPut(key: string, canonical: string, revision: number): void {
    if (revision <= (this.#desiredSeen.get(key) ?? 0)) return;
    this.#desiredSeen.set(key, revision);
    this.desired.set(key, { revision, canonical });
  }

  /** Records this process's own delete of `key`. */
  recordDelete(key: string): void {
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

  /** Names of deployments whose stored manifest is invalid: their keys are left alone. */
  frozenDeployments(): Set<string> {
    const out = new Set<string>();
    for (const [name, record] of this.manifests) if (!record.manifest) out.add(name);
    return out;
  }

  /** The fleet view at `now`. */
  view(now: number): FleetView {
    return summarise(this.validManifests(), this.desired, this.statuses, now);
  }
}

function labelsOf(record: DeviceRecord): Record<string, string> | undefined {
  return record.status?.labels ?? record.labels;
}

function sameLabels(
  a: Record<string, string> | undefined,
  b: Record<string, string> | undefined,
): boolean {
  if (a === undefined || b === undefined) return a === b;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => b[k] === a[k]);
}

/** Canonical JSON of a stored value; the raw text when it is not JSON. */
function canonicalOf(value: Uint8Array): string {
  const text = new TextDecoder().decode(
    value.byteLength > MAX_VALUE_BYTES ? new Uint8Array() : value,
  );
  try {
    return canonicalJson(JSON.parse(text));
  } catch {
    return text;
  }
}
