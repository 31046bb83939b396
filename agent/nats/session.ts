/**
 * The agent's side of NATS as one long-lived task: connect (retrying in the
 * background for as long as it takes), follow desired state, hand the status
 * publisher a way to write, and take a fresh snapshot after every reconnect
 * so nothing is missed. Everything goes through plain request/reply and one
 * subscription: a device has no JetStream API (docs/security.md).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "@logtape/logtape";
import { heartbeatSubject, type NatsConfig } from "@drover/contracts";
import { untilAborted, withinMs } from "@drover/common";
import { connectionOptions, connectWithRetry, ReconnectDelay } from "./connect.ts";
import type { DesiredSink } from "./desired_record.ts";
import { DesiredFollower, type DesiredFollowOptions } from "./desired_follow.ts";
import { DroverRequestError, putStatus } from "./requests.ts";
import type { StatusStore } from "../status.ts";
import { errorText } from "../log.ts";
import {
  formatDuration,
  OUTAGE_REPORT_EVERY_MS,
  type OutageReport,
  OutageTracker,
} from "./outage.ts";

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
  /** While NATS is unreachable, a log line this often (ms; default one minute). */
  outageReportMs?: number;
  /**
   * Runs beside the follower on each new connection until `signal` aborts or
   * the connection closes (the device commands' subscription).
   */
  onConnection?: (nc: NatsConnection, signal: AbortSignal) => Promise<void>;
  /** Told each time the connection is re-established after a loss (metrics). */
  onReconnect?: () => void;
}

/** Connection, watch and status bucket, supervised until stopped. */
export class NatsSession {
  readonly #options: NatsSessionOptions;
  readonly #backoff = new ReconnectDelay();
  #nc: NatsConnection | undefined;
  #connected = false;
  readonly #outage: OutageTracker;
  #outageTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: NatsSessionOptions) {
    this.#options = options;
    this.#outage = new OutageTracker(options.outageReportMs ?? OUTAGE_REPORT_EVERY_MS);
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
    const servers = nats.servers.join(",");
    try {
      while (!signal.aborted) {
        const nc = await connectWithRetry(options, signal, {
          onAttemptFailed: (error, attempt) => {
            const text = errorText(error);
            log.debug("NATS connection attempt {attempt} failed: {error}", {
              attempt: attempt + 1,
              error: text,
            });
            this.#report(this.#outage.attemptFailed(performance.now(), text), servers, "first");
          },
        });
        if (nc === undefined) return;
        this.#nc = nc;
        this.#connected = true;
        this.#backoff.reset();
        this.#report(this.#outage.connected(performance.now()), nc.getServer(), "first");
        await this.#serve(nc, signal);
        this.#connected = false;
        if (signal.aborted) return;
        // The client gave up on this connection for good (it retries forever, so
        // this means e.g. an auth error); start over with a fresh one.
        this.#nc = undefined;
        this.#options.setStatusStore(undefined);
        this.#report(this.#outage.lost(performance.now(), "connection closed"), servers);
        await nc.close().catch(() => {});
      }
    } finally {
      clearTimeout(this.#outageTimer);
    }
  }

  /**
   * Logs an outage line (the start and the periodic ones as warnings, the end
   * at info) and keeps the timer of the next periodic one. `server` is where
   * it connected (end) or what it tries (start); `connection` says whether the
   * session had connected before ("again") or not ("first").
   */
  #report(
    report: OutageReport | undefined,
    server: string,
    connection?: "first" | "again",
  ): void {
    const { log } = this.#options;
    clearTimeout(this.#outageTimer);
    this.#outageTimer = undefined;
    if (report === undefined) {
      if (connection !== undefined) log.info("Connected to NATS at {server}", { server });
    } else if (report.kind === "start") {
      log.warn(
        (connection === "first" ? "Cannot connect to NATS" : "Lost the connection to NATS") +
          " ({error}); running the last known desired state and retrying, " +
          "reporting every {every} while it lasts",
        { server, error: report.error, every: formatDuration(this.#reportEveryMs()) },
      );
    } else if (report.kind === "ongoing") {
      log.warn(
        "NATS still unreachable after {outage}: {failedAttempts} failed attempt(s), " +
          "last error: {lastError}",
        {
          outage: formatDuration(report.durationMs),
          outageMs: Math.round(report.durationMs),
          failedAttempts: report.failedAttempts,
          lastError: report.lastError,
        },
      );
    } else {
      log.info(
        "Connected to NATS at {server} after an outage of {outage} " +
          "({failedAttempts} failed attempt(s))",
        {
          server,
          outage: formatDuration(report.durationMs),
          outageMs: Math.round(report.durationMs),
          failedAttempts: report.failedAttempts,
        },
      );
    }
    const next = this.#outage.nextReportAt;
    if (next !== undefined) {
      this.#outageTimer = setTimeout(
        () => this.#report(this.#outage.due(performance.now()), server),
        Math.max(0, next - performance.now()),
      );
    }
  }

  #reportEveryMs(): number {
    return this.#options.outageReportMs ?? OUTAGE_REPORT_EVERY_MS;
  }

  /** Serves one connection until it closes for good or `signal` aborts. */
  async #serve(nc: NatsConnection, signal: AbortSignal): Promise<void> {
    const { deviceId, sink, log } = this.#options;
    const heartbeats = heartbeatSubject(deviceId);
    const statusStore: StatusStore = {
      put: (_key, value) => putStatus(nc, deviceId, value),
      // Core NATS: nothing stored, nothing acknowledged (docs/nats-kv.md).
      heartbeat: (payload) => nc.publish(heartbeats, payload),
    };
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
      onFetchFailed: (deployment, error, retryInMs) =>
        log.warn(
          "Cannot read desired state of {deployment}: {error}; retrying in {retryInMs} ms",
          { deployment, error: errorText(error), retryInMs },
        ),
      onHintFlood: (count, pauseMs) =>
        log.warn(
          "{count} change hints for keys this device does not hold within a second (forged by " +
            "another device?): not listening to hints for {pauseMs} ms, polling snapshots instead",
          { count, pauseMs },
        ),
      onBadKey: (key, problem) =>
        log.warn("Ignoring desired-state key {key}: {problem}", { key, problem }),
      onSnapshot: (count, asOfRevision) =>
        log.info("Desired state loaded: {count} deployment(s), as of revision {asOfRevision}", {
          count,
          asOfRevision,
        }),
    }, this.#options.follow);
    const following = follower.run(session.signal);
    const serving = this.#options.onConnection?.(nc, session.signal).catch((e) =>
      log.warn("Device commands stopped: {error}", { error: errorText(e) })
    );
    const statusEvents = (async () => {
      for await (const s of nc.status()) {
        switch (s.type) {
          case "disconnect":
            this.#connected = false;
            this.#backoff.down();
            this.#options.setStatusStore(undefined);
            this.#report(
              this.#outage.lost(performance.now(), `connection to ${s.server} lost`),
              s.server,
            );
            break;
          case "reconnecting":
            // nats.js dials again (it never says why a dial failed: the next dial means it did).
            this.#outage.dialing(performance.now());
            break;
          case "reconnect":
            this.#connected = true;
            this.#backoff.reset();
            this.#report(this.#outage.connected(performance.now()), s.server, "again");
            this.#options.setStatusStore(statusStore);
            // Changes published while disconnected were missed: take a fresh snapshot.
            follower.restart();
            this.#options.onReconnect?.();
            break;
          case "error":
            log.warn("NATS error: {error}", { error: errorText(s.error) });
            this.#outage.error(errorText(s.error));
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
      untilAborted(signal),
    ]);
    session.abort();
    signal.removeEventListener("abort", stop);
    await following;
    await serving;
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
