/**
 * A {@linkcode CliIo} for tests that run commands in-process: output
 * captured, the environment only the given map.
 *
 * @module
 */

import type { CliIo } from "./cli.ts";

/** Captures output; the environment is the given map only; `cwd` is the user's directory. */
export function captureIo(env: Record<string, string> = {}, cwd?: string) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = {
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    env: (name) => env[name],
    isTerminal: false,
    signal: new AbortController().signal,
    ...(cwd !== undefined ? { cwd } : {}),
  };
  return { io, out: () => out.join(""), err: () => err.join("") };
}
