/**
 * Looking at the host for leftovers of a service: processes that reference a directory and mounts
 * below it. Linux only (reads /proc).
 *
 * @module
 */

import { runCommand } from "./_exec.ts";

/** A process found by {@linkcode processesReferencing}. */
export interface HostProcess {
  /** Process id. */
  pid: number;
  /** Its command line, arguments joined by spaces. */
  commandLine: string;
}

/**
 * Processes (other than this one) whose command line mentions `path`, e.g. conmon or a server
 * started with a config file inside a service directory.
 */
export async function processesReferencing(path: string): Promise<HostProcess[]> {
  const found: HostProcess[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    if (pid === Deno.pid) continue;
    let raw: Uint8Array;
    try {
      raw = await Deno.readFile(`/proc/${pid}/cmdline`);
    } catch {
      continue; // Exited while we were looking.
    }
    const commandLine = new TextDecoder().decode(raw).replaceAll("\0", " ").trim();
    if (mentions(commandLine, path)) found.push({ pid, commandLine });
  }
  return found;
}

// `path` itself or something inside it, not merely a longer name that starts the same way.
function mentions(commandLine: string, path: string): boolean {
  for (let at = commandLine.indexOf(path); at !== -1; at = commandLine.indexOf(path, at + 1)) {
    const next = commandLine[at + path.length];
    if (next === undefined || next === "/" || next === " ") return true;
  }
  return false;
}

/** Sends SIGKILL to each pid, ignoring ones that are already gone. */
export function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Already exited.
    }
  }
}

/** Mount points at or below `path` in this mount namespace, deepest first. */
export async function mountsUnder(path: string): Promise<string[]> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  const prefix = path.endsWith("/") ? path : `${path}/`;
  const mountPoints = text.split("\n")
    .map((line) => line.split(" ")[4])
    .filter((field): field is string => field !== undefined)
    .map(unescapeMountPath)
    .filter((mountPoint) => mountPoint === path || mountPoint.startsWith(prefix));
  return [...new Set(mountPoints)].sort((a, b) => b.length - a.length);
}

/**
 * Unmounts everything at or below `path` (lazily if a plain unmount fails) and returns what is
 * still mounted afterwards. Must run before removing a storage directory: a recursive delete would
 * otherwise walk into mounted file systems.
 */
export async function unmountAllUnder(path: string): Promise<string[]> {
  for (const mountPoint of await mountsUnder(path)) {
    const plain = await runCommand("umount", [mountPoint]);
    if (plain.code !== 0) await runCommand("umount", ["--lazy", mountPoint]);
  }
  return await mountsUnder(path);
}

// mountinfo escapes space, tab, newline and backslash as \ooo octal.
function unescapeMountPath(field: string): string {
  return field.replace(
    /\\([0-7]{3})/g,
    (_, octal: string) => String.fromCharCode(parseInt(octal, 8)),
  );
}
