/**
 * Where rollouts live in NATS: the `rollouts`, `deployment-history` and
 * `operator-leases` buckets (operator-only: in the operator's account, which
 * devices cannot reach), an in-memory book of their decoded contents fed by
 * watches and by this process's own writes, and compare-and-set writes of a
 * rollout state.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import {
  BUCKET_DEPLOYMENT_HISTORY,
  BUCKET_OPERATOR_LEASES,
  BUCKET_ROLLOUTS,
  canonicalJson,
  decodeJson,
  type DeploymentManifest,
  isValidName,
  rolloutKey,
} from "@drover/contracts";
import {
  type BucketSettings,
  inheritedSettings,
  openBucket,
  retryWhileRecovering,
} from "../nats/kv.ts";
import type { MirrorEntry } from "../nats/kv.ts";
import { HistoryEntry } from "./history.ts";
import { RolloutState } from "./state.ts";

/** The operator-only buckets of rollouts. */
export interface RolloutBuckets {
  /** `<deployment>` → {@linkcode RolloutState}. */
  rollouts: KV;
  /** `<deployment>.<revision>` → {@linkcode HistoryEntry}. */
  history: KV;
  /** `serve` → the lease of the active `operator serve`. */
  leases: KV;
}

/** Opens the rollout buckets, creating the missing ones. */
export async function ensureRolloutBuckets(
  nc: NatsConnection,
  given?: BucketSettings,
): Promise<RolloutBuckets> {
  // A CLI command that creates them takes the replicas the operator chose for the others.
  const settings = given ?? await inheritedSettings(nc);
  // Every revision is its own history key, written once: one value per key is all there is.
  const [rollouts, history, leases] = await Promise.all([
    retryWhileRecovering(() => openBucket(nc, BUCKET_ROLLOUTS, settings)),
    retryWhileRecovering(() =>
      openBucket(nc, BUCKET_DEPLOYMENT_HISTORY, { ...settings, history: 1 })
    ),
    retryWhileRecovering(() => openBucket(nc, BUCKET_OPERATOR_LEASES, { ...settings, history: 1 })),
  ]);
  return { rollouts: rollouts!, history: history!, leases: leases! };
}

/**
 * Writes a rollout state if the key is still at `expected` (its KV revision;
 * undefined: the key must not exist yet). Returns the new KV revision;
 * throws when someone else wrote first (`isWriteConflict` in nats/kv.ts).
 */
export async function saveRolloutState(
  kv: KV,
  state: RolloutState,
  expected: number | undefined,
): Promise<number> {
  const key = rolloutKey(state.deployment);
  const value = canonicalJson(state);
  return expected === undefined
    ? await kv.create(key, value)
    : await kv.update(key, value, expected);
}

/** A stored rollout state: decoded, or why it could not be. */
export interface RolloutRecord {
  /** KV revision of the stored value (what a compare-and-set names). */
  kvRevision: number;
  state?: RolloutState;
  error?: string;
}

/** Decoded contents of the `rollouts` and `deployment-history` buckets. No I/O. */
export class RolloutBook {
  /** Deployment name → its stored rollout state. */
  readonly rollouts: Map<string, RolloutRecord> = new Map();
  /** Deployment name → revision → stored history entry. */
  readonly history: Map<string, Map<number, HistoryEntry>> = new Map();

  /** Applies a `rollouts` entry (watch or snapshot); true when it is news. */
  applyRollout(entry: MirrorEntry): boolean {
    if (!isValidName(entry.key)) return false;
    const before = this.rollouts.get(entry.key);
    if (before !== undefined && entry.revision <= before.kvRevision) return false;
    if (entry.operation !== "PUT") return this.rollouts.delete(entry.key);
    const decoded = decodeJson(RolloutState, entry.value);
    this.rollouts.set(
      entry.key,
      decoded.ok && decoded.value.deployment === entry.key
        ? { kvRevision: entry.revision, state: decoded.value }
        : {
          kvRevision: entry.revision,
          error: decoded.ok ? `deployment does not match key "${entry.key}"` : decoded.error,
        },
    );
    return true;
  }

  /** Records this process's own write of `state` at `kvRevision`. */
  recordRollout(state: RolloutState, kvRevision: number): void {
    const before = this.rollouts.get(state.deployment);
    if (before !== undefined && kvRevision <= before.kvRevision) return;
    this.rollouts.set(state.deployment, { kvRevision, state });
  }

  /** Applies a `deployment-history` entry; true when it added or removed a revision. */
  applyHistory(entry: MirrorEntry): boolean {
    const dot = entry.key.lastIndexOf(".");
    const name = entry.key.slice(0, dot);
    const revision = Number(entry.key.slice(dot + 1));
    if (dot < 0 || !isValidName(name) || !Number.isSafeInteger(revision)) return false;
    if (entry.operation !== "PUT") return this.history.get(name)?.delete(revision) ?? false;
    const decoded = decodeJson(HistoryEntry, entry.value);
    if (!decoded.ok || decoded.value.deployment !== name || decoded.value.revision !== revision) {
      return false;
    }
    this.recordHistory(decoded.value);
    return true;
  }

  /** Records a history entry (this process's own write, or one read back). */
  recordHistory(entry: HistoryEntry): void {
    let revisions = this.history.get(entry.deployment);
    if (revisions === undefined) this.history.set(entry.deployment, revisions = new Map());
    revisions.set(entry.revision, entry);
  }

  /** The stored manifest of one revision, if the history holds it. */
  manifestAt(deployment: string, revision: number): DeploymentManifest | undefined {
    return this.history.get(deployment)?.get(revision)?.manifest;
  }

  /** The latest revision before `revision` that the history holds. */
  previousEntry(deployment: string, revision: number): HistoryEntry | undefined {
    let best: HistoryEntry | undefined;
    for (const [r, entry] of this.history.get(deployment) ?? []) {
      if (r < revision && (best === undefined || r > best.revision)) best = entry;
    }
    return best;
  }

  /** Deployment name → its valid stored rollout state. */
  states(): Map<string, RolloutState> {
    const out = new Map<string, RolloutState>();
    for (const [name, record] of this.rollouts) if (record.state) out.set(name, record.state);
    return out;
  }
}
