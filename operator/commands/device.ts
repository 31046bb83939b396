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

import { redactUrl } from "@drover/contracts";
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
  AuthInputError,
  checkDeviceId,
  DEVICE_CREDS_PATH,
  DEVICE_SEALING_KEY_PATH,
  deviceAdd,
  deviceList,
  deviceRevoke,
} from "../auth/mod.ts";
import { type ConnectionSettings, connectNats } from "../nats/connection.ts";
import { ensureBuckets } from "../nats/kv.ts";
import {
  InvalidLabelError,
  InvalidRegistrationError,
  labelDevice,
  parseLabelEdits,
  readRegistration,
  registerDevice,
  RegistryConflictError,
  UnknownDeviceError,
  unregisterDevice,
} from "../fleet/registry.ts";
import { noSuchDevice } from "./_device.ts";
import { formatLabels, parseLabels } from "@drover/contracts";
import { AUTH_DIR_OPTION, authDir, cliAuthError, registrySettings } from "./_shared.ts";
import { table } from "../views/render.ts";

/** Parses `k=v` label arguments. @throws {UsageError} */
export function parseLabelArgs(args: string[]): Record<string, string> {
  const parsed = parseLabels(args);
  if (!parsed.ok) throw new UsageError(`Invalid --label: ${parsed.problem}`, "device");
  return parsed.labels;
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
  return formatLabels(labels, " ");
}

function labelsOrNone(labels: Record<string, string>): string {
  return formatLabels(labels) || "(none)";
}

/**
 * The registry's current labels of `ids` (absent: not registered), or `undefined` with a
 * warning when the registry cannot be read: `device list` still works offline.
 */
async function registryLabels(
  values: OptionValues,
  io: CliIo,
  dir: string,
  ids: readonly string[],
): Promise<Map<string, Record<string, string>> | undefined> {
  try {
    const settings = await registrySettings(values, io.env, dir);
    return await withRegistry(settings, async (kv) => {
      const out = new Map<string, Record<string, string>>();
      for (const id of ids) {
        const stored = await readRegistration(kv, id);
        if (stored !== undefined) out.set(id, stored.registration.labels);
      }
      return out;
    });
  } catch (e) {
    // The message may quote a server URL given with a password or token.
    io.stderr(redactUrl(
      `warning: the device registry could not be read (${(e as Error).message}); ` +
        "LABELS are those given at device add\n",
    ));
    return undefined;
  }
}

/**
 * `device label` (an existing entry only) and `device register` (creates
 * it): label edits in the registry. A label of an unknown id fails with the
 * likely intended one, so a typo registers no phantom device.
 */
async function runLabel(
  values: OptionValues,
  io: CliIo,
  id: string,
  args: string[],
  create: boolean,
): Promise<number> {
  if (args.length === 0 && !create) {
    throw new UsageError("Missing labels: device label ID KEY=VALUE... [KEY-]...", "device");
  }
  checkDeviceId(id);
  const edits = parseLabelEdits(args);
  // Only an explicit --dir: label needs no auth directory (the image may not read DROVER_AUTH_DIR).
  const settings = await registrySettings(values, io.env, stringOption(values, "dir"));
  const result = await withRegistry(settings, async (kv) => {
    try {
      return await labelDevice(kv, id, edits, undefined, { create });
    } catch (e) {
      if (!(e instanceof UnknownDeviceError)) throw e;
      const registered = new Set<string>();
      for await (const key of await kv.keys()) registered.add(key);
      throw noSuchDevice(id, registered, [
        `to register a device without creds: device register ${id} ${formatEdits(edits.set)}`
          .trimEnd(),
      ]);
    }
  });
  const what = result.created ? "registered" : result.changed ? "labelled" : "unchanged";
  io.stdout(`device "${id}" ${what}: ${labelsOrNone(result.labels)}\n`);
  return EXIT.ok;
}

/** The `device` command. */
export const deviceCommand: Command = {
  name: "device",
  summary: "Provision, register, label, revoke and list devices",
  usage:
    "device add ID [--label k=v]... [--server URL]... [--tls-ca FILE] [--expires 90d] --dir DIR\n" +
    "       drover-operator device register ID [KEY=VALUE]...\n" +
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
    "           secrets are sealed to it; secret, 0600) and DIR/ID.toml (agent config with the",
    `           device's paths: creds ${DEVICE_CREDS_PATH}, sealing key`,
    `           ${DEVICE_SEALING_KEY_PATH}, state_dir /var/lib/drover; install the three with`,
    "           systemd/install.sh --config ID.toml --creds ID.creds --sealing-key ID.xk),",
    "           then registers the device with its --label set and the sealing key's public",
    "           half in the registry. Adding a revoked id again rotates both keys.",
    "           The device lives in the DROVER_DEVICES account: it may only read its own",
    "           desired-state keys ID.*, ask for their list, and write agent-status/ID.",
    "           --expires DURATION makes the creds stop working after that long (e.g. 90d);",
    "           without it they never expire and only revocation cuts the device off.",
    "           --tls-ca is the CA of the NATS server: used for this connection and written",
    "           into the agent config as [nats] tls_ca.",
    "register   registers a device in the registry without creds (e.g. one authenticated",
    "           otherwise), with these labels; an existing entry gets them as label does.",
    "label      sets (KEY=VALUE) and removes (KEY-) registry labels, kubectl style, of a",
    "           registered device; an unknown id fails (with the likely intended one) and",
    "           changes nothing. Deployments follow within a reconcile pass.",
    "unregister removes the device's registry entry: no label selector targets it any more.",
    "revoke     adds the device's key to the account's revocation list, rewrites",
    "           DIR/nats-auth.conf and removes the registry entry. The server applies the",
    "           revocation on reload: `nats-server --signal reload` (or SIGHUP); the device's",
    "           connections are then closed and refused.",
    "list       shows every device issued from DIR with its current registry labels (without",
    "           NATS: the labels given at add, with a warning).",
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
                [`register them with: device register ${id} ${formatEdits(labels)}`],
                { cause: e },
              );
            }
            io.stdout(
              [
                `device "${id}" added`,
                `  creds:  ${result.credsPath}`,
                `  config: ${result.configPath}`,
                `  sealing key: ${result.sealingKeyPath} (secrets are sealed to it)`,
                `  labels: ${labelsOrNone(registered)} (device registry)`,
                `  expires: ${expiresAt?.toISOString() ?? "never (revoke to cut it off)"}`,
                "copy the three to the device and install them there with",
                `  systemd/install.sh --config ${id}.toml --creds ${id}.creds --sealing-key ${id}.xk`,
                `  (the config expects them at ${DEVICE_CREDS_PATH} and ${DEVICE_SEALING_KEY_PATH})`,
                "",
              ].join("\n"),
            );
            return EXIT.ok;
          } finally {
            await nc.close();
          }
        }
        case "label":
        case "register": {
          const [id, ...pairs] = rest;
          if (id === undefined) {
            throw new UsageError(`Missing device ID: device ${sub} ID KEY=VALUE...`, "device");
          }
          return await runLabel(values, io, id, pairs, sub === "register");
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
          const authDirPath = dir();
          const devices = await deviceList(authDirPath);
          // Targeting uses the registry's labels, which `device label` changes after `add`:
          // those are shown; the labels given at `add` only when NATS cannot be reached.
          const current = await registryLabels(
            values,
            io,
            authDirPath,
            devices.filter((d) => !d.revokedAt).map((d) => d.id),
          );
          if (format === "json") {
            io.stdout(
              JSON.stringify(
                devices.map((d) => ({
                  ...d,
                  ...(current === undefined ? {} : { registryLabels: current.get(d.id) ?? null }),
                })),
                null,
                2,
              ) + "\n",
            );
            return EXIT.ok;
          }
          const labelsOf = (d: (typeof devices)[number]) => {
            if (current === undefined) return formatLabels(d.labels) || "-";
            if (d.revokedAt) return "-";
            const registered = current.get(d.id);
            return registered === undefined ? "(not registered)" : formatLabels(registered) || "-";
          };
          const now = Date.now();
          const stateOf = (d: (typeof devices)[number]) =>
            d.revokedAt
              ? "revoked"
              : d.expiresAt !== undefined && Date.parse(d.expiresAt) <= now
              ? "expired"
              : "active";
          io.stdout(table(
            ["ID", "STATE", "LABELS", "CREATED", "EXPIRES"],
            devices.map((d) => [
              d.id,
              stateOf(d),
              labelsOf(d),
              d.createdAt,
              d.expiresAt ?? "never",
            ]),
          ));
          return EXIT.ok;
        }
        case undefined:
          throw new UsageError(
            "Missing subcommand: device add|register|label|unregister|revoke|list",
            "device",
          );
        default:
          throw new UsageError(
            `Unknown subcommand "device ${sub}": expected add, register, label, unregister, ` +
              "revoke or list",
            "device",
          );
      }
    } catch (e) {
      throw mapInputError(e);
    }
  },
};
