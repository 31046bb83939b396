/**
 * Connecting to NATS with resolved settings (the command line's options for them are in
 * commands/connection_options.ts).
 *
 * @module
 */

import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { credsIdentity, redactUrl } from "@drover/contracts";

/**
 * NATS was not reachable with the settings given (a file unreadable, the
 * servers down, the credentials refused or the wrong ones); `details` say what
 * to do about it.
 */
export class NatsConnectionError extends Error {
  override name = "NatsConnectionError";
  readonly details: string[];
  constructor(message: string, details: string[] = [], options?: ErrorOptions) {
    super(message, options);
    this.details = details;
  }
}

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

/** Connects to NATS; a long-lived caller passes `reconnectForever`. */
export async function connectNats(
  settings: ConnectionSettings,
  options: { name: string; reconnectForever?: boolean; inboxPrefix?: string },
): Promise<NatsConnection> {
  let authenticator;
  if (settings.creds !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(settings.creds);
    } catch (e) {
      throw new NatsConnectionError(
        `Cannot read credentials file ${settings.creds}: ${(e as Error).message}`,
        [],
        { cause: e },
      );
    }
    // A device's creds reach the server but none of the operator's buckets: say so now.
    const identity = credsIdentity(new TextDecoder().decode(bytes));
    if (identity?.kind === "device") {
      throw new NatsConnectionError(
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
      throw new NatsConnectionError(message, [], { cause: e });
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
      ...(options.inboxPrefix !== undefined ? { inboxPrefix: options.inboxPrefix } : {}),
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
    throw new NatsConnectionError(
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
