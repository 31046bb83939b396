/**
 * The agent's NATS connection: every auth option of `[nats]`, the per-device
 * inbox prefix the server's permissions expect, reconnection forever with
 * jittered backoff, and an initial connect that retries in the background
 * (the agent runs from its cache meanwhile) instead of failing.
 *
 * @module
 */

import {
  type Authenticator,
  type ConnectionOptions,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from "@nats-io/nats-core";
import { NatsConnectionImpl, setTransportFactory } from "@nats-io/nats-core/internal";
import { DenoTransport, needsNodeTransport } from "./deno_transport.ts";
import type { NatsConfig } from "@drover/contracts";
import { abortableSleep, Backoff, type BackoffOptions } from "@drover/common";

/** Backoff between connection attempts (initial connect and reconnects). */
export const CONNECT_BACKOFF: Readonly<BackoffOptions> = {
  baseMs: 250,
  capMs: 10_000,
  factor: 2,
  jitter: 0.5,
};

/** The inbox prefix a device uses; its NATS permissions only allow subscribing below it. */
export function inboxPrefix(deviceId: string): string {
  return `_INBOX_${deviceId}`;
}

/** Connection name shown in the server's monitoring (`/connz`). */
export function connectionName(deviceId: string): string {
  return `drover-agent-${deviceId}`;
}

/**
 * Builds nats.js options from `[nats]`. Secret files (creds, nkey seed) are
 * read on every (re)connect, so rotating them needs no restart; TLS files are
 * read by the transport itself.
 */
export function connectionOptions(
  deviceId: string,
  nats: NatsConfig,
  backoff: { next(): number } = new ReconnectDelay(),
  readFile: (path: string) => Uint8Array = Deno.readFileSync,
): ConnectionOptions {
  const authenticator: Authenticator[] = [];
  if (nats.creds !== undefined) {
    const path = nats.creds;
    authenticator.push(credsAuthenticator(() => readFile(path)));
  }
  if (nats.nkey_seed !== undefined) {
    const path = nats.nkey_seed;
    // A seed file may end with a newline; nkeys wants the bare seed.
    authenticator.push(nkeyAuthenticator(() => trimBytes(readFile(path))));
  }
  if (nats.token !== undefined) authenticator.push(tokenAuthenticator(nats.token));
  if (nats.user !== undefined) {
    authenticator.push(usernamePasswordAuthenticator(nats.user, nats.password));
  }
  const tls = nats.tls_ca !== undefined || nats.tls_cert !== undefined
    ? {
      ...(nats.tls_ca !== undefined ? { caFile: nats.tls_ca } : {}),
      ...(nats.tls_cert !== undefined ? { certFile: nats.tls_cert } : {}),
      ...(nats.tls_key !== undefined ? { keyFile: nats.tls_key } : {}),
    }
    : undefined;
  return {
    servers: nats.servers,
    name: connectionName(deviceId),
    inboxPrefix: inboxPrefix(deviceId),
    maxReconnectAttempts: -1,
    reconnectDelayHandler: () => backoff.next(),
    // The first connect is retried by connectWithRetry, which can be cancelled.
    waitOnFirstConnect: false,
    pingInterval: 20_000,
    maxPingOut: 3,
    // Otherwise every request (each direct get, each status put) builds an
    // Error up front only to give a possible timeout a stack trace: a tenth of
    // the agent's CPU per change (bench/agent_cpu.ts). Errors keep their message.
    noAsyncTraces: true,
    ...(authenticator.length > 0 ? { authenticator } : {}),
    ...(tls !== undefined ? { tls } : {}),
  };
}

/**
 * Delays before reconnect attempts: grows while the server stays away, starts
 * small again once a connection succeeded (`reset()`).
 */
export function reconnectBackoff(): Backoff {
  return new Backoff(CONNECT_BACKOFF);
}

/**
 * Delay before the next reconnect dial when the connection has been down for
 * `downForMs`: about as long again (so dials thin out geometrically), at least
 * 250 ms and at most 10 s, minus up to half at random. Pure.
 *
 * Based on time, not on a count: nats.js asks its `reconnectDelayHandler` on
 * every turn of its dial loop, including turns that only wait, so a counter
 * reached the 10 s cap after a few dials and a fleet came back 5–10 s after
 * its server did (measured: reconnect storm, bench/RESULTS.md). The jitter
 * spreads a fleet's dials so a restarted server is not hit by all at once.
 */
export function reconnectDelayMs(downForMs: number, random: () => number = Math.random): number {
  const raw = Math.min(CONNECT_BACKOFF.capMs, Math.max(CONNECT_BACKOFF.baseMs, downForMs));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(raw * (1 - (CONNECT_BACKOFF.jitter ?? 0) * r));
}

/** Reconnect delays from how long the connection has been down ({@linkcode reconnectDelayMs}). */
export class ReconnectDelay {
  readonly #now: () => number;
  #downSince: number | undefined;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** The connection was lost (the first call of an outage counts). */
  down(): void {
    this.#downSince ??= this.#now();
  }

  /** Connected again. */
  reset(): void {
    this.#downSince = undefined;
  }

  /** The delay before the next dial (the handler nats.js calls). */
  next(): number {
    this.down();
    return reconnectDelayMs(this.#now() - this.#downSince!);
  }
}

function trimBytes(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  while (
    end > 0 && (bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d || bytes[end - 1] === 0x20)
  ) {
    end--;
  }
  return bytes.subarray(0, end);
}

/**
 * Connects over Deno's own sockets ({@linkcode DenoTransport}); only a client certificate (which
 * `Deno.startTls` cannot present) loads `@nats-io/transport-node` and the Node layer under it.
 * nats-core's transport factory is process-wide: the agent has one connection.
 */
export async function natsConnect(options: ConnectionOptions): Promise<NatsConnection> {
  if (needsNodeTransport(options)) {
    const { connect } = await import("@nats-io/transport-node");
    return await connect(options);
  }
  setTransportFactory({ factory: () => new DenoTransport(), defaultPort: 4222 });
  return await NatsConnectionImpl.connect(options);
}

/** Hooks of {@linkcode connectWithRetry}. */
export interface ConnectHooks {
  /** Called after each failed attempt with the error and the delay before the next. */
  onAttemptFailed?: (error: unknown, attempt: number, retryInMs: number) => void;
}

/**
 * Connects, retrying with capped jittered backoff until it works or `signal`
 * aborts (then resolves `undefined`). Never rejects for connection errors.
 */
export async function connectWithRetry(
  options: ConnectionOptions,
  signal: AbortSignal,
  hooks: ConnectHooks = {},
): Promise<NatsConnection | undefined> {
  const backoff = reconnectBackoff();
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const nc = await natsConnect(options);
      if (signal.aborted) {
        await nc.close().catch(() => {});
        return undefined;
      }
      return nc;
    } catch (e) {
      const delay = backoff.next();
      hooks.onAttemptFailed?.(e, attempt, delay);
      await abortableSleep(delay, signal);
    }
  }
  return undefined;
}
