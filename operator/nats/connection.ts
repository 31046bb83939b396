/**
 * NATS connection options shared by every command (`--nats`, `--creds`, …,
 * with the environment variables the `nats` CLI uses), and connecting.
 *
 * @module
 */

import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { credsIdentity, DEFAULT_NATS_SERVER, redactUrl } from "@drover/contracts";
import {
  OperationError,
  type OptionSpecs,
  type OptionValues,
  stringOption,
  UsageError,
} from "../commands/cli.ts";

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

/** Resolved connection settings. */
export interface ConnectionSettings {
  servers: string[];
  creds?: string;
  user?: string;
  password?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

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

/** Connects to NATS; a long-lived caller passes `reconnectForever`. */
export async function connectNats(
  settings: ConnectionSettings,
  options: { name: string; reconnectForever?: boolean },
): Promise<NatsConnection> {
  let authenticator;
  if (settings.creds !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(settings.creds);
    } catch (e) {
      throw new OperationError(
        `Cannot read credentials file ${settings.creds}: ${(e as Error).message}`,
        [],
        { cause: e },
      );
    }
    // A device's creds reach the server but none of the operator's buckets: say so now.
    const identity = credsIdentity(new TextDecoder().decode(bytes));
    if (identity?.kind === "device") {
      throw new OperationError(
        `${settings.creds} holds device "${identity.device}"'s credentials: operator commands ` +
          "need the operator's",
        [
          'use the auth directory\'s operator.creds ("operator auth init --dir DIR" made it): ' +
          "--creds DIR/operator.creds or NATS_CREDS",
        ],
      );
    }
    authenticator = credsAuthenticator(bytes);
  }
  // The NATS client reads these only during the TLS handshake, and its error then names
  // neither the option nor the file; a missing file is better named now.
  const tlsFiles: [string, string | undefined][] = [
    ["CA", settings.tlsCa],
    ["certificate", settings.tlsCert],
    ["key", settings.tlsKey],
  ];
  for (const [what, path] of tlsFiles) {
    if (path === undefined) continue;
    try {
      (await Deno.open(path, { read: true })).close();
    } catch (e) {
      const message = `Cannot read TLS ${what} file ${path}: ${(e as Error).message}`;
      throw new OperationError(message, [], { cause: e });
    }
  }
  const tls = settings.tlsCa || settings.tlsCert
    ? {
      ...(settings.tlsCa ? { caFile: settings.tlsCa } : {}),
      ...(settings.tlsCert ? { certFile: settings.tlsCert, keyFile: settings.tlsKey } : {}),
    }
    : undefined;
  try {
    return await connect({
      servers: settings.servers,
      name: options.name,
      ...(settings.user !== undefined ? { user: settings.user, pass: settings.password } : {}),
      ...(settings.token !== undefined ? { token: settings.token } : {}),
      ...(authenticator ? { authenticator } : {}),
      ...(tls ? { tls } : {}),
      ...(options.reconnectForever
        ? { maxReconnectAttempts: -1, waitOnFirstConnect: true }
        : { maxReconnectAttempts: 2 }),
    });
  } catch (e) {
    // Neither the URLs nor the client's message (an unparsable URL is quoted in it) may show
    // a password or token given in a URL.
    const message = redactUrl((e as Error).message);
    throw new OperationError(
      `Cannot connect to NATS at ${serversForDisplay(settings.servers)}: ${message}`,
      authorizationHint(message, settings),
      { cause: e },
    );
  }
}

/**
 * What to do about a refused login: with no credentials given, how to give
 * them; with some, that the server did not accept these. Empty for other
 * errors. Pure.
 */
export function authorizationHint(message: string, settings: ConnectionSettings): string[] {
  if (!/authoriz|authentication/i.test(message)) return [];
  const given = settings.creds !== undefined || settings.user !== undefined ||
    settings.token !== undefined;
  if (!given) {
    return ["the server requires credentials: pass --creds FILE or set NATS_CREDS"];
  }
  return [
    settings.creds !== undefined
      ? `the server refused the credentials in ${settings.creds} (revoked, expired, or ` +
        "made for another server?)"
      : "the server refused the user/password or token given",
  ];
}

/** The servers as they may be logged or printed: comma-separated, credentials redacted. Pure. */
export function serversForDisplay(servers: readonly string[]): string {
  return servers.map(redactUrl).join(",");
}
