/**
 * The offline cache: the last desired state the agent saw, kept in
 * `state_dir` so that after a reboot without NATS the device keeps running
 * what it was told to run.
 *
 * Written atomically (temp file, fsync, rename, fsync of the directory), so a
 * power cut leaves either the old or the new file. A corrupt or foreign cache
 * is reported and ignored, never fatal.
 *
 * @module
 */

import { z } from "zod";
import { DesiredState, formatZodIssues } from "@drover/contracts";
import type { DesiredEntry } from "./reconcile/desired.ts";

/** File name of the cache inside `state_dir`. */
export const CACHE_FILE_NAME = "desired-cache.json";

/** Format version written into the cache file. */
export const CACHE_FORMAT_VERSION = 1;

const CachedEntry = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("valid"),
    deployment: z.string(),
    revision: z.number().int().nonnegative(),
    // Re-validated on load against the current schema, see entryFromCache.
    state: z.unknown(),
  }),
  z.object({
    kind: z.literal("invalid"),
    deployment: z.string(),
    revision: z.number().int().nonnegative(),
    error: z.string(),
  }),
]);

const CacheFile = z.object({
  format: z.literal(CACHE_FORMAT_VERSION),
  device_id: z.string(),
  saved_at: z.string(),
  entries: z.array(CachedEntry),
});

/** Outcome of {@linkcode loadDesiredCache}. */
export type CacheLoad =
  | { kind: "loaded"; entries: Map<string, DesiredEntry>; savedAt: string }
  | { kind: "absent" }
  | { kind: "unusable"; reason: string };

/** Path of the cache file for `stateDir`. */
export function cachePath(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, "")}/${CACHE_FILE_NAME}`;
}

/** Serialises entries to the cache file's text. Pure. */
export function encodeCache(
  deviceId: string,
  entries: Iterable<DesiredEntry>,
  now: Date = new Date(),
): string {
  const sorted = [...entries].sort((a, b) => a.deployment.localeCompare(b.deployment));
  return JSON.stringify({
    format: CACHE_FORMAT_VERSION,
    device_id: deviceId,
    saved_at: now.toISOString(),
    entries: sorted,
  }) + "\n";
}

/**
 * Parses the cache file's text. Pure; never throws. A cache written for
 * another device id is unusable (the config changed under it).
 */
export function decodeCache(deviceId: string, text: string): CacheLoad {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { kind: "unusable", reason: `invalid JSON: ${(e as Error).message}` };
  }
  const parsed = CacheFile.safeParse(json);
  if (!parsed.success) {
    return { kind: "unusable", reason: formatZodIssues(parsed.error).replaceAll("\n", "; ") };
  }
  if (parsed.data.device_id !== deviceId) {
    return {
      kind: "unusable",
      reason: `it belongs to device ${JSON.stringify(parsed.data.device_id)}, not ${
        JSON.stringify(deviceId)
      }`,
    };
  }
  const entries = new Map<string, DesiredEntry>();
  for (const cached of parsed.data.entries) entries.set(cached.deployment, entryFromCache(cached));
  return { kind: "loaded", entries, savedAt: parsed.data.saved_at };
}

/**
 * A cached valid entry is checked again: a newer agent may validate more
 * strictly than the one that wrote it. If it no longer passes it becomes an
 * invalid entry (failed, but still listed so nothing is removed for it).
 */
function entryFromCache(cached: z.infer<typeof CachedEntry>): DesiredEntry {
  if (cached.kind === "invalid") return cached;
  const state = DesiredState.safeParse(cached.state);
  if (state.success && state.data.deployment === cached.deployment) {
    return {
      kind: "valid",
      deployment: cached.deployment,
      revision: cached.revision,
      state: state.data,
    };
  }
  return {
    kind: "invalid",
    deployment: cached.deployment,
    revision: cached.revision,
    error: state.success
      ? `cached value names deployment ${JSON.stringify(state.data.deployment)}`
      : `cached value is no longer valid: ${formatZodIssues(state.error).replaceAll("\n", "; ")}`,
  };
}

/** Reads the cache of `deviceId` from `stateDir`. Never throws. */
export async function loadDesiredCache(stateDir: string, deviceId: string): Promise<CacheLoad> {
  let text: string;
  try {
    text = await Deno.readTextFile(cachePath(stateDir));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { kind: "absent" };
    return { kind: "unusable", reason: `cannot read it: ${(e as Error).message}` };
  }
  return decodeCache(deviceId, text);
}

/** The cache could not be written. */
export class CacheWriteError extends Error {
  override name = "CacheWriteError";
  /** The cache file. */
  readonly path: string;
  constructor(path: string, options?: ErrorOptions) {
    super(
      `Cannot write desired-state cache ${path}: ${
        (options?.cause as Error)?.message ?? "unknown"
      }`,
      options,
    );
    this.path = path;
  }
}

/**
 * Writes the cache atomically: a temp file in the same directory, fsync,
 * rename over the old file, fsync of the directory so the rename survives
 * a power cut.
 *
 * @throws {CacheWriteError}
 */
export async function saveDesiredCache(
  stateDir: string,
  deviceId: string,
  entries: Iterable<DesiredEntry>,
): Promise<void> {
  const path = cachePath(stateDir);
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    await Deno.mkdir(stateDir, { recursive: true });
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      const data = new TextEncoder().encode(encodeCache(deviceId, entries));
      let written = 0;
      while (written < data.length) written += await file.write(data.subarray(written));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
    await syncDirectory(stateDir);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new CacheWriteError(path, { cause: e });
  }
}

/** fsync of a directory; best effort (not every filesystem allows opening one). */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await Deno.open(dir, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  } catch {
    // The rename itself is atomic; losing it on power loss only means an older cache.
  }
}
