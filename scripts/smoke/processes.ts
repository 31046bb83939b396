/**
 * The Drover processes the smoke run starts — the operator service and the agent — as plain
 * child processes with their output in log files, plus one-shot CLI commands.
 *
 * @module
 */

import { appendToLogFile } from "../../tests/support/log_file.ts";

/** A smoke step's expectation did not hold; the message says what was seen instead. */
export class SmokeError extends Error {
  /** Creates the error; `cause` keeps the underlying failure. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SmokeError";
  }
}

/** How long {@linkcode Daemon.stop} waits after SIGTERM before SIGKILL. */
export const DEFAULT_STOP_GRACE_MS = 15_000;

/** Options of {@linkcode Daemon.spawn}. */
export interface DaemonOptions {
  /** Short name for messages ("agent", "operator"). */
  name: string;
  /** Program and arguments. */
  command: string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** File receiving stdout and stderr (appended, so restarts keep earlier output). */
  logPath: string;
}

/** A long-running child process whose output goes to a log file. */
export class Daemon implements AsyncDisposable {
  readonly name: string;
  readonly logPath: string;
  readonly #child: Deno.ChildProcess;
  readonly #exited: Promise<Deno.CommandStatus>;
  #running = true;

  private constructor(name: string, logPath: string, child: Deno.ChildProcess) {
    this.name = name;
    this.logPath = logPath;
    this.#child = child;
    this.#exited = (async () => {
      // Both streams into one file in arrival order, readable while the process runs.
      await appendToLogFile(logPath, [child.stdout, child.stderr]).catch(() => {});
      const status = await child.status;
      this.#running = false;
      return status;
    })();
  }

  /** Starts the process. */
  static spawn(options: DaemonOptions): Daemon {
    const [program, ...args] = options.command;
    const child = new Deno.Command(program, {
      args,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new Daemon(options.name, options.logPath, child);
  }

  /** Process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.#running;
  }

  /** Resolves with the exit status once the process has exited and its log is written. */
  get exited(): Promise<Deno.CommandStatus> {
    return this.#exited;
  }

  /** SIGTERM, wait up to `graceMs`, then SIGKILL. Resolves with how it ended. */
  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<"exited" | "killed"> {
    if (!this.#running) return "exited";
    this.#signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), graceMs);
    });
    const outcome = await Promise.race([this.#exited, timeout]);
    clearTimeout(timer);
    if (outcome !== "timeout") return "exited";
    this.#signal("SIGKILL");
    await this.#exited;
    return "killed";
  }

  /** The last `lines` lines of the log. */
  async logTail(lines = 30): Promise<string> {
    try {
      const text = (await Deno.readTextFile(this.logPath)).trimEnd();
      return text === "" ? "(empty log)" : text.split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** Stops the process (see {@linkcode Daemon.stop}). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #signal(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // Exited between the check and the signal.
    }
  }
}

/** What a finished command printed. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (stdin closed); never throws on a non-zero exit. */
export async function runCli(
  command: string[],
  env?: Record<string, string>,
  signal?: AbortSignal,
): Promise<CliResult> {
  const [program, ...args] = command;
  const output = await new Deno.Command(program, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Like {@linkcode runCli} but throws when the command exits non-zero.
 *
 * @throws {SmokeError} with the command line, exit code and output.
 */
export async function runCliChecked(
  command: string[],
  env?: Record<string, string>,
  signal?: AbortSignal,
): Promise<CliResult> {
  const result = await runCli(command, env, signal);
  // A command killed because the run was interrupted failed for that reason, not its own.
  signal?.throwIfAborted();
  if (result.code !== 0) {
    throw new SmokeError(
      `${command.join(" ")} exited with ${result.code}:\n${(result.stderr + result.stdout).trim()}`,
    );
  }
  return result;
}
