/**
 * The on-disk layout of self-update under `<state_dir>/agent`, shared with the
 * launcher (systemd/drover-agent-launch, plain sh) that reads it before every
 * start:
 *
 * - `versions/<version>/drover-agent` (executable) or `drover-agent.bundle.js`
 *   (bundle): staged releases; at most the running one and one new one.
 * - `current`: the release to start, one line; absent = the installed agent
 *   (`factory`). Replaced by rename, so a power cut leaves the old or the new
 *   name, never half of one. (A file rather than a symlink: the agent's Deno
 *   permissions are scoped to its state dir, and `Deno.symlink` needs
 *   unscoped read and write permissions; a rename is just as atomic.)
 * - `trial`: `<version> <previous> <starts>` while a new release is on trial.
 *   The launcher counts starts in it, as systemd-boot counts boots, and after
 *   too many switches `current` back to `<previous>` and writes `rolled-back`.
 * - `trial-failure`: why the release on trial gave up (it writes this before
 *   exiting), used as the reason in `rolled-back`.
 * - `rolled-back`: `<version> <reason>` of the last release that was rolled
 *   back; the previous agent reports it and never tries that version again.
 * - `download/<version>-<arch>.part`: the one download in progress.
 *
 * Pure helpers plus small atomic file operations.
 *
 * @module
 */

/** The name the installed (not updated) agent goes by. */
export const FACTORY_RELEASE = "factory";

/** Paths of the update directory. */
export interface UpdatePaths {
  dir: string;
  versions: string;
  download: string;
  current: string;
  trial: string;
  trialFailure: string;
  rolledBack: string;
}

/** The update directory of an agent whose state dir is `stateDir`. */
export function updatePaths(stateDir: string): UpdatePaths {
  const dir = `${stateDir.replace(/\/+$/, "")}/agent`;
  return {
    dir,
    versions: `${dir}/versions`,
    download: `${dir}/download`,
    current: `${dir}/current`,
    trial: `${dir}/trial`,
    trialFailure: `${dir}/trial-failure`,
    rolledBack: `${dir}/rolled-back`,
  };
}

/** A release on trial. */
export interface TrialMarker {
  version: string;
  /** The release to go back to, or `factory`. */
  previous: string;
  /** Starts counted so far by the launcher. */
  starts: number;
}

/** Parses a `trial` file (pure); undefined when it is not one. */
export function parseTrial(text: string): TrialMarker | undefined {
  const [version, previous, starts] = text.trim().split(/\s+/);
  if (!version || !previous || !/^[0-9]+$/.test(starts ?? "")) return undefined;
  return { version, previous, starts: Number(starts) };
}

/** A `trial` file's text (pure). */
export function formatTrial(marker: TrialMarker): string {
  return `${marker.version} ${marker.previous} ${marker.starts}\n`;
}

/** A rolled-back release and why. */
export interface RolledBack {
  version: string;
  reason: string;
}

/** Parses a `rolled-back` file (pure). */
export function parseRolledBack(text: string): RolledBack | undefined {
  const line = text.trim();
  const space = line.indexOf(" ");
  if (line === "") return undefined;
  return space < 0
    ? { version: line, reason: "rolled back" }
    : { version: line.slice(0, space), reason: line.slice(space + 1).trim() || "rolled back" };
}

/** Reads a small text file; undefined when it does not exist. */
export async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Writes `text` to `path` durably: temp file, fsync, rename, fsync of the directory. */
export async function writeDurable(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  {
    using file = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    await file.write(new TextEncoder().encode(text));
    await file.sync();
  }
  await Deno.rename(tmp, path);
  await syncDir(path.slice(0, path.lastIndexOf("/")));
}

/** Removes `path` durably (absent is fine). */
export async function removeDurable(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  await syncDir(path.slice(0, path.lastIndexOf("/")));
}

/** fsync of a directory, so a rename in it survives a power cut. */
export async function syncDir(dir: string): Promise<void> {
  try {
    using d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // Some file systems refuse fsync on directories; the rename is still atomic.
  }
}
