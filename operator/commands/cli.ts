/**
 * The CLI's building blocks: the command shape every module in `commands/`
 * exports, exit codes, the error classes that map to them, option parsing
 * and help text.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseDuration as parseDurationText } from "@drover/contracts";

/** Program name shown in help and errors. */
export const PROGRAM = "drover-operator";

/** Exit codes, the same for every command. */
export const EXIT = {
  /** Success. */
  ok: 0,
  /** The operation was attempted and failed (NATS unreachable, rollout failed, timeout…). */
  failed: 1,
  /** Wrong command line. */
  usage: 2,
  /** Input (a manifest file, a name) is invalid; nothing was changed. */
  invalid: 3,
  /**
   * `diff` only, whose 1 means "something would change" (kubectl's convention):
   * the comparison itself failed (NATS unreachable…).
   */
  diffFailed: 4,
} as const;

/** What the exit codes of most commands mean, for help texts. */
export const EXIT_CODES_HELP =
  "Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 invalid input.";

/** Base of errors that carry their exit code and optional detail lines. */
export class CliError extends Error {
  override name = "CliError";
  /** Process exit code. */
  readonly exitCode: number;
  /** Lines printed after the message. */
  readonly details: string[];
  constructor(message: string, exitCode: number, details: string[] = [], options?: ErrorOptions) {
    super(message, options);
    this.exitCode = exitCode;
    this.details = details;
  }
}

/** Wrong command line: unknown option, missing argument. Exit 2. */
export class UsageError extends CliError {
  override name = "UsageError";
  /** Command whose help to point at, if any. */
  readonly command?: string;
  constructor(message: string, command?: string, options?: ErrorOptions) {
    super(message, EXIT.usage, [], options);
    if (command !== undefined) this.command = command;
  }
}

/** Invalid input (manifest, name); nothing was changed. Exit 3. */
export class InvalidInputError extends CliError {
  override name = "InvalidInputError";
  constructor(message: string, details: string[] = [], options?: ErrorOptions) {
    super(message, EXIT.invalid, details, options);
  }
}

/** The operation failed. Exit 1. */
export class OperationError extends CliError {
  override name = "OperationError";
  constructor(message: string, details: string[] = [], options?: ErrorOptions) {
    super(message, EXIT.failed, details, options);
  }
}

/** One command-line option. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** Placeholder for the value in help, e.g. `FILE`. */
  value?: string;
  description: string;
  /**
   * The value is a file or directory on this machine: a relative one is resolved against
   * the directory the user ran the command in ({@linkcode CliIo.cwd}), as is the value of
   * `env` when the option falls back to that environment variable.
   */
  path?: { env?: string };
}

/** Options by long name. */
export type OptionSpecs = Record<string, OptionSpec>;

/** Parsed option values. */
export type OptionValues = Record<string, string | boolean | string[] | undefined>;

/** Where a command writes, and what it may read from its environment. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: (name: string) => string | undefined;
  /** True when stdout is a terminal (progress lines are rewritten in place). */
  isTerminal: boolean;
  /** Aborted on SIGINT/SIGTERM (serve stops, waits give up). */
  signal: AbortSignal;
  /**
   * The directory the user typed the command in, when it is not the process's own:
   * `deno task` runs in the project root and passes the user's directory as `INIT_CWD`.
   * Relative path options resolve against it; absent, they stay as given.
   */
  cwd?: string | undefined;
}

/** What a command's `run` receives. */
export interface CommandInput {
  values: OptionValues;
  positionals: string[];
  io: CliIo;
}

/** One CLI command; each lives in its own module under `commands/`. */
export interface Command {
  /** First word on the command line. */
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Synopsis after the program name, e.g. `apply -f FILE [--wait]`. */
  usage: string;
  /** Further help paragraphs. */
  description?: string;
  options: OptionSpecs;
  /** Whether the shared NATS connection options apply. */
  connects: boolean;
  /** The help's exit-code line, when the command's codes differ from {@linkcode EXIT_CODES_HELP}. */
  exitCodes?: string;
  /** Runs the command; returns the exit code. Throws {@linkcode CliError}s. */
  run(input: CommandInput): Promise<number>;
}

/** `--help`, accepted by every command. */
export const HELP_OPTION: OptionSpecs = {
  help: { type: "boolean", short: "h", description: "Show this help" },
};

/** Parses `args` against `options`; unknown options and bad values are {@linkcode UsageError}s. */
export function parseOptions(
  command: string,
  args: string[],
  options: OptionSpecs,
): { values: OptionValues; positionals: string[] } {
  const config: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> =
    {};
  for (const [name, spec] of Object.entries(options)) {
    config[name] = {
      type: spec.type,
      ...(spec.short ? { short: spec.short } : {}),
      ...(spec.multiple ? { multiple: true } : {}),
    };
  }
  try {
    const { values, positionals } = parseArgs({
      args: attachNegativeValues(args, options),
      options: config,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as OptionValues, positionals };
  } catch (e) {
    throw new UsageError(cleanParseError((e as Error).message), command, { cause: e });
  }
}

/**
 * `--tail -5` as `--tail=-5`: node:util calls a value that starts with `-` "ambiguous", and a
 * negative number after an option that takes a value can only be that value (the command
 * then says whether it accepts it). Pure.
 */
export function attachNegativeValues(args: readonly string[], options: OptionSpecs): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const name = arg.startsWith("--") ? arg.slice(2) : Object.keys(options).find((n) => {
      const short = options[n]?.short;
      return short !== undefined && arg === `-${short}`;
    });
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (
      name !== undefined && options[name]?.type === "string" && next !== undefined &&
      /^-[0-9]+(\.[0-9]+)?$/.test(next)
    ) {
      out.push(`--${name}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** node:util's messages mention its own API; keep only the part about the argument. */
function cleanParseError(message: string): string {
  const first = message.split("\n")[0] ?? "";
  return first.replace(/\. To specify a positional argument.*$/, "").replace(
    /^Unknown option '(.*?)'.*$/,
    "Unknown option $1",
  );
}

/**
 * `path` made absolute against `cwd` (already absolute: unchanged), with `.` and `..`
 * segments and repeated slashes removed. Pure.
 */
export function resolvePath(path: string, cwd: string): string {
  const segments: string[] = [];
  for (const segment of `${path.startsWith("/") ? "" : cwd}/${path}`.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") segments.pop();
    else segments.push(segment);
  }
  return `/${segments.join("/")}`;
}

/**
 * Resolves the values of `options` marked `path` against `cwd` (`-`, standard input, is
 * kept). Pure.
 */
export function resolvePathOptions(
  values: OptionValues,
  options: OptionSpecs,
  cwd: string,
): OptionValues {
  const resolve = (v: string) => (v === "-" || v === "" ? v : resolvePath(v, cwd));
  const out: OptionValues = { ...values };
  for (const [name, spec] of Object.entries(options)) {
    const value = values[name];
    if (spec.path === undefined) continue;
    if (typeof value === "string") out[name] = resolve(value);
    else if (Array.isArray(value)) out[name] = value.map(resolve);
  }
  return out;
}

/**
 * `io` whose `env` resolves the variables that back path options (e.g. `NATS_CREDS`)
 * against `io.cwd`, like the options themselves. Pure.
 */
export function resolvePathEnv(io: CliIo, options: OptionSpecs): CliIo {
  const { cwd } = io;
  if (cwd === undefined) return io;
  const names = new Set(
    Object.values(options).flatMap((o) => (o.path?.env === undefined ? [] : [o.path.env])),
  );
  return {
    ...io,
    env: (name) => {
      const value = io.env(name);
      return value !== undefined && value !== "" && names.has(name)
        ? resolvePath(value, cwd)
        : value;
    },
  };
}

/** Reads a string option, or `undefined`. */
export function stringOption(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  if (Array.isArray(v)) return v[v.length - 1];
  return typeof v === "string" ? v : undefined;
}

/** Renders the help of one command. */
export function commandHelp(command: Command, shared: OptionSpecs): string {
  const lines = [`Usage: ${PROGRAM} ${command.usage}`, "", command.summary];
  if (command.description) lines.push("", command.description);
  const own = { ...command.options, ...HELP_OPTION };
  lines.push("", "Options:", ...renderOptions(own));
  if (command.connects) lines.push("", "Connection options:", ...renderOptions(shared));
  lines.push("", command.exitCodes ?? EXIT_CODES_HELP);
  return lines.join("\n") + "\n";
}

/** Renders option lines, aligned. */
export function renderOptions(options: OptionSpecs): string[] {
  const rows = Object.entries(options).map(([name, spec]): [string, string] => {
    const flag = `${spec.short ? `-${spec.short}, ` : "    "}--${name}${
      spec.type === "string" ? ` ${spec.value ?? "VALUE"}` : ""
    }`;
    return [flag, spec.description];
  });
  const width = Math.max(...rows.map(([flag]) => flag.length));
  return rows.map(([flag, description]) => `  ${flag.padEnd(width)}  ${description}`);
}

/**
 * Parses a command-line duration such as `120s`, `2m`, `1h30m`, `90d`, `500ms` or a bare
 * number of seconds (contracts/duration.ts, with days and bare seconds).
 *
 * @throws {UsageError} naming the value and what is expected.
 */
export function parseDuration(text: string): number {
  const ms = parseDurationText(text, { days: true, bareSeconds: true });
  if (ms === undefined) {
    throw new UsageError(
      `Invalid duration ${
        JSON.stringify(text)
      }: expected e.g. "120s", "2m", "1h30m", "90d" or "500ms"`,
    );
  }
  return ms;
}
