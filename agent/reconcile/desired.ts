/**
 * What the NATS side hands to the reconciler: per deployment, either a valid
 * desired state or the reason the value from KV was rejected.
 *
 * @module
 */

import type { DesiredState } from "@drover/contracts";

/** One deployment's desired state as read from KV (or the offline cache). */
export type DesiredEntry =
  | { kind: "valid"; deployment: string; revision: number; state: DesiredState }
  | { kind: "invalid"; deployment: string; revision: number; error: string };

/**
 * Where desired state comes from. `authoritative` is false when it comes from
 * a partial view (no cache, NATS unreachable): then deployments that are not
 * listed are left alone instead of removed.
 */
export interface DesiredSnapshot {
  entries: Map<string, DesiredEntry>;
  authoritative: boolean;
}
