/**
 * The I/O step before the host-path policy check: what the file system says
 * about bind sources and allowed prefixes. See policy.ts for the rule.
 *
 * @module
 */

import type { HostPathFact } from "./policy.ts";

/**
 * Resolves `paths` with `realPath` (default `Deno.realPath`): the I/O step
 * before `checkPolicy`. Never throws: every failure is a fact the
 * check turns into a message (a missing Deno read permission included, so a
 * narrow `--allow-read` fails the deployment, not the agent).
 */
export async function resolveHostPaths(
  paths: Iterable<string>,
  realPath: (path: string) => Promise<string> = Deno.realPath,
): Promise<Map<string, HostPathFact>> {
  const out = new Map<string, HostPathFact>();
  await Promise.all([...paths].map(async (path) => {
    try {
      out.set(path, { kind: "resolved", realPath: await realPath(path) });
    } catch (err) {
      out.set(path, hostPathProblem(err));
    }
  }));
  return out;
}

function hostPathProblem(err: unknown): HostPathFact {
  if (err instanceof Deno.errors.NotFound) return { kind: "missing" };
  if (err instanceof Deno.errors.NotCapable) return { kind: "no-permission" };
  return { kind: "unreadable", error: err instanceof Error ? err.message : String(err) };
}
