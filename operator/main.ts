/**
 * `drover-operator`: the operator service (`serve`) and the CLI people use; the commands are
 * listed in commands/mod.ts (`drover-operator --help` prints them). Run with
 * `deno task operator …`. Parses the command line, sets up logging, runs the command and
 * turns what it throws into an exit code (commands/errors.ts).
 *
 * @module
 */

import {
  CliError,
  type CliIo,
  commandHelp,
  EXIT,
  HELP_OPTION,
  parseOptions,
  PROGRAM,
  resolvePathEnv,
  resolvePathOptions,
  UsageError,
} from "./commands/cli.ts";
import { CONNECTION_OPTIONS } from "./commands/connection_options.ts";
import { COMMANDS, findCommand } from "./commands/mod.ts";
import { asCliError } from "./commands/errors.ts";
import { closeLogging, setupLogging } from "./log.ts";
import { OPERATOR_VERSION } from "./version.ts";
import { escapeControl } from "./views/render.ts";
import { redactUrl, suggestKey } from "@drover/contracts";
import { tolerateTransportResets } from "@drover/common";

/** The top-level help. */
export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `Usage: ${PROGRAM} COMMAND [OPTIONS]`,
    "",
    "Drover operator: deployment manifests to per-device desired state, and fleet status.",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    `Run "${PROGRAM} COMMAND --help" for a command's options.`,
    "NATS connection: --nats URL (or NATS_URL), --creds FILE (or NATS_CREDS), --user/--password,",
    "--token, --tls-ca/--tls-cert/--tls-key.",
    "",
    `  --version  Print the version (${OPERATOR_VERSION})`,
    "  --help     Show this help",
    "",
    "Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 invalid input (diff: 1 means changes, 4 failed).",
  ].join("\n") + "\n";
}

/**
 * Runs the CLI with `args`; returns the exit code. Never exits the process
 * itself, so tests can call it.
 */
export async function main(args: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h") {
    io[name === undefined ? "stderr" : "stdout"](mainHelp());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "--version" || name === "version") {
    io.stdout(`${PROGRAM} ${OPERATOR_VERSION}\n`);
    return EXIT.ok;
  }
  if (name === "help") {
    const target = rest[0] === undefined ? undefined : findCommand(rest[0]);
    if (rest[0] !== undefined && target === undefined) {
      return reportError(unknownCommand(rest[0]), io);
    }
    io.stdout(target ? commandHelp(target, CONNECTION_OPTIONS) : mainHelp());
    return EXIT.ok;
  }
  const command = findCommand(name);
  try {
    if (command === undefined) throw unknownCommand(name);
    const options = {
      ...command.options,
      ...(command.connects ? CONNECTION_OPTIONS : {}),
      ...HELP_OPTION,
    };
    const parsed = parseOptions(command.name, rest, options);
    if (parsed.values.help) {
      io.stdout(commandHelp(command, CONNECTION_OPTIONS));
      return EXIT.ok;
    }
    // Relative paths mean the user's directory, also under `deno task` (which runs in the
    // project root); commands and their errors then see the absolute path.
    const values = io.cwd === undefined
      ? parsed.values
      : resolvePathOptions(parsed.values, options, io.cwd);
    return await command.run({
      values,
      positionals: parsed.positionals,
      io: resolvePathEnv(io, options),
    });
  } catch (e) {
    return reportError(e, io);
  }
}

/**
 * `text` with the control characters of each line escaped, its line breaks
 * kept: a message may quote what a device or a server said (the device's own
 * words are escaped where they are quoted, operator/devices/requests.ts).
 */
function escapeLines(text: string): string {
  return text.split("\n").map(escapeControl).join("\n");
}

/** The error for a command name that is none, with the likely intended one. */
function unknownCommand(name: string): UsageError {
  const guess = suggestKey(name, COMMANDS.map((c) => c.name));
  return new UsageError(
    `Unknown command "${name}"${guess === undefined ? "" : `; did you mean "${guess}"?`}`,
  );
}

/** Prints an error as one line plus indented details; returns its exit code. */
export function reportError(thrown: unknown, io: CliIo): number {
  const e = asCliError(thrown) ?? thrown;
  if (e instanceof CliError) {
    const lines = [
      `error: ${escapeLines(e.message)}`,
      ...e.details.filter((d) => d !== "").map((d) => `  ${escapeLines(d)}`),
    ];
    if (e instanceof UsageError) {
      lines.push(
        e.command
          ? `Run "${PROGRAM} ${e.command} --help" for usage.`
          : `Run "${PROGRAM} --help" for usage.`,
      );
    }
    // An error may quote a server URL given with a password or token (`--server`, `--nats`).
    io.stderr(redactUrl(lines.join("\n") + "\n"));
    return e.exitCode;
  }
  const error = e as Error;
  const causes: string[] = [];
  for (let c = error?.cause; c instanceof Error && causes.length < 3; c = c.cause) {
    causes.push(`  caused by: ${escapeLines(c.message)}`);
  }
  const message = escapeLines(error?.message ?? String(e));
  io.stderr(redactUrl([`error: ${message}`, ...causes].join("\n") + "\n"));
  return EXIT.failed;
}

/** The process's real standard streams, environment and signals. */
export function processIo(): CliIo {
  const encoder = new TextEncoder();
  const controller = new AbortController();
  const stop = () => controller.abort();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  return {
    stdout: (text) => writeAll(Deno.stdout, encoder.encode(text)),
    stderr: (text) => writeAll(Deno.stderr, encoder.encode(text)),
    env: (name) => Deno.env.get(name),
    isTerminal: Deno.stdout.isTerminal(),
    signal: controller.signal,
    cwd: userDirectory(),
  };
}

/**
 * Where the user typed the command: `INIT_CWD` when `deno task` (or npm) set it, else the
 * process's directory.
 */
function userDirectory(): string | undefined {
  let initCwd: string | undefined;
  try {
    initCwd = Deno.env.get("INIT_CWD");
  } catch {
    // Not in --allow-env: run directly, where the process's directory is the user's.
  }
  if (initCwd !== undefined && initCwd.startsWith("/")) return initCwd;
  try {
    return Deno.cwd();
  } catch {
    return undefined; // no read permission: paths stay as given
  }
}

/** Synchronous write of every byte (a pipe may take fewer per call). */
function writeAll(stream: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  for (let offset = 0; offset < bytes.length;) offset += stream.writeSync(bytes.subarray(offset));
}

/**
 * Errors thrown outside any awaited call (a TLS alert arriving on the NATS
 * socket after the handshake, say) become one clear line and exit code 1
 * instead of a stack trace.
 */
function exitOnStrayErrors(io: CliIo): void {
  const fail = (error: unknown) => {
    io.stderr(
      redactUrl(`error: NATS connection failed: ${(error as Error)?.message ?? String(error)}\n`),
    );
    Deno.exit(EXIT.failed);
  };
  globalThis.addEventListener("error", (event) => {
    if (event.defaultPrevented) return; // a transport reset nats.js has already handled
    event.preventDefault();
    fail(event.error);
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    fail(event.reason);
  });
}

if (import.meta.main) {
  const io = processIo();
  // First: a refused or kicked connection's late TCP reset is not a failure (nor, for serve, a
  // reason to stop); every other stray error still ends the process.
  tolerateTransportResets();
  exitOnStrayErrors(io);
  await setupLogging(io.env, Deno.args[0] === "serve" ? "info" : "warning");
  const code = await main(Deno.args, io);
  await closeLogging();
  Deno.exit(code);
}
