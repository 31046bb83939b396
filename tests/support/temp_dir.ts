/**
 * Temporary directories removed with `await using`.
 *
 * @module
 */

/** A temporary directory that is removed (recursively) when disposed. */
export interface TempDir extends AsyncDisposable {
  /** Absolute path of the directory. */
  readonly path: string;
}

/**
 * Creates a fresh directory under the system temp dir (`TMPDIR` or /tmp).
 *
 * @example
 * ```ts
 * await using dir = await tempDir("agent-state-");
 * await Deno.writeTextFile(`${dir.path}/agent.toml`, config);
 * ```
 */
export async function tempDir(prefix = "drover-test-"): Promise<TempDir> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    },
  };
}
