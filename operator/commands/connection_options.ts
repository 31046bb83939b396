/**
 * The NATS connection options every command that connects accepts (`--nats`, `--creds`, …,
 * with the environment variables the `nats` CLI uses), resolved to connection settings.
 *
 * @module
 */

import { DEFAULT_NATS_SERVER } from "@drover/contracts";
import { type OptionSpecs, type OptionValues, stringOption, UsageError } from "./cli.ts";
import type { ConnectionSettings } from "../nats/connection.ts";

/** Options every command that talks to NATS accepts. */
export const CONNECTION_OPTIONS: OptionSpecs = {
  nats: {
    type: "string",
    value: "URL",
    description: `NATS server(s), comma-separated (env NATS_URL; default ${DEFAULT_NATS_SERVER})`,
  },
  creds: {
    type: "string",
    value: "FILE",
    description: "Credentials file (env NATS_CREDS)",
    path: { env: "NATS_CREDS" },
  },
  user: { type: "string", value: "USER", description: "User name (env NATS_USER)" },
  password: { type: "string", value: "PASSWORD", description: "Password (env NATS_PASSWORD)" },
  token: { type: "string", value: "TOKEN", description: "Auth token (env NATS_TOKEN)" },
  "tls-ca": {
    type: "string",
    value: "FILE",
    description: "CA certificate (env NATS_CA)",
    path: { env: "NATS_CA" },
  },
  "tls-cert": {
    type: "string",
    value: "FILE",
    description: "Client certificate (env NATS_CERT)",
    path: { env: "NATS_CERT" },
  },
  "tls-key": {
    type: "string",
    value: "FILE",
    description: "Client key (env NATS_KEY)",
    path: { env: "NATS_KEY" },
  },
};

const ENV: Record<string, string> = {
  nats: "NATS_URL",
  creds: "NATS_CREDS",
  user: "NATS_USER",
  password: "NATS_PASSWORD",
  token: "NATS_TOKEN",
  "tls-ca": "NATS_CA",
  "tls-cert": "NATS_CERT",
  "tls-key": "NATS_KEY",
};

/** Resolves settings from options, then environment, then defaults. Pure. */
export function connectionSettings(
  values: OptionValues,
  env: (name: string) => string | undefined,
): ConnectionSettings {
  const pick = (name: string) => {
    const variable = ENV[name];
    const v = stringOption(values, name) ?? (variable !== undefined ? env(variable) : undefined);
    return v === "" ? undefined : v;
  };
  const servers = (pick("nats") ?? DEFAULT_NATS_SERVER).split(",").map((s) => s.trim())
    .filter((s) => s !== "");
  if (servers.length === 0) throw new UsageError("--nats needs at least one server URL");
  const settings: ConnectionSettings = { servers };
  const set = (field: keyof Omit<ConnectionSettings, "servers">, name: string) => {
    const v = pick(name);
    if (v !== undefined) settings[field] = v;
  };
  set("creds", "creds");
  set("user", "user");
  set("password", "password");
  set("token", "token");
  set("tlsCa", "tls-ca");
  set("tlsCert", "tls-cert");
  set("tlsKey", "tls-key");
  if (settings.password !== undefined && settings.user === undefined) {
    throw new UsageError("--password needs --user");
  }
  if ((settings.tlsCert === undefined) !== (settings.tlsKey === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  return settings;
}
