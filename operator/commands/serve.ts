/**
 * `serve`: the operator service. Creates missing buckets, keeps desired
 * state equal to the fan-out of the manifests, and serves the HTTP API.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { abortableSleep, Backoff, type BackoffOptions } from "@drover/common";
import { type Command, EXIT, type OptionValues, stringOption, UsageError } from "./cli.ts";
import { connectionSettings, connectNats, serversForDisplay } from "../nats/connection.ts";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type Buckets,
  type BucketSettings,
  DEFAULT_HISTORY,
  DEFAULT_REPLICAS,
  ensureBuckets,
} from "../nats/kv.ts";
import { Reconciler } from "../desired/fanout_controller.ts";
import { Lease } from "../nats/lease.ts";
import { ensureRolloutBuckets } from "../rollout/store.ts";
import { DesiredSnapshotService } from "../devices/snapshots.ts";
import { ArtifactService } from "../devices/artifacts.ts";
import { HeartbeatListener } from "../fleet/heartbeats.ts";
import { API_TOKEN_ENV, checkApiExposure, createApi } from "../api/http.ts";
import { natsDeviceRequests } from "../devices/requests.ts";
import { OperatorMetrics } from "../api/metrics.ts";
import { OPERATOR_VERSION } from "../version.ts";
import { Dashboard } from "../api/dashboard/mod.ts";
import { type DeploymentRolloutInfo, deploymentRolloutInfo } from "../rollout/view.ts";
import { ensureSecretsKey, openSecretsBucket } from "../secrets/store.ts";

const log = getLogger(["drover", "operator", "serve"]);

/** Default `--listen` address. */
export const DEFAULT_LISTEN = "127.0.0.1:8080";

/** Parsed `HOST:PORT`. */
export interface ListenAddress {
  hostname: string;
  port: number;
}

/** Parses `HOST:PORT` (`[::1]:8080` for IPv6). Pure. */
export function parseListen(text: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:]+)\]|([^:\[\]]+)):([0-9]{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new UsageError(
      `Invalid --listen "${text}": expected HOST:PORT, e.g. 127.0.0.1:8080`,
      "serve",
    );
  }
  // The pattern matched one of the two alternatives; the other group is undefined.
  return { hostname: match[1] ?? match[2] ?? "", port };
}

function positiveInt(values: OptionValues, name: string, fallback: number): number {
  const text = stringOption(values, name);
  if (text === undefined) return fallback;
  if (!/^[0-9]+$/.test(text) || Number(text) < 1) {
    throw new UsageError(
      `Invalid --${name} "${text}": expected a whole number of at least 1`,
      "serve",
    );
  }
  return Number(text);
}

/** Waits between attempts to open the buckets: 500 ms doubling up to 10 s. */
const OPEN_BUCKETS_BACKOFF: Readonly<BackoffOptions> = { baseMs: 500, capMs: 10_000, jitter: 0 };

/**
 * Opens (creating if needed) the buckets, retrying while JetStream is not
 * reachable yet: a service started before its NATS server must wait, not
 * exit. Returns `undefined` when stopped first.
 */
async function openBucketsPatiently(
  nc: NatsConnection,
  settings: BucketSettings,
  signal: AbortSignal,
): Promise<Buckets | undefined> {
  const backoff = new Backoff(OPEN_BUCKETS_BACKOFF);
  while (!signal.aborted) {
    try {
      return await ensureBuckets(nc, settings);
    } catch (e) {
      const delayMs = backoff.next();
      log.warn("Cannot open buckets yet, retrying in {delayMs} ms: {error}", {
        delayMs,
        error: (e as Error).message,
      });
      await abortableSleep(delayMs, signal);
    }
  }
  return undefined;
}

/** The `serve` command. */
export const serveCommand: Command = {
  name: "serve",
  summary: "Run the operator service (fan-out loop and HTTP API)",
  usage: "serve [--listen HOST:PORT] [--api-token TOKEN] [--replicas N] [--history N] [--dir DIR]",
  description:
    "Creates the desired-state, agent-status, deployments and devices buckets if missing,\n" +
    "then keeps desired-state equal to what the manifests target, writing only keys whose\n" +
    "content changes. HTTP API: GET /api/devices, /api/devices/ID/events,\n" +
    "/api/devices/ID/logs?deployment=D&service=S[&tail=N][&cursor=…], /api/deployments,\n" +
    "/api/deployments/NAME, /metrics, /healthz, and a live fleet dashboard for browsers\n" +
    "at /. With a token (--api-token or env DROVER_API_TOKEN, at least 16 characters)\n" +
    "every request but /healthz needs\n" +
    "`Authorization: Bearer TOKEN` (the dashboard: its login form); an address other than\n" +
    "loopback is refused without one (exit code 2). Stops cleanly on SIGINT/SIGTERM.\n" +
    "With --dir (or env DROVER_AUTH_DIR), the auth directory whose secrets.xk opens the\n" +
    "secret store, it seals each secret a deployment uses to every device that runs it;\n" +
    "without, such deployments are refused by their devices with the reason.\n" +
    "Log level: DROVER_LOG_LEVEL; JSON logs: DROVER_LOG_FORMAT=json.",
  options: {
    listen: {
      type: "string",
      value: "HOST:PORT",
      description: `HTTP API address (default ${DEFAULT_LISTEN})`,
    },
    "api-token": {
      type: "string",
      value: "TOKEN",
      description:
        `Bearer token the HTTP API requires (env ${API_TOKEN_ENV}; prefer it: ps shows flags)`,
    },
    replicas: {
      type: "string",
      value: "N",
      description: `JetStream replicas of buckets it creates (default ${DEFAULT_REPLICAS})`,
    },
    history: {
      type: "string",
      value: "N",
      description: `Values kept per key in buckets it creates (default ${DEFAULT_HISTORY})`,
    },
    dir: {
      type: "string",
      value: "DIR",
      description: "Auth directory holding secrets.xk, the secret store's key " +
        "(env DROVER_AUTH_DIR)",
      path: { env: "DROVER_AUTH_DIR" },
    },
  },
  connects: true,
  async run({ values, positionals, io }) {
    if (positionals.length > 0) {
      throw new UsageError(`Unexpected argument "${positionals[0]}"`, "serve");
    }
    const listen = parseListen(stringOption(values, "listen") ?? DEFAULT_LISTEN);
    const apiToken = checkApiExposure(
      listen,
      stringOption(values, "api-token"),
      io.env(API_TOKEN_ENV),
    );
    const replicas = positiveInt(values, "replicas", DEFAULT_REPLICAS);
    const history = positiveInt(values, "history", DEFAULT_HISTORY);
    const settings = connectionSettings(values, io.env);
    const secretsDir = stringOption(values, "dir") ?? io.env("DROVER_AUTH_DIR");
    // Read (created on first use) before connecting: a broken key file is a start-up error.
    const secretsKey = secretsDir ? await ensureSecretsKey(secretsDir) : undefined;

    log.info("Drover operator {version} connecting to {servers}", {
      version: OPERATOR_VERSION,
      servers: serversForDisplay(settings.servers),
    });
    const nc = await connectNats(settings, { name: "drover-operator", reconnectForever: true });
    let reconciler: Reconciler | undefined;
    let snapshots: DesiredSnapshotService | undefined;
    let artifacts: ArtifactService | undefined;
    let heartbeats: HeartbeatListener | undefined;
    let lease: Lease | undefined;
    const metrics = new OperatorMetrics({
      view: () => reconciler?.ready ? reconciler.state.view(Date.now()) : undefined,
    });
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") log.warn("NATS connection lost; reconnecting");
        if (s.type === "reconnect") {
          log.info("NATS reconnected; resuming watches");
          metrics.reconnected();
          reconciler?.rewatch();
          snapshots?.rewatch();
        }
      }
    })().catch(() => {});
    const api = createApi({
      view: () => reconciler?.state.view(Date.now()),
      unhealthy: () => {
        if (nc.isClosed()) return "NATS connection closed";
        if (reconciler === undefined || !reconciler.ready) return "starting";
        return null;
      },
      metrics: () => metrics.render(),
      deploymentDetails: (name) => rolloutInfo(name, Date.now()),
      // /api/devices/ID/events and /logs ask the device as `operator events|logs` do.
      deviceRequests: natsDeviceRequests(nc),
    }, { token: apiToken });
    // The browser dashboard at / (its own paths; everything else is the API's).
    // A deployment's rollout and history, from what the reconciler mirrors.
    const rolloutInfo = (name: string, now: number): DeploymentRolloutInfo => {
      const book = reconciler?.rollouts?.book;
      return book === undefined || reconciler === undefined
        ? {}
        : deploymentRolloutInfo(name, book, reconciler.state, now);
    };
    const dashboard = new Dashboard({
      view: (now) => {
        if (!reconciler?.ready) return undefined;
        const view = reconciler.state.view(now);
        return {
          ...view,
          deployments: view.deployments.map((d) => ({ ...d, ...rolloutInfo(d.name, now) })),
        };
      },
      device: (id) => reconciler?.state.statuses.get(id),
      // The device page's panes read /api/devices/ID/events|logs through it, on the session.
    }, { token: apiToken, api });
    const server = Deno.serve({
      hostname: listen.hostname,
      port: listen.port,
      signal: io.signal,
      onListen: (addr) =>
        log.info("HTTP API on {address} ({auth})", {
          address: `${addr.hostname}:${addr.port}`,
          auth: apiToken === undefined ? "no token" : "bearer token required",
        }),
    }, (request) => dashboard.handle(request) ?? api(request));
    try {
      const buckets = await openBucketsPatiently(nc, { history, replicas }, io.signal);
      if (buckets === undefined) return EXIT.ok;
      // Agents ask it for their keys after every (re)connect: answer from the start.
      snapshots = new DesiredSnapshotService(nc, buckets.desired);
      // Agent releases for self-update (devices cannot read the Object Store themselves).
      artifacts = new ArtifactService(nc, { replicas });
      // Several may run for availability: only the lease holder writes (operator/nats/lease.ts).
      const rollouts = await ensureRolloutBuckets(nc, { history, replicas });
      lease = new Lease(
        rollouts.leases,
        `operator-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`,
        {
          onChange: (active) => active && reconciler?.markDirty(),
        },
      );
      await lease.start();
      const held = lease;
      // Desired-state writes are timed for /metrics (operator/api/metrics.ts).
      const timed = { ...buckets, desired: metrics.instrumentDesired(buckets.desired) };
      const secrets = { kv: await openSecretsBucket(nc, { history, replicas }), key: secretsKey };
      reconciler = new Reconciler(timed, { rollouts, isActive: () => held.active, secrets });
      reconciler.state.onChange(() => dashboard.feed.notify());
      // Devices' liveness between their (rarer) full status puts.
      heartbeats = new HeartbeatListener(nc, reconciler.state, buckets.status);
      await Promise.all([
        snapshots.start(),
        reconciler.start(),
        heartbeats.start(),
        artifacts.start(),
      ]);
      dashboard.feed.notify();
      log.info(
        "Ready: {deployments} deployment(s), {devices} device(s), {keys} desired-state key(s)",
        {
          deployments: reconciler.state.manifests.size,
          devices: reconciler.state.statuses.size,
          keys: reconciler.state.desired.size,
        },
      );
      await new Promise<void>((resolve) => {
        if (io.signal.aborted) return resolve();
        io.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      log.info("Stopping");
    } finally {
      dashboard.close();
      await heartbeats?.[Symbol.asyncDispose]();
      await reconciler?.stop();
      await lease?.stop();
      await snapshots?.[Symbol.asyncDispose]();
      await artifacts?.[Symbol.asyncDispose]();
      await server.shutdown().catch(() => {});
      await nc.drain().catch(() => nc.close());
    }
    return EXIT.ok;
  },
};
