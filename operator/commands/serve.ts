/**
 * `serve`: the operator service. Creates missing buckets, keeps desired
 * state equal to the fan-out of the manifests, and serves the HTTP API.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  abortableSleep,
  Backoff,
  type BackoffOptions,
  Lifecycle,
  Listeners,
  type Runnable,
  untilAborted,
} from "@drover/common";
import {
  type Command,
  EXIT,
  OperationError,
  type OptionValues,
  stringOption,
  UsageError,
} from "./cli.ts";
import { connectNats, serversForDisplay } from "../nats/connection.ts";
import { connectionSettings } from "./connection_options.ts";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type Buckets,
  type BucketSettings,
  DEFAULT_HISTORY,
  DEFAULT_REPLICAS,
  ensureBuckets,
} from "../nats/kv.ts";
import { FanoutController } from "../desired/fanout_controller.ts";
import { Lease } from "../nats/lease.ts";
import { ensureRolloutBuckets } from "../rollout/store.ts";
import { DesiredSnapshotService } from "../devices/snapshots.ts";
import { ArtifactService } from "../devices/artifacts.ts";
import { HeartbeatListener } from "../fleet/heartbeats.ts";
import {
  API_TOKEN_ENV,
  checkApiExposure,
  createApi,
  foreignHostRefusal,
  formatListen,
} from "../api/http.ts";
import { natsDeviceRequests } from "../devices/requests.ts";
import { OperatorMetrics } from "../api/metrics.ts";
import { DeviceGate, FloodReport } from "../fleet/device_gate.ts";
import { OPERATOR_VERSION } from "../version.ts";
import { Dashboard } from "../api/dashboard/mod.ts";
import { type DeploymentRolloutInfo, deploymentRolloutInfo } from "../rollout/view.ts";
import { ensureSecretsKey, openSecretsBucket } from "../secrets/store.ts";
import { ConnectionGuard, DEFAULT_CONNECTIONS_PER_DEVICE } from "../fleet/connection_guard.ts";
import { CONNECTION_GUARD_INBOX_PREFIX } from "@drover/contracts";
import { connectionGuardSettings, guardConnectionSettings } from "./_connection_guard.ts";

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

/** The error for an address `serve` cannot listen on, naming it. */
function listenError(e: unknown, listen: ListenAddress): unknown {
  const address = formatListen(listen);
  if (e instanceof Deno.errors.AddrInUse) {
    return new OperationError(`Cannot listen on ${address}: the address is already in use`, [
      "another process (another serve?) has it: stop it or pass --listen HOST:PORT",
    ], { cause: e });
  }
  if (e instanceof Deno.errors.AddrNotAvailable || e instanceof Deno.errors.PermissionDenied) {
    return new OperationError(`Cannot listen on ${address}: ${(e as Error).message}`, [], {
      cause: e,
    });
  }
  return e;
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
  usage:
    "serve [--listen HOST:PORT] [--api-token TOKEN] [--replicas N] [--history N] [--dir DIR]\n" +
    "      [--system-creds FILE] [--max-connections-per-device N]",
  description:
    "Creates the desired-state, agent-status, deployments and devices buckets if missing,\n" +
    "then keeps desired-state equal to what the manifests target, writing only keys whose\n" +
    "content changes. HTTP API: GET /api/devices, /api/devices/ID/events,\n" +
    "/api/devices/ID/logs?deployment=D&service=S[&tail=N][&cursor=…], /api/deployments,\n" +
    "/api/deployments/NAME, /metrics, /healthz, and a live fleet dashboard for browsers\n" +
    "at /. With a token (--api-token or env DROVER_API_TOKEN, at least 16 characters)\n" +
    "every request but /healthz needs\n" +
    "`Authorization: Bearer TOKEN` (the dashboard: its login form); an address other than\n" +
    "loopback is refused without one (exit code 2), and without one only requests naming a\n" +
    "loopback Host (localhost, 127.0.0.1, [::1]) are answered (DNS rebinding). Stops cleanly on SIGINT/SIGTERM.\n" +
    "With --dir (or env DROVER_AUTH_DIR), the auth directory whose secrets.xk opens the\n" +
    "secret store, it seals each secret a deployment uses to every device that runs it;\n" +
    "without, such deployments are refused by their devices with the reason.\n" +
    "With the system account's creds (--system-creds, env DROVER_SYSTEM_CREDS, or\n" +
    "system.creds in --dir; `auth init` writes them, `auth system-creds` for an older\n" +
    "directory) it keeps each device to --max-connections-per-device NATS connections (the\n" +
    "newest): on nats-server 2.10+ it closes the others, on 2.9 it reports the device\n" +
    "(/metrics, log). Without them it logs that this limit is not enforced.\n" +
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
      description: "Auth directory holding secrets.xk, the secret store's key, and " +
        "system.creds (env DROVER_AUTH_DIR)",
      path: { env: "DROVER_AUTH_DIR" },
    },
    "system-creds": {
      type: "string",
      value: "FILE",
      description: "The connection guard's system-account creds (env DROVER_SYSTEM_CREDS; " +
        "default DIR/system.creds when --dir has one)",
      path: { env: "DROVER_SYSTEM_CREDS" },
    },
    "max-connections-per-device": {
      type: "string",
      value: "N",
      description:
        `NATS connections one device may hold (default ${DEFAULT_CONNECTIONS_PER_DEVICE})`,
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
    const guardSettings = await connectionGuardSettings(
      values,
      io.env,
      secretsDir,
      positiveInt(values, "max-connections-per-device", DEFAULT_CONNECTIONS_PER_DEVICE),
    );

    log.info("Drover operator {version} connecting to {servers}", {
      version: OPERATOR_VERSION,
      servers: serversForDisplay(settings.servers),
    });
    // Built in the order they depend on each other; started in that order, stopped in reverse.
    const life = new Lifecycle({
      onStopTimeout: (part, ms) => log.warn("{part} did not stop within {ms} ms", { part, ms }),
      onStopError: (part, e) => log.warn("Stopping {part} failed: {error}", { part, error: e }),
    });
    life.follow(io.signal);
    const nc = await connectNats(settings, { name: "drover-operator", reconnectForever: true });
    life.add({ name: "NATS connection", stop: () => nc.drain().catch(() => nc.close()) });
    // The lease and the desired-state writes on a connection of their own: devices flooding
    // what they may publish (answered on `nc`) cannot stall them.
    const writer = await connectNats(settings, {
      name: "drover-operator-writer",
      reconnectForever: true,
    }).catch(async (e) => {
      await life.stop();
      throw e;
    });
    life.add({
      name: "NATS writer connection",
      stop: () => writer.drain().catch(() => writer.close()),
    });
    // The connection guard's own connection, as the system account's restricted user.
    const system = guardSettings && await connectNats(
      guardConnectionSettings(settings, guardSettings.creds),
      {
        name: "drover-operator-connection-guard",
        reconnectForever: true,
        inboxPrefix: CONNECTION_GUARD_INBOX_PREFIX,
      },
    ).catch(async (e) => {
      await life.stop();
      throw e;
    });
    if (system) {
      life.add({
        name: "NATS system connection",
        stop: () => system.drain().catch(() => system.close()),
      });
    }
    await life.start();
    // Whatever happens from here on (a bucket that cannot be created, a port in use), the parts
    // started so far, the connection first among them, are stopped in reverse.
    try {
      const buckets = await openBucketsPatiently(nc, { history, replicas }, life.signal);
      if (buckets === undefined) return EXIT.ok; // stopped while waiting for JetStream
      // The same buckets on the writer's connection (the devices' statuses stay on `nc`).
      const written = await ensureBuckets(writer, { history, replicas });
      const rollouts = await ensureRolloutBuckets(writer, { history, replicas });
      // The secret store, read on the writer's connection: sealing is part of the desired writes.
      const secrets = {
        kv: await openSecretsBucket(writer, { history, replicas }),
        key: secretsKey,
      };
      // Several may run for availability: only the lease holder writes (operator/nats/lease.ts).
      const leaseChanged = new Listeners<boolean>();
      const lease = new Lease(
        rollouts.leases,
        // Named by its API address too: the standby's log line says which `serve` is acting.
        `operator-${Deno.pid}-${crypto.randomUUID().slice(0, 8)} (API ${formatListen(listen)})`,
        {
          onChange: (active) => leaseChanged.emit(active),
        },
      );
      // Desired-state writes are timed for /metrics (operator/api/metrics.ts).
      // Refusals of device messages beyond their limits, for the log and /metrics.
      const floods = new FloodReport();
      // At most a few connections per device identity (operator/fleet/connection_guard.ts).
      const guard = system && guardSettings &&
        new ConnectionGuard(system, {
          account: guardSettings.account,
          limit: guardSettings.limit,
          maxTracked: guardSettings.maxTracked,
        });
      const metrics = new OperatorMetrics({ floods, ...(guard ? { connections: guard } : {}) });
      const timed = {
        ...written,
        status: buckets.status,
        desired: metrics.instrumentDesired(written.desired),
      };
      const controller = new FanoutController(timed, {
        rollouts,
        isActive: () => lease.active,
        floods,
        secrets,
      });
      leaseChanged.add((active) => active && controller.markDirty());
      metrics.readFleetFrom(() => fleetView(controller, Date.now()));
      // Agents ask it for their keys after every (re)connect: answer from the start.
      const snapshots = new DesiredSnapshotService(nc, buckets.desired, floods);
      // Agent releases for self-update (devices cannot read the Object Store themselves).
      const artifacts = new ArtifactService(nc, { replicas, floods });
      // Devices' liveness between their (rarer) full status puts.
      const heartbeats = new HeartbeatListener(
        nc,
        controller.state,
        buckets.status,
        undefined,
        floods,
      );
      const { api, dashboard } = httpViews(controller, metrics, [nc, writer], floods, apiToken);
      controller.state.onChange(() => dashboard.feed.notify());

      life.add({ name: "operator lease", start: () => lease.start(), stop: () => lease.stop() });
      life.add(disposable("snapshot service", snapshots));
      life.add(disposable("artifact service", artifacts));
      life.add(
        httpServer(
          listen,
          apiToken,
          (request) =>
            foreignHostRefusal(request, apiToken) ?? dashboard.handle(request) ?? api(request),
          () => dashboard.close(),
        ),
      );
      life.add({
        name: "fan-out controller",
        start: () => controller.start(),
        stop: () => controller.stop(),
      });
      life.add(disposable("heartbeat listener", heartbeats));
      if (guard && system && guardSettings) {
        life.add({
          name: "connection guard",
          start: () => guard.start(),
          run: (signal) => guard.run(signal),
          stop: () => guard[Symbol.asyncDispose](),
        });
        life.add({
          name: "connection watch (system)",
          run: (signal) => watchConnection(system, () => guard.rewatch(), signal),
        });
        log.info(
          "Connection guard: at most {limit} NATS connection(s) per device (newest kept), " +
            "watching account {account}",
          { limit: guardSettings.limit, account: guardSettings.account },
        );
      } else {
        log.warn(
          "Per-device NATS connection limits are not enforced: one device's creds can take " +
            "every connection of the devices' account. Give serve the system account's creds " +
            "(--system-creds or DIR/system.creds; docs/security.md)",
        );
      }
      for (const [name, conn] of [["", nc], [" (writer)", writer]] as const) {
        life.add({
          name: `connection watch${name}`,
          run: (signal) =>
            watchConnection(conn, () => {
              metrics.reconnected();
              controller.rewatch();
              snapshots.rewatch();
            }, signal),
        });
      }
      life.add({
        name: "readiness",
        start: () => {
          dashboard.feed.notify();
          log.info(
            "Ready: {deployments} deployment(s), {devices} device(s) registered ({reporting} " +
              "reporting), {keys} desired-state key(s); " +
              (lease.active ? "acting (lease holder)" : "standby (the lease is held by {holder})"),
            {
              deployments: controller.state.manifests.size,
              devices: controller.state.registry.size,
              reporting: controller.state.statuses.size,
              keys: controller.state.desired.size,
              holder: lease.heldBy,
            },
          );
        },
        stop: () => log.info("Stopping"),
      });
      await life.start();
      await life.stopped();
    } finally {
      await life.stop();
    }
    return EXIT.ok;
  },
};

/** A part whose start is `start()` and whose stop is its async disposal. */
function disposable(
  name: string,
  part: { start(): Promise<void>; [Symbol.asyncDispose](): Promise<void> },
): Runnable {
  return { name, start: () => part.start(), stop: () => part[Symbol.asyncDispose]() };
}

/** The HTTP server of the API and the dashboard, listening from its start. */
function httpServer(
  listen: ListenAddress,
  apiToken: string | undefined,
  handler: (request: Request) => Response | Promise<Response>,
  closing: () => void,
): Runnable {
  let server: Deno.HttpServer | undefined;
  return {
    name: "HTTP server",
    start: () => {
      try {
        server = Deno.serve({
          hostname: listen.hostname,
          port: listen.port,
          onListen: (addr) =>
            log.info("HTTP API on {address} ({auth})", {
              address: `${addr.hostname}:${addr.port}`,
              auth: apiToken === undefined ? "no token" : "bearer token required",
            }),
        }, handler);
      } catch (e) {
        throw listenError(e, listen);
      }
    },
    stop: async () => {
      closing(); // ends the dashboard's live streams, which would hold the shutdown
      await server?.shutdown();
    },
  };
}

/** Logs the connection's state changes and re-establishes watches after a reconnect. */
async function watchConnection(
  nc: NatsConnection,
  onReconnect: () => void,
  signal: AbortSignal,
): Promise<void> {
  const following = (async () => {
    for await (const s of nc.status()) {
      if (signal.aborted) return;
      if (s.type === "disconnect") log.warn("NATS connection lost; reconnecting");
      if (s.type === "reconnect") {
        log.info("NATS reconnected; resuming watches");
        onReconnect();
      }
    }
  })().catch(() => {});
  await Promise.race([following, untilAborted(signal)]);
}

/** The fleet view once the controller has its first complete picture, else undefined. */
function fleetView(controller: FanoutController, now: number) {
  return controller.ready ? controller.state.view(now) : undefined;
}

/** The HTTP API and the dashboard, reading what the fan-out controller mirrors. */
function httpViews(
  controller: FanoutController,
  metrics: OperatorMetrics,
  [nc, writer]: readonly [NatsConnection, NatsConnection],
  floods: FloodReport,
  apiToken: string | undefined,
) {
  // A deployment's rollout and history, from what the controller mirrors.
  const rolloutInfo = (name: string, now: number): DeploymentRolloutInfo => {
    const book = controller.rollouts?.book;
    return book === undefined ? {} : deploymentRolloutInfo(name, book, controller.state, now);
  };
  const api = createApi({
    view: () => controller.state.view(Date.now()),
    unhealthy: () =>
      nc.isClosed() || writer.isClosed()
        ? "NATS connection closed"
        : controller.ready
        ? null
        : "starting",
    metrics: () => metrics.render(),
    deploymentDetails: (name) => rolloutInfo(name, Date.now()),
    // /api/devices/ID/events and /logs ask the device as `operator events|logs` do.
    deviceRequests: natsDeviceRequests(nc, new DeviceGate("command", floods)),
  }, { token: apiToken });
  // The browser dashboard at / (its own paths; everything else is the API's).
  const dashboard = new Dashboard({
    view: (now) => {
      const view = fleetView(controller, now);
      return view && {
        ...view,
        deployments: view.deployments.map((d) => ({ ...d, ...rolloutInfo(d.name, now) })),
      };
    },
    device: (id) => controller.state.statuses.get(id),
    // The device page's panes read /api/devices/ID/events|logs through it, on the session.
  }, { token: apiToken, api });
  return { api, dashboard };
}
