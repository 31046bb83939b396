/**
 * Running short-lived commands and collecting their output.
 *
 * @module
 */

import { CommandError } from "./errors.ts";

/** What a finished command produced. */
export interface CommandResult {
  /** Exit code (128 + signal number when killed by a signal). */
  code: number;
  /** Standard output, decoded as UTF-8. */
  stdout: string;
  /** Standard error, decoded as UTF-8. */
  stderr: string;
}

/** Options of {@linkcode runCommand}. */
export interface RunOptions {
  /** Extra environment variables (added to the inherited environment). */
  env?: Record<string, string> | undefined;
  /** Working directory. */
  cwd?: string | undefined;
  /** Kills the command (SIGTERM) when aborted. */
  signal?: AbortSignal | undefined;
}

const decoder = new TextDecoder();

/** Runs `command args…` to completion and returns its exit code and output; never throws on a non-zero exit. */
export async function runCommand(
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const output = await new Deno.Command(command, {
    args,
    ...(options.env !== undefined ? { env: options.env } : {}),
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Like {@linkcode runCommand} but throws when the command exits non-zero.
 *
 * @throws {CommandError} naming the command, its exit code and stderr.
 */
export async function runChecked(
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const result = await runCommand(command, args, options);
  if (result.code !== 0) throw new CommandError([command, ...args], result.code, result.stderr);
  return result;
}
