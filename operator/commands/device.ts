/**
 * `device add|revoke|list`: provision a device's NATS identity (creds plus a
 * ready agent config), revoke it, list what was issued.
 *
 * @module
 */

import { type Command, EXIT, InvalidInputError, UsageError } from "../cli.ts";
import { AuthInputError, deviceAdd, deviceList, deviceRevoke } from "../auth/mod.ts";
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
  if (e instanceof AuthInputError) return new InvalidInputError(e.message, [], { cause: e });
  return cliAuthError(e);
}

/** The `device` command. */
export const deviceCommand: Command = {
  name: "device",
  summary: "Provision, revoke and list device identities",
  usage: "device add ID [--label k=v]... [--server URL]... [--tls-ca FILE] --dir DIR\n" +
    "       drover-operator device revoke ID --dir DIR\n" +
    "       drover-operator device list --dir DIR [-o json]",
  description: [
    "add     writes DIR/ID.creds (secret, 0600) and DIR/ID.toml (agent config using it).",
    "        The device may only watch/read desired-state keys ID.> and write agent-status/ID.",
    "revoke  adds the device's key to the account's revocation list and rewrites",
    "        DIR/nats-auth.conf. The server applies it on reload: `nats-server --signal reload`",
    "        (or SIGHUP); the device's connections are then closed and refused.",
    "list    shows every device issued from DIR.",
  ].join("\n"),
  options: {
    ...AUTH_DIR_OPTION,
    label: {
      type: "string",
      multiple: true,
      value: "KEY=VALUE",
      description: "Device label (repeatable; add only)",
    },
    server: {
      type: "string",
      multiple: true,
      value: "URL",
      description: "NATS URL written into the agent config (repeatable; add only)",
    },
    "tls-ca": {
      type: "string",
      value: "FILE",
      description: "CA file written into the agent config as [nats] tls_ca (add only)",
    },
    output: {
      type: "string",
      short: "o",
      value: "FORMAT",
      description: '"table" (default) or "json" (list only)',
    },
  },
  connects: false,
  async run({ values, positionals, io }) {
    const [sub, ...rest] = positionals;
    const dir = () => authDir(values, io.env, "device");
    const oneId = () => {
      if (rest.length === 0) throw new UsageError(`Missing device ID: device ${sub} ID`, "device");
      if (rest.length > 1) throw new UsageError(`Unexpected argument "${rest[1]}"`, "device");
      return rest[0];
    };
    try {
      switch (sub) {
        case "add": {
          const id = oneId();
          const servers = asList(values.server);
          const tlsCa = typeof values["tls-ca"] === "string" ? values["tls-ca"] : undefined;
          const result = await deviceAdd(dir(), id, {
            labels: parseLabelArgs(asList(values.label)),
            ...(servers.length > 0 ? { servers } : {}),
            ...(tlsCa !== undefined ? { tlsCa } : {}),
          });
          io.stdout(
            [
              `device "${id}" added`,
              `  creds:  ${result.credsPath}`,
              `  config: ${result.configPath}`,
              "copy both to the device (fix the creds path in the config if it differs there)",
              "",
            ].join("\n"),
          );
          return EXIT.ok;
        }
        case "revoke": {
          const id = oneId();
          const result = await deviceRevoke(dir(), id);
          io.stdout(
            [
              result.changed ? `device "${id}" revoked` : `device "${id}" was already revoked`,
              `  rewrote ${result.confPath}`,
              "  reload nats-server to apply: nats-server --signal reload (or kill -HUP <pid>)",
              "",
            ].join("\n"),
          );
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
          const rows = [["ID", "STATE", "LABELS", "CREATED"]].concat(devices.map((d) => [
            d.id,
            d.revokedAt ? "revoked" : "active",
            Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(",") || "-",
            d.createdAt,
          ]));
          const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
          io.stdout(
            rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join(
              "\n",
            ) + "\n",
          );
          return EXIT.ok;
        }
        case undefined:
          throw new UsageError("Missing subcommand: device add|revoke|list", "device");
        default:
          throw new UsageError(
            `Unknown subcommand "device ${sub}": expected add, revoke or list`,
            "device",
          );
      }
    } catch (e) {
      throw mapInputError(e);
    }
  },
};
