/**
 * `device add|label|unregister|revoke|list`: provision a device's NATS
 * identity (creds plus a ready agent config) and register its labels in the
 * operator's device registry, change those labels, revoke it, list what was
 * issued.
 *
 * The files under `--dir` are written offline (operator/auth); the registry
 * lives in NATS KV (operator/fleet/registry.ts), so `add`, `label`, `unregister` and
 * `revoke` connect to NATS with the usual options.
 *
 * @module
 */

import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import {
  type CliIo,
  type Command,
  EXIT,
  InvalidInputError,
  OperationError,
  type OptionValues,
  parseDuration,
  stringOption,
  UsageError,
} from "./cli.ts";
import {
  AUTH_FILES,
  AuthInputError,
  checkDeviceId,
  deviceAdd,
  deviceList,
  deviceRevoke,
} from "../auth/mod.ts";
import { type ConnectionSettings, connectionSettings, connectNats } from "../nats/connection.ts";
import { ensureBuckets } from "../nats/kv.ts";
import {
  InvalidLabelError,
  InvalidRegistrationError,
  labelDevice,
  parseLabelEdits,
  registerDevice,
  RegistryConflictError,
  unregisterDevice,
} from "../fleet/registry.ts";
import { AUTH_DIR_OPTION, authDir, cliAuthError } from "./auth.ts";

/** Parses `k=v` label arguments. @throws {UsageError} */
export function parseLabelArgs(args: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    if (eq <= 0) {
      throw new UsageError(`Invalid --label ${JSON.stringify(arg)}: expected key=value`, "device");
    }
    const key = arg.slice(0, eq);
    if (Object.hasOwn(labels, key)) {
      throw new UsageError(
        `Invalid --label ${JSON.stringify(arg)}: "${key}" given twice`,
        "device",
      );
    }
    labels[key] = arg.slice(eq + 1);
  }
  return labels;
}

function asList(value: unknown): string[] {
  if (Array.isArray(value)) return value as string[];
  return typeof value === "string" ? [value] : [];
}

function mapInputError(e: unknown): unknown {
  if (e instanceof AuthInputError || e instanceof InvalidLabelError) {
    return new InvalidInputError(e.message, [], { cause: e });
  }
  if (e instanceof InvalidRegistrationError || e instanceof RegistryConflictError) {
    return new OperationError(e.message, [], { cause: e });
  }
  return cliAuthError(e);
}

/**
 * The shared connection settings; when no credentials of any kind are given
 * and the auth directory `dir` holds `operator.creds`, those are used: the
 * registry is writable only by the operator's identity.
 */
export async function registrySettings(
  values: OptionValues,
  env: (name: string) => string | undefined,
  dir: string | undefined,
): Promise<ConnectionSettings> {
  const settings = connectionSettings(values, env);
  if (settings.creds !== undefined || settings.user !== undefined) return settings;
  if (settings.token !== undefined) return settings;
  if (dir === undefined || dir === "") return settings;
  const creds = join(dir, AUTH_FILES.operatorCreds);
  try {
    if ((await Deno.stat(creds)).isFile) settings.creds = creds;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return settings;
}

/** Runs `fn` with the registry bucket (created when missing, as `apply` does); always disconnects. */
async function withRegistry<T>(
  settings: ConnectionSettings,
  fn: (kv: KV) => Promise<T>,
): Promise<T> {
  const nc = await connectNats(settings, { name: "drover-operator-cli" });
  try {
    return await fn((await ensureBuckets(nc)).devices);
  } finally {
    await nc.close();
  }
}

/** `k=v k2=v2`: labels as `device label` arguments. */
function formatEdits(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(" ");
}

function formatLabels(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(",") || "(none)";
}

async function runLabel(
  values: OptionValues,
  io: CliIo,
  id: string,
  args: string[],
): Promise<number> {
  if (args.length === 0) {
    throw new UsageError("Missing labels: device label ID KEY=VALUE... [KEY-]...", "device");
  }
  checkDeviceId(id);
  const edits = parseLabelEdits(args);
  // Only an explicit --dir: label needs no auth directory (the image may not read DROVER_AUTH_DIR).
  const settings = await registrySettings(values, io.env, stringOption(values, "dir"));
  const result = await withRegistry(settings, (kv) => labelDevice(kv, id, edits));
  const what = result.created ? "registered" : result.changed ? "labelled" : "unchanged";
  io.stdout(`device "${id}" ${what}: ${formatLabels(result.labels)}\n`);
  return EXIT.ok;
}

/** The `device` command. */
export const deviceCommand: Command = {
  name: "device",
  summary: "Provision, label, revoke and list devices",
  usage:
    "device add ID [--label k=v]... [--server URL]... [--tls-ca FILE] [--expires 90d] --dir DIR\n" +
    "       drover-operator device label ID KEY=VALUE... [KEY-]...\n" +
    "       drover-operator device unregister ID\n" +
    "       drover-operator device revoke ID --dir DIR\n" +
    "       drover-operator device list --dir DIR [-o json]",
  description: [
    "Label selectors in deployments match the labels in the operator's device registry",
    "(the `devices` bucket, writable only with the operator's creds), never the labels a",
    "device reports about itself. add, label, unregister and revoke connect to NATS; without",
    "--creds/NATS_CREDS (or --user/--token) they use DIR/operator.creds when it exists",
    "(label and unregister: only with an explicit --dir).",
    "",
    "add        writes DIR/ID.creds (secret, 0600), DIR/ID.xk (the device's sealing key:",
    "           secrets are sealed to it; secret, 0600) and DIR/ID.toml (agent config using",
    "           both), then registers the device with its --label set and the sealing key's",
    "           public half in the registry. Adding a revoked id again rotates both keys.",
    "           The device lives in the DROVER_DEVICES account: it may only read its own",
    "           desired-state keys ID.*, ask for their list, and write agent-status/ID.",
    "           --expires DURATION makes the creds stop working after that long (e.g. 90d);",
    "           without it they never expire and only revocation cuts the device off.",
    "           --tls-ca is the CA of the NATS server: used for this connection and written",
    "           into the agent config as [nats] tls_ca.",
    "label      sets (KEY=VALUE) and removes (KEY-) registry labels, kubectl style; registers",
    "           the device if it has no entry yet. Deployments follow within a reconcile pass.",
    "unregister removes the device's registry entry: no label selector targets it any more.",
    "revoke     adds the device's key to the account's revocation list, rewrites",
    "           DIR/nats-auth.conf and removes the registry entry. The server applies the",
    "           revocation on reload: `nats-server --signal reload` (or SIGHUP); the device's",
    "           connections are then closed and refused.",
    "list       shows every device issued from DIR (no NATS needed).",
  ].join("\n"),
  options: {
    ...AUTH_DIR_OPTION,
    label: {
      type: "string",
      multiple: true,
      value: "KEY=VALUE",
      description: "Device label, registered in the device registry (repeatable; add only)",
    },
    server: {
      type: "string",
      multiple: true,
      value: "URL",
      description: "NATS URL written into the agent config (repeatable; add only)",
    },
    expires: {
      type: "string",
      value: "DURATION",
      description: "Creds expire after this long, e.g. 90d or 12h (add only; default never)",
    },
    output: {
      type: "string",
      short: "o",
      value: "FORMAT",
      description: '"table" (default) or "json" (list only)',
    },
  },
  // add, label, unregister and revoke write the registry in NATS; list ignores these options.
  connects: true,
  async run({ values, positionals, io }) {
    const [sub, ...rest] = positionals;
    const dir = () => authDir(values, io.env, "device");
    const oneId = () => {
      const [id] = rest;
      if (id === undefined) throw new UsageError(`Missing device ID: device ${sub} ID`, "device");
      if (rest.length > 1) throw new UsageError(`Unexpected argument "${rest[1]}"`, "device");
      return id;
    };
    try {
      switch (sub) {
        case "add": {
          const id = oneId();
          const servers = asList(values.server);
          const tlsCa = typeof values["tls-ca"] === "string" ? values["tls-ca"] : undefined;
          const labels = parseLabelArgs(asList(values.label));
          const expires = stringOption(values, "expires");
          const expiresAt = expires === undefined
            ? undefined
            : new Date(Date.now() + parseDuration(expires));
          const authDirPath = dir();
          const settings = await registrySettings(values, io.env, authDirPath);
          // Connect before writing anything: an unreachable NATS leaves no half-added device.
          const nc = await connectNats(settings, { name: "drover-operator-cli" });
          try {
            const result = await deviceAdd(authDirPath, id, {
              labels,
              ...(servers.length > 0 ? { servers } : {}),
              ...(tlsCa !== undefined ? { tlsCa } : {}),
              ...(expiresAt !== undefined ? { expiresAt } : {}),
            });
            let registered: Record<string, string>;
            try {
              registered = (await registerDevice(
                (await ensureBuckets(nc)).devices,
                id,
                labels,
                undefined,
                result.sealingPublicKey,
              )).labels;
            } catch (e) {
              throw new OperationError(
                `device "${id}" added (creds ${result.credsPath}), but its labels were not ` +
                  `registered: ${(e as Error).message}`,
                [`register them with: device label ${id} ${formatEdits(labels)}`],
                { cause: e },
              );
            }
            io.stdout(
              [
                `device "${id}" added`,
                `  creds:  ${result.credsPath}`,
                `  config: ${result.configPath}`,
                `  sealing key: ${result.sealingKeyPath} (secrets are sealed to it)`,
                `  labels: ${formatLabels(registered)} (device registry)`,
                `  expires: ${expiresAt?.toISOString() ?? "never (revoke to cut it off)"}`,
                "copy all three to the device (fix the paths in the config if they differ there)",
                "",
              ].join("\n"),
            );
            return EXIT.ok;
          } finally {
            await nc.close();
          }
        }
        case "label": {
          const [id, ...pairs] = rest;
          if (id === undefined) {
            throw new UsageError("Missing device ID: device label ID KEY=VALUE...", "device");
          }
          return await runLabel(values, io, id, pairs);
        }
        case "unregister": {
          const id = checkDeviceId(oneId());
          const settings = await registrySettings(values, io.env, stringOption(values, "dir"));
          const removed = await withRegistry(settings, (kv) => unregisterDevice(kv, id));
          io.stdout(
            removed
              ? `device "${id}" unregistered: no label selector targets it any more\n`
              : `device "${id}" was not registered\n`,
          );
          return EXIT.ok;
        }
        case "revoke": {
          const id = oneId();
          // The revocation is written first and offline: it must not wait for NATS.
          const authDirPath = dir();
          const result = await deviceRevoke(authDirPath, id);
          const lines = [
            result.changed ? `device "${id}" revoked` : `device "${id}" was already revoked`,
            `  rewrote ${result.confPath}`,
            "  reload nats-server to apply: nats-server --signal reload (or kill -HUP <pid>)",
          ];
          let removed: boolean;
          try {
            const settings = await registrySettings(values, io.env, authDirPath);
            removed = await withRegistry(settings, (kv) => unregisterDevice(kv, id));
          } catch (e) {
            io.stdout(lines.join("\n") + "\n");
            throw new OperationError(
              `device "${id}" is revoked in ${result.confPath}, but its registry entry was not ` +
                `removed: ${(e as Error).message}`,
              [`remove it with: device unregister ${id} (or run revoke again)`],
              { cause: e },
            );
          }
          lines.push(
            removed
              ? "  removed from the device registry: no label selector targets it any more"
              : "  it had no device registry entry",
          );
          io.stdout(lines.join("\n") + "\n");
          return EXIT.ok;
        }
        case "list": {
          if (rest.length > 0) throw new UsageError(`Unexpected argument "${rest[0]}"`, "device");
          const format = values.output ?? "table";
          if (format !== "table" && format !== "json") {
            throw new UsageError(`Invalid output format "${format}"`, "device");
          }
          const devices = await deviceList(dir());
          if (format === "json") {
            io.stdout(JSON.stringify(devices, null, 2) + "\n");
            return EXIT.ok;
          }
          const now = Date.now();
          const stateOf = (d: (typeof devices)[number]) =>
            d.revokedAt
              ? "revoked"
              : d.expiresAt !== undefined && Date.parse(d.expiresAt) <= now
              ? "expired"
              : "active";
          const rows = [["ID", "STATE", "LABELS", "CREATED", "EXPIRES"]].concat(devices.map((d) => [
            d.id,
            stateOf(d),
            Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(",") || "-",
            d.createdAt,
            d.expiresAt ?? "never",
          ]));
          const widths = rows.reduce(
            (w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)),
            [] as number[],
          );
          io.stdout(
            rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join(
              "\n",
            ) + "\n",
          );
          return EXIT.ok;
        }
        case undefined:
          throw new UsageError(
            "Missing subcommand: device add|label|unregister|revoke|list",
            "device",
          );
        default:
          throw new UsageError(
            `Unknown subcommand "device ${sub}": expected add, label, unregister, revoke or list`,
            "device",
          );
      }
    } catch (e) {
      throw mapInputError(e);
    }
  },
};
