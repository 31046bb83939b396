/**
 * What the smoke run knows of the processes it starts (started with the tests' own harness:
 * tests/support/agent_process.ts and `ManagedProcess`), its error type, and one-shot CLI
 * commands.
 *
 * @module
 */

import { type CommandResult, runCommand } from "../../tests/support/_exec.ts";

/** A smoke step's expectation did not hold; the message says what was seen instead. */
export class SmokeError extends Error {
  /** Creates the error; `cause` keeps the underlying failure. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SmokeError";
  }
}

/** How long the smoke run waits after SIGTERM before SIGKILL. */
export const DAEMON_STOP_GRACE_MS = 15_000;

/**
 * What the smoke run reads of a long-running process it started: the operator service
 * (tests/support's `ManagedProcess`) or the agent (`AgentProcess`), each writing a log file.
 */
export interface Daemon {
  readonly pid: number;
  readonly running: boolean;
  readonly logPath: string;
  /** The last `lines` lines of its log. */
  logTail(lines?: number): Promise<string>;
}

/** What a finished command printed. */
export type CliResult = CommandResult;

/** Runs a command to completion (stdin closed); never throws on a non-zero exit. */
export function runCli(
  command: readonly [string, ...string[]],
  env?: Record<string, string>,
  signal?: AbortSignal,
): Promise<CliResult> {
  const [program, ...args] = command;
  return runCommand(program, args, { env, signal });
}

/**
 * Like {@linkcode runCli} but throws when the command exits non-zero.
 *
 * @throws {SmokeError} with the command line, exit code and output.
 */
export async function runCliChecked(
  command: readonly [string, ...string[]],
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
