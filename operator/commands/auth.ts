/**
 * `auth init --dir DIR [--force]`: creates the NATS signing keys for the
 * fleet and writes the server config fragment and the operator's creds.
 *
 * @module
 */

import {
  type Command,
  EXIT,
  OperationError,
  type OptionValues,
  stringOption,
  UsageError,
} from "../cli.ts";
import { AuthAlreadyInitializedError, AuthError, authInit } from "../auth/mod.ts";

/** `--dir`, shared by `auth` and `device`. */
export const AUTH_DIR_OPTION = {
  dir: {
    type: "string",
    value: "DIR",
    description: "Directory holding the keys and creds (env DROVER_AUTH_DIR)",
    path: { env: "DROVER_AUTH_DIR" },
  },
} as const;

/** Reads `--dir` (or `DROVER_AUTH_DIR`). */
export function authDir(
  values: OptionValues,
  env: (name: string) => string | undefined,
  command: string,
): string {
  const dir = stringOption(values, "dir") ?? env("DROVER_AUTH_DIR");
  if (dir === undefined || dir === "") {
    throw new UsageError("Missing --dir DIR (the auth directory)", command);
  }
  return dir;
}

/** Maps the auth module's errors to CLI errors with the right exit code. */
export function cliAuthError(e: unknown): unknown {
  if (e instanceof AuthError) return new OperationError(e.message, [], { cause: e });
  return e;
}

/** The `auth` command. */
export const authCommand: Command = {
  name: "auth",
  summary: "Create the NATS keys for per-device identities (auth init)",
  usage: "auth init --dir DIR [--force]",
  description: [
    "Creates, once, the operator key, the system account and the DROVER account (with a",
    "signing key) in DIR (mode 0700; seeds and creds 0600), and writes:",
    "  DIR/nats-auth.conf   fragment to `include` in nats-server.conf (path relative to it)",
    "  DIR/operator.creds   the operator service's creds (use with --creds / NATS_CREDS)",
    "Then provision devices with `device add`. --force replaces existing keys: every",
    "creds file issued before stops working.",
  ].join("\n"),
  options: {
    ...AUTH_DIR_OPTION,
    force: { type: "boolean", description: "Replace existing keys (invalidates all creds)" },
  },
  connects: false,
  async run({ values, positionals, io }) {
    if (positionals[0] !== "init") {
      throw new UsageError(
        positionals[0] === undefined
          ? "Missing subcommand: auth init"
          : `Unknown subcommand "auth ${positionals[0]}": expected "auth init"`,
        "auth",
      );
    }
    if (positionals.length > 1) {
      throw new UsageError(`Unexpected argument "${positionals[1]}"`, "auth");
    }
    const dir = authDir(values, io.env, "auth");
    let result;
    try {
      result = await authInit(dir, { force: values.force === true });
    } catch (e) {
      if (e instanceof AuthAlreadyInitializedError) {
        throw new OperationError(e.message, [], { cause: e });
      }
      throw cliAuthError(e);
    }
    io.stdout(
      [
        `initialised NATS auth in ${dir}`,
        `  server fragment: ${result.confPath}`,
        `    add to nats-server.conf: include "<path of nats-auth.conf relative to that file>"`,
        `  operator creds:  ${result.operatorCredsPath}`,
        `  account:         ${result.accountPublicKey}`,
        `next: operator device add ID --dir ${dir}`,
        "",
      ].join("\n"),
    );
    return EXIT.ok;
  },
};
