/**
 * Connecting to NATS with resolved settings (the command line's options for them are in
 * commands/connection_options.ts).
 *
 * @module
 */

import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { redactUrl } from "@drover/contracts";

/** NATS was not reachable with the settings given (a file unreadable, the servers down). */
export class NatsConnectionError extends Error {
  override name = "NatsConnectionError";
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
  options: { name: string; reconnectForever?: boolean },
): Promise<NatsConnection> {
  let authenticator;
  if (settings.creds !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(settings.creds);
    } catch (e) {
      throw new NatsConnectionError(
        `Cannot read credentials file ${settings.creds}: ${(e as Error).message}`,
        { cause: e },
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
      throw new NatsConnectionError(message, { cause: e });
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
    throw new NatsConnectionError(
      `Cannot connect to NATS at ${serversForDisplay(settings.servers)}: ${
        redactUrl((e as Error).message)
      }`,
      { cause: e },
    );
  }
}

/** The servers as they may be logged or printed: comma-separated, credentials redacted. Pure. */
export function serversForDisplay(servers: readonly string[]): string {
  return servers.map(redactUrl).join(",");
}
