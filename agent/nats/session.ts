/**
 * The agent's side of NATS as one long-lived task: connect (retrying in the
 * background for as long as it takes), follow desired state, hand the status
 * publisher a way to write, and take a fresh snapshot after every reconnect
 * so nothing is missed. Everything goes through plain request/reply and one
 * subscription: a device has no JetStream API (docs/security.md).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "@logtape/logtape";
import type { NatsConfig } from "@drover/contracts";
import { withinMs } from "@drover/common";
import { connectionOptions, connectWithRetry, reconnectBackoff } from "./connect.ts";
import type { DesiredSink } from "./desired_record.ts";
import { DesiredFollower, type DesiredFollowOptions } from "./desired_follow.ts";
import { DroverRequestError, putStatus } from "./requests.ts";
import type { StatusStore } from "../status.ts";
import { errorText } from "../log.ts";

/** Options of {@linkcode NatsSession}. */
export interface NatsSessionOptions {
  deviceId: string;
  nats: NatsConfig;
  /** Receives desired state. */
  sink: DesiredSink;
  /** Told where to publish status (or that it cannot, while disconnected). */
  setStatusStore: (store: StatusStore | undefined) => void;
  log: Logger;
  /** Resync period and request time limit of the desired-state follower. */
  follow?: DesiredFollowOptions;
}

/** Connection, watch and status bucket, supervised until stopped. */
export class NatsSession {
  readonly #options: NatsSessionOptions;
  readonly #backoff = reconnectBackoff();
  #nc: NatsConnection | undefined;
  #connected = false;

  constructor(options: NatsSessionOptions) {
    this.#options = options;
  }

  /** True while connected to a server. */
  get connected(): boolean {
    return this.#connected;
  }

  /**
   * Runs until `signal` aborts. Leaves the connection open so a final status
   * can still be published; call {@linkcode close} afterwards.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { deviceId, nats, log } = this.#options;
    const options = connectionOptions(deviceId, nats, this.#backoff);
    while (!signal.aborted) {
      let failures = 0;
      const nc = await connectWithRetry(options, signal, {
        onAttemptFailed: (error, attempt, retryInMs) => {
          failures++;
          // The first failure is news; later ones only at debug, to stay quiet for days offline.
          const fields = { servers: nats.servers.join(","), error: errorText(error), retryInMs };
          if (attempt === 0) {
            log.warn("Cannot connect to NATS, running from cache meanwhile: {error}", fields);
          } else log.debug("Still cannot connect to NATS: {error}", fields);
        },
      });
      if (nc === undefined) return;
      this.#nc = nc;
      this.#connected = true;
      this.#backoff.reset();
      log.info("Connected to NATS at {server}", {
        server: nc.getServer(),
        ...(failures > 0 ? { failedAttempts: failures } : {}),
      });
      await this.#serve(nc, signal);
      this.#connected = false;
      if (signal.aborted) return;
      // The client gave up on this connection for good (it retries forever, so
      // this means e.g. an auth error); start over with a fresh one.
      this.#nc = undefined;
      this.#options.setStatusStore(undefined);
      await nc.close().catch(() => {});
    }
  }

  /** Serves one connection until it closes for good or `signal` aborts. */
  async #serve(nc: NatsConnection, signal: AbortSignal): Promise<void> {
    const { deviceId, sink, log } = this.#options;
    const statusStore: StatusStore = { put: (_key, value) => putStatus(nc, deviceId, value) };
    this.#options.setStatusStore(statusStore);

    const session = new AbortController();
    const stop = () => session.abort(signal.reason);
    signal.addEventListener("abort", stop, { once: true });
    const follower = new DesiredFollower(nc, deviceId, sink, {
      onSnapshotFailed: (error, retryInMs) => {
        const reason = error instanceof DroverRequestError ? error.reason : undefined;
        const fields = { error: errorText(error), retryInMs };
        if (reason === "no-responders" || reason === "timeout") {
          log.warn(
            "No operator answers desired-state snapshots ({error}); running the last known " +
              "desired state, retrying in {retryInMs} ms",
            fields,
          );
        } else log.warn("Cannot load desired state: {error}; retrying in {retryInMs} ms", fields);
      },
      onFetchFailed: (deployment, error) =>
        log.warn("Cannot read desired state of {deployment}: {error}; the next snapshot retries", {
          deployment,
          error: errorText(error),
        }),
      onBadKey: (key, problem) =>
        log.warn("Ignoring desired-state key {key}: {problem}", { key, problem }),
      onSnapshot: (count, asOfRevision) =>
        log.info("Desired state loaded: {count} deployment(s), as of revision {asOfRevision}", {
          count,
          asOfRevision,
        }),
    }, this.#options.follow);
    const following = follower.run(session.signal);
    const statusEvents = (async () => {
      for await (const s of nc.status()) {
        switch (s.type) {
          case "disconnect":
            this.#connected = false;
            this.#options.setStatusStore(undefined);
            log.warn("Disconnected from NATS; reconnecting", { server: s.server });
            break;
          case "reconnect":
            this.#connected = true;
            this.#backoff.reset();
            log.info("Reconnected to NATS at {server}", { server: s.server });
            this.#options.setStatusStore(statusStore);
            // Changes published while disconnected were missed: take a fresh snapshot.
            follower.restart();
            break;
          case "error":
            log.warn("NATS error: {error}", { error: errorText(s.error) });
            break;
        }
      }
    })();
    const closed = nc.closed().then((err) => {
      if (err !== undefined && !signal.aborted) {
        log.error("NATS connection closed: {error}", { error: errorText(err) });
      }
    });
    await Promise.race([
      closed,
      new Promise((r) => signal.addEventListener("abort", r, { once: true })),
    ]);
    session.abort();
    signal.removeEventListener("abort", stop);
    await following;
    void statusEvents;
  }

  /**
   * Flushes and closes the connection (drain), waiting at most `timeoutMs`.
   */
  async close(timeoutMs: number): Promise<void> {
    const nc = this.#nc;
    this.#nc = undefined;
    if (nc === undefined || nc.isClosed()) return;
    try {
      await withinMs(nc.drain().catch(() => {}), timeoutMs);
    } finally {
      if (!nc.isClosed()) await nc.close().catch(() => {});
    }
  }
}
