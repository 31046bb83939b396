/**
 * What one record of this device's `desired-state` keys means for the device,
 * and where decoded desired state goes. Pure.
 *
 * @module
 */

import { decodeJson, DesiredState, parseDesiredStateKey } from "@drover/contracts";
import type { DesiredEntry } from "../reconcile/desired.ts";

/** Where decoded desired state goes (the reconciler and the cache). */
export interface DesiredSink {
  /** The complete, authoritative set of this device's deployments. */
  snapshot(entries: Map<string, DesiredEntry>): void;
  /** One deployment changed after the snapshot; `null` means deleted. */
  update(deployment: string, entry: DesiredEntry | null): void;
}

/** One KV record: the last message of a key (a direct get) or a live change. */
export interface KvRecord {
  key: string;
  revision: number;
  operation: "PUT" | "DEL" | "PURGE";
  value: Uint8Array;
}

/** What one record means for the device. Pure. */
export type RecordMeaning =
  | { kind: "entry"; deployment: string; entry: DesiredEntry }
  | { kind: "deleted"; deployment: string }
  | { kind: "ignored"; reason: string };

/**
 * Decodes one record of this device's keys: a valid desired state, an
 * invalid one (with the reason — this fails that deployment only), or a
 * deletion. Keys that do not name one of this device's deployments are
 * ignored with a reason. Pure.
 */
export function interpretRecord(deviceId: string, record: KvRecord): RecordMeaning {
  let deployment: string;
  try {
    const key = parseDesiredStateKey(record.key);
    if (key.device !== deviceId) {
      return { kind: "ignored", reason: `key belongs to device ${JSON.stringify(key.device)}` };
    }
    deployment = key.deployment;
  } catch (e) {
    return { kind: "ignored", reason: (e as Error).message };
  }
  if (record.operation !== "PUT") return { kind: "deleted", deployment };
  const decoded = decodeJson(DesiredState, record.value);
  if (!decoded.ok) {
    return {
      kind: "entry",
      deployment,
      entry: { kind: "invalid", deployment, revision: record.revision, error: decoded.error },
    };
  }
  if (decoded.value.deployment !== deployment) {
    return {
      kind: "entry",
      deployment,
      entry: {
        kind: "invalid",
        deployment,
        revision: record.revision,
        error: `deployment: value names ${JSON.stringify(decoded.value.deployment)} but the key ${
          JSON.stringify(record.key)
        } is for ${JSON.stringify(deployment)}`,
      },
    };
  }
  return {
    kind: "entry",
    deployment,
    entry: { kind: "valid", deployment, revision: record.revision, state: decoded.value },
  };
}
