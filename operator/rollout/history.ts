/**
 * Revision history: every revision of every deployment, kept in
 * `deployment-history/<deployment>.<revision>` with its manifest, when it
 * was stored and a one-line summary of what changed, so any earlier one can
 * be restored (`rollout undo --to-revision N`). The summary is pure; the
 * reads and writes are small KV helpers.
 *
 * @module
 */

import type { KV } from "@nats-io/kv";
import { z } from "zod";
import {
  canonicalJson,
  decodeJson,
  DeploymentManifest,
  historyFilter,
  historyKey,
  Name,
  type PodmanService,
} from "@drover/contracts";

/** One stored revision of a deployment. */
export const HistoryEntry = z.object({
  deployment: Name,
  /** The manifest's revision in `deployments`. */
  revision: z.int().positive(),
  manifest: DeploymentManifest,
  /** When the revision was stored (RFC 3339). */
  created_at: z.iso.datetime(),
  /** What changed against the revision before it, in one line. */
  summary: z.string(),
  /**
   * How this revision's rollout ended (`complete`, `rolled_back`, `failed`),
   * recorded when it ends, so the history keeps it after newer revisions;
   * absent while it runs or before it ended.
   */
  outcome: z.enum(["complete", "rolled_back", "failed"]).optional(),
});
/** One stored revision of a deployment. */
export type HistoryEntry = z.infer<typeof HistoryEntry>;

/** At most this many characters of a summary. */
export const SUMMARY_MAX_CHARS = 200;

/**
 * One line saying what `next` changes against `previous` (undefined: the
 * first revision), e.g. `web: image nginx:1.25 → nginx:1.27`. Pure.
 */
export function changeSummary(
  previous: DeploymentManifest | undefined,
  next: DeploymentManifest,
): string {
  const images = (m: DeploymentManifest) =>
    m.score.services.map((s) => `${s.name}=${s.image}`).join(", ");
  if (previous === undefined) return clip(`created: ${images(next)}`);
  const parts: string[] = [];
  const before = new Map(previous.score.services.map((s) => [s.name, s]));
  const after = new Map(next.score.services.map((s) => [s.name, s]));
  for (const [name, service] of after) {
    const old = before.get(name);
    if (old === undefined) {
      parts.push(`+${name} (${service.image})`);
      continue;
    }
    const changes: string[] = [];
    if (old.image !== service.image) changes.push(`image ${old.image} → ${service.image}`);
    const others = changedFields(old, service).filter((f) => f !== "image");
    if (others.length > 0) {
      const keys = others.includes("env") ? ` (env ${envKeyChanges(old.env, service.env)})` : "";
      changes.push(`${others.join(", ")} changed${keys}`);
    }
    if (changes.length > 0) parts.push(`${name}: ${changes.join("; ")}`);
  }
  for (const name of before.keys()) if (!after.has(name)) parts.push(`-${name}`);
  for (const [name, version] of Object.entries(next.secret_versions ?? {})) {
    // The version, never the value: history is read by every operator-account client.
    if (previous.secret_versions?.[name] !== version) parts.push(`secret ${name} v${version}`);
  }
  const configs = new Set([
    ...Object.keys(previous.score.configs ?? {}),
    ...Object.keys(next.score.configs ?? {}),
  ]);
  for (const name of [...configs].sort()) {
    const before = previous.score.configs?.[name]?.content;
    const after = next.score.configs?.[name]?.content;
    if (before !== after) {
      parts.push(
        before === undefined
          ? `+config ${name}`
          : after === undefined
          ? `-config ${name}`
          : `config ${name} changed`,
      );
    }
  }
  if (canonicalJson(previous.selector) !== canonicalJson(next.selector)) {
    parts.push("selector changed");
  }
  if (canonicalJson(previous.rollout ?? null) !== canonicalJson(next.rollout ?? null)) {
    parts.push(
      previous.rollout === undefined
        ? "rollout added"
        : next.rollout === undefined
        ? "rollout removed (every device at once)"
        : "rollout changed",
    );
  }
  if (previous.source !== next.source) {
    parts.push(`source ${previous.source ?? "(none)"} → ${next.source ?? "(none)"}`);
  }
  return clip(parts.length === 0 ? "no change" : parts.join("; "));
}

/** `+ADDED ~CHANGED -REMOVED` environment variable names, each sorted. Pure. */
function envKeyChanges(
  before: Record<string, string> | undefined = {},
  after: Record<string, string> | undefined = {},
): string {
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  const has = (env: Record<string, string>, k: string) => Object.hasOwn(env, k);
  const added = names.filter((k) => !has(before, k)).map((k) => `+${k}`);
  const changed = names.filter((k) => has(before, k) && has(after, k) && before[k] !== after[k])
    .map((k) => `~${k}`);
  const removed = names.filter((k) => !has(after, k)).map((k) => `-${k}`);
  return [...added, ...changed, ...removed].join(" ");
}

function changedFields(a: PodmanService, b: PodmanService): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof PodmanService>;
  return [...keys].filter((k) => canonicalJson(a[k] ?? null) !== canonicalJson(b[k] ?? null))
    .sort();
}

function clip(text: string): string {
  return text.length <= SUMMARY_MAX_CHARS ? text : `${text.slice(0, SUMMARY_MAX_CHARS - 1)}…`;
}

/** The entry for `revision` of `manifest`, its summary against `previous`. Pure. */
export function historyEntry(
  manifest: DeploymentManifest,
  revision: number,
  previous: DeploymentManifest | undefined,
  now: Date,
  prefix = "",
): HistoryEntry {
  return {
    deployment: manifest.name,
    revision,
    manifest,
    created_at: now.toISOString(),
    summary: clip(prefix + changeSummary(previous, manifest)),
  };
}

/**
 * Stores `entry` unless its revision is already stored (the CLI and the
 * operator may both record it; the first one stays), or, with `replace`,
 * whatever is stored. True when written.
 */
export async function recordRevision(
  kv: KV,
  entry: HistoryEntry,
  options: { replace?: boolean } = {},
): Promise<boolean> {
  try {
    const key = historyKey(entry.deployment, entry.revision);
    // `replace`: the writer knows more than the operator's fill-in (e.g. that the
    // revision is an undo) and may land after it.
    if (options.replace) await kv.put(key, canonicalJson(entry));
    else await kv.create(key, canonicalJson(entry));
    return true;
  } catch (e) {
    // "wrong last sequence": the key exists, which is all this wants.
    if (/wrong last sequence|key exists/i.test((e as Error).message)) return false;
    throw e;
  }
}

/**
 * Records how the rollout of `revision` ended on its stored history entry:
 * read and compare-and-set, so a summary written meanwhile (an undo or a
 * retry says what it is) is kept. Returns the entry as stored, or undefined
 * when there is none (or it kept changing).
 */
export async function recordOutcome(
  kv: KV,
  deployment: string,
  revision: number,
  outcome: NonNullable<HistoryEntry["outcome"]>,
): Promise<HistoryEntry | undefined> {
  const key = historyKey(deployment, revision);
  for (let attempt = 0; attempt < 5; attempt++) {
    const stored = await kv.get(key);
    if (stored === null || stored.operation !== "PUT") return undefined;
    const decoded = decodeJson(HistoryEntry, stored.value);
    if (!decoded.ok) return undefined;
    if (decoded.value.outcome === outcome) return decoded.value;
    const next = { ...decoded.value, outcome };
    try {
      await kv.update(key, canonicalJson(next), stored.revision);
      return next;
    } catch (e) {
      if (!/wrong last sequence/i.test((e as Error).message)) throw e;
    }
  }
  return undefined;
}

/** Reads one stored revision, or undefined. */
export async function readRevision(
  kv: KV,
  deployment: string,
  revision: number,
): Promise<HistoryEntry | undefined> {
  const entry = await kv.get(historyKey(deployment, revision));
  if (entry === null || entry.operation !== "PUT") return undefined;
  const decoded = decodeJson(HistoryEntry, entry.value);
  return decoded.ok ? decoded.value : undefined;
}

/** Every stored revision of one deployment, oldest first. */
export async function readHistory(kv: KV, deployment: string): Promise<HistoryEntry[]> {
  const out: HistoryEntry[] = [];
  const keys: string[] = [];
  for await (const key of await kv.keys(historyFilter(deployment))) keys.push(key);
  for (const key of keys) {
    const revision = Number(key.slice(deployment.length + 1));
    if (!Number.isSafeInteger(revision)) continue;
    const entry = await readRevision(kv, deployment, revision);
    if (entry !== undefined) out.push(entry);
  }
  return out.sort((a, b) => a.revision - b.revision);
}
