/**
 * Child processes of the benchmarks (agents, the operator), with their output
 * going to a log file and a stop that waits for the exit.
 *
 * @module
 */

import { TIMED_OUT, withinMs } from "@drover/common";

/** Repository root (bench/..), the working directory of every child. */
export const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** A running child process whose stdout and stderr go to `logPath`. */
export class LoggedProcess implements AsyncDisposable {
  readonly pid: number;
  readonly logPath: string;
  /** Resolves with the exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<unknown>;

  private constructor(child: Deno.ChildProcess, logPath: string, file: Deno.FsFile) {
    this.#child = child;
    this.pid = child.pid;
    this.logPath = logPath;
    // Both streams into one file; each write is whole, so lines are not torn.
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) await writeAll(file, chunk);
    };
    this.#pumps = Promise.allSettled([pump(child.stdout), pump(child.stderr)])
      .finally(() => file.close());
    this.status = child.status;
  }

  /** Starts `command args` in the repository root, appending its output to `logPath`. */
  static async spawn(
    command: string,
    args: string[],
    logPath: string,
    env: Record<string, string> = {},
  ): Promise<LoggedProcess> {
    const file = await Deno.open(logPath, { create: true, append: true });
    const child = new Deno.Command(command, {
      args,
      cwd: REPO_ROOT,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new LoggedProcess(child, logPath, file);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited. */
  async stop(graceMs = 10_000): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    if (await withinMs(this.status, graceMs) === TIMED_OUT) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }
    await this.status;
    await this.#pumps;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/** Runs a command in the repository root to the end; returns exit code and output. */
export async function run(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(command, {
    args,
    cwd: REPO_ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}
