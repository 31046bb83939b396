/**
 * File facts the tests, the benchmarks and the build scripts ask about.
 *
 * @module
 */

/**
 * True when something exists at `path` (a dangling symlink counts as missing); false when it
 * does not. Any other error (no permission to look) is thrown, not taken for "missing".
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
