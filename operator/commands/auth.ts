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
} from "./cli.ts";
import { AUTH_DIR_OPTION, authDir, cliAuthError } from "./_shared.ts";
import {
  AuthAlreadyInitializedError,
  authInit,
  DEFAULT_FLEET_LIMITS,
  type FleetLimits,
  issueSystemCreds,
} from "../auth/mod.ts";

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  KIB: 1024,
  MIB: 1024 ** 2,
  GIB: 1024 ** 3,
  TIB: 1024 ** 4,
};

/** Parses a byte size such as `10GiB`, `512MiB` or `1048576`. @throws {UsageError} */
export function parseSize(text: string, option: string): number {
  const m = /^([0-9]+)\s*([KMGT]iB)?$/i.exec(text.trim());
  const factor = m === null ? undefined : SIZE_UNITS[(m[2] ?? "").toUpperCase()];
  if (m === null || factor === undefined || Number(m[1]) <= 0) {
    throw new UsageError(
      `Invalid --${option} ${
        JSON.stringify(text)
      }: expected a size such as 10GiB, 512MiB or 1048576`,
      "auth",
    );
  }
  return Number(m[1]) * factor;
}

/** The fleet limits given on the command line. @throws {UsageError} */
export function limitsOption(values: OptionValues): Partial<FleetLimits> {
  const out: Partial<FleetLimits> = {};
  const devices = stringOption(values, "max-devices");
  if (devices !== undefined) {
    const n = Number(devices);
    if (!Number.isSafeInteger(n) || n <= 0) {
      throw new UsageError(
        `Invalid --max-devices ${JSON.stringify(devices)}: expected a whole number above 0`,
        "auth",
      );
    }
    out.maxDevices = n;
  }
  const storage = stringOption(values, "max-storage");
  if (storage !== undefined) out.storageBytes = parseSize(storage, "max-storage");
  return out;
}

/** The `auth` command. */
export const authCommand: Command = {
  name: "auth",
  summary: "Create the NATS keys for per-device identities (auth init, auth system-creds)",
  usage: "auth init --dir DIR [--max-devices N] [--max-storage SIZE] [--force]\n" +
    "      auth system-creds --dir DIR",
  description: [
    "Creates, once, the operator key, the system account, the DROVER account (operator,",
    "buckets) and the DROVER_DEVICES account (devices only; no JetStream; reaches DROVER",
    "through a few private exports), each with a signing key, in DIR (mode 0700; seeds and",
    "creds 0600), and writes:",
    "  DIR/nats-auth.conf   fragment to `include` in nats-server.conf (path relative to it)",
    "  DIR/operator.creds   the operator service's creds (use with --creds / NATS_CREDS)",
    "  DIR/system.creds     serve's connection guard: a system-account user that may only",
    "                       watch the devices' connections and close extra ones",
    "                       (serve --system-creds, or found in serve --dir)",
    "Then provision devices with `device add`. --force replaces existing keys: every",
    "creds file issued before stops working. Limits: devices connected at once",
    `(--max-devices, default ${DEFAULT_FLEET_LIMITS.maxDevices}) and the buckets' disk use`,
    `(--max-storage, default ${
      DEFAULT_FLEET_LIMITS.storageBytes / 1024 ** 3
    }GiB); see the README's security model. The devices' account holds`,
    "--max-devices connections plus max(16, 5 %) headroom. `auth system-creds` (re)issues",
    "DIR/system.creds, e.g. in a directory initialised before it existed.",
  ].join("\n"),
  options: {
    ...AUTH_DIR_OPTION,
    "max-devices": {
      type: "string",
      value: "N",
      description: "Devices that may be connected at once (the devices' account limit)",
    },
    "max-storage": {
      type: "string",
      value: "SIZE",
      description: "Disk the buckets may use, e.g. 10GiB",
    },
    force: { type: "boolean", description: "Replace existing keys (invalidates all creds)" },
  },
  connects: false,
  async run({ values, positionals, io }) {
    if (positionals[0] !== "init" && positionals[0] !== "system-creds") {
      throw new UsageError(
        positionals[0] === undefined
          ? "Missing subcommand: auth init"
          : `Unknown subcommand "auth ${positionals[0]}": expected "auth init" or ` +
            '"auth system-creds"',
        "auth",
      );
    }
    if (positionals.length > 1) {
      throw new UsageError(`Unexpected argument "${positionals[1]}"`, "auth");
    }
    const dir = authDir(values, io.env, "auth");
    if (positionals[0] === "system-creds") {
      let path;
      try {
        path = await issueSystemCreds(dir);
      } catch (e) {
        throw cliAuthError(e);
      }
      io.stdout(
        `wrote ${path}\n  give it to serve: --system-creds ${path} (or --dir ${dir})\n`,
      );
      return EXIT.ok;
    }
    const limits = limitsOption(values);
    let result;
    try {
      result = await authInit(dir, { force: values.force === true, limits });
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
        `  system creds:    ${result.systemCredsPath} (serve's connection guard)`,
        `  account:         ${result.accountPublicKey} (DROVER: operator, buckets)`,
        `  devices account: ${result.devicesAccountPublicKey} (DROVER_DEVICES)`,
        `next: operator device add ID --dir ${dir}`,
        "",
      ].join("\n"),
    );
    return EXIT.ok;
  },
};
