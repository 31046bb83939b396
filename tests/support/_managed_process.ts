/**
 * Long-running child processes (servers) whose output goes to a log file, with a graceful stop
 * that falls back to SIGKILL, and a last-resort kill when the test process exits.
 *
 * @module
 */

import { TIMED_OUT, withinMs } from "@drover/common";
import { HarnessError } from "./errors.ts";
import { appendToLogFile } from "./log_file.ts";
import { waitFor } from "./wait_for.ts";

/** How long {@linkcode ManagedProcess.stop} waits after SIGTERM before sending SIGKILL. */
export const DEFAULT_STOP_GRACE_MS = 10_000;

// Children still running; killed when this process unloads so a test that forgets cleanup (or an
// uncaught error) does not leave servers behind. Abandoned state from harder crashes is swept by
// `sweepAbandonedDirs` instead.
const liveChildren = new Set<Deno.ChildProcess>();
globalThis.addEventListener("unload", () => {
  for (const child of liveChildren) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
});

/** Options of {@linkcode ManagedProcess.spawn}. */
export interface SpawnOptions {
  /** Program to run. */
  command: string;
  /** Its arguments. */
  args: string[];
  /** Extra environment variables. */
  env?: Record<string, string> | undefined;
  /** Working directory (default: this process's). */
  cwd?: string | undefined;
  /** File that receives stdout and stderr (appended, so restarts keep earlier output). */
  logPath: string;
}

/** A running process started by the harness (a server, the agent, the operator service). */
export class ManagedProcess implements AsyncDisposable {
  /** The file receiving its stdout and stderr. */
  readonly logPath: string;
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<Deno.CommandStatus>;
  #running = true;

  private constructor(
    child: Deno.ChildProcess,
    done: Promise<Deno.CommandStatus>,
    logPath: string,
  ) {
    this.#child = child;
    this.#done = done;
    this.logPath = logPath;
    done.then(() => this.#running = false);
  }

  /**
   * Starts the process with its output appended to `logPath`. Synchronous, so a harness can
   * hand out a started process without an `await`.
   */
  static spawn(options: SpawnOptions): ManagedProcess {
    // Fail before starting anything when the log cannot be written.
    Deno.openSync(options.logPath, { create: true, append: true }).close();
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(options.command, {
        args: options.args,
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        ...(options.env !== undefined ? { env: options.env } : {}),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new HarnessError(
          `Cannot start ${options.command}: it is not installed (run: bash scripts/prereqs.sh)`,
          { cause: error },
        );
      }
      throw error;
    }
    liveChildren.add(child);
    // Readable while the process runs; the file is closed when its streams end (at exit).
    const piped = appendToLogFile(options.logPath, [child.stdout, child.stderr]).catch(() => {});
    const done = child.status.then(async (status) => {
      liveChildren.delete(child);
      await piped;
      return status;
    });
    return new ManagedProcess(child, done, options.logPath);
  }

  /** Process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.#running;
  }

  /** Resolves with the exit status once the process has exited and its log is flushed. */
  get exited(): Promise<Deno.CommandStatus> {
    return this.#done;
  }

  /**
   * Sends SIGTERM, waits up to `graceMs`, then SIGKILL; resolves when the process is gone,
   * saying whether it had to be killed.
   */
  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<"exited" | "killed"> {
    if (!this.#running) return "exited";
    this.#signal("SIGTERM");
    if (await withinMs(this.#done, graceMs) !== TIMED_OUT) return "exited";
    await this.kill();
    return "killed";
  }

  /** Sends SIGKILL (a crash, as far as the program can tell); resolves when the process is gone. */
  async kill(): Promise<void> {
    if (!this.#running) return;
    this.#signal("SIGKILL");
    await this.#done;
  }

  /** Everything it wrote so far ("" when the log is missing). */
  async logs(): Promise<string> {
    try {
      return await Deno.readTextFile(this.logPath);
    } catch {
      return "";
    }
  }

  /** The last `lines` lines of its log (see {@linkcode logTail}). */
  logTail(lines = 40): Promise<string> {
    return logTail(this.logPath, lines);
  }

  /** Stops it (see {@linkcode ManagedProcess.stop}). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #signal(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // The process exited between the check and the signal: nothing left to stop.
    }
  }
}

/**
 * Polls `isReady` until it returns true, failing fast if `process` exits first.
 *
 * @throws {WaitTimeoutError} on timeout, or an Error saying the process exited.
 */
export async function waitUntilReady(
  process: ManagedProcess,
  isReady: () => Promise<boolean>,
  options: { timeoutMs: number; message: string },
): Promise<void> {
  const exitedEarly = new AbortController();
  process.exited.then((status) =>
    exitedEarly.abort(new Error(`process exited with code ${status.code} before being ready`))
  );
  await waitFor(isReady, { ...options, intervalMs: 50, signal: exitedEarly.signal });
}

/** The last `lines` lines of a log file ("(no log output)" when it is missing or empty). */
export async function logTail(path: string, lines = 40): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    const tail = text.trimEnd().split("\n").slice(-lines).join("\n");
    return tail === "" ? "(no log output)" : tail;
  } catch {
    return "(no log output)";
  }
}
