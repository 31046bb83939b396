/**
 * Service directories that record which test process owns them, so state abandoned by a test
 * process that died hard (SIGKILL, OOM) can be found and cleaned up by the next run.
 *
 * Ownership is an exclusive `flock` on `DIR/owner.lock`, held for the life of the service. The
 * kernel drops it when the owner dies, so "lock is free" means "abandoned", without pid reuse
 * races. The lock file is locked under a temporary name and then renamed into place, so no one
 * can see an unlocked `owner.lock` of a live service.
 *
 * @module
 */

/** Prefix of every service directory the harness creates under the temp dir. */
export const OWNED_DIR_PREFIX = "drover-";
const OWNER_LOCK = "owner.lock";

/** A service directory owned by this process. */
export interface OwnedDir {
  /** Absolute path of the directory. */
  readonly path: string;
  /** Removes the directory and gives up ownership. Idempotent. */
  remove(): Promise<void>;
}

/** The directory temp dirs are created in (what `Deno.makeTempDir` uses). */
export function tempRoot(): string {
  return Deno.env.get("TMPDIR") ?? "/tmp";
}

/** Creates `<tmp>/drover-<kind>-XXXX` and takes ownership of it. */
export async function createOwnedDir(kind: string): Promise<OwnedDir> {
  const path = await Deno.makeTempDir({ dir: tempRoot(), prefix: `${OWNED_DIR_PREFIX}${kind}-` });
  const pending = `${path}/${OWNER_LOCK}.pending`;
  const lock = await Deno.open(pending, { create: true, write: true });
  await lock.lock(true);
  await Deno.rename(pending, `${path}/${OWNER_LOCK}`);
  let removed = false;
  return {
    path,
    async remove() {
      if (removed) return;
      removed = true;
      await Deno.remove(path, { recursive: true }).catch(ignoreNotFound);
      lock.close(); // Closing releases the flock.
    },
  };
}

/**
 * Cleans up `<tmp>/drover-<kind>-*` directories whose owner process is gone: runs `cleanup` on
 * each (e.g. kill its processes, unmount) and removes it. Directories of live owners, including
 * ones in this process, are left alone. Failures are reported on stderr, never thrown: sweeping is
 * a courtesy to the next run, not part of the test.
 */
export async function sweepAbandonedDirs(
  kind: string,
  cleanup: (path: string) => Promise<void>,
): Promise<void> {
  const prefix = `${OWNED_DIR_PREFIX}${kind}-`;
  for await (const entry of Deno.readDir(tempRoot())) {
    if (!entry.isDirectory || !entry.name.startsWith(prefix)) continue;
    const path = `${tempRoot()}/${entry.name}`;
    let lock: Deno.FsFile;
    try {
      lock = await Deno.open(`${path}/${OWNER_LOCK}`, { write: true });
    } catch {
      continue; // Being created right now, or not ours.
    }
    try {
      // Holding the lock also keeps a concurrent sweeper off this directory.
      if (!(await lock.tryLock(true))) continue;
      await cleanup(path);
      await Deno.remove(path, { recursive: true });
    } catch (error) {
      console.error(`drover test harness: could not clean up abandoned ${path}: ${error}`);
    } finally {
      lock.close();
    }
  }
}

function ignoreNotFound(error: unknown): void {
  if (!(error instanceof Deno.errors.NotFound)) throw error;
}
