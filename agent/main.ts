/**
 * `drover-agent`: the device daemon. Reads `agent.toml`, reconciles podman
 * containers to the desired state in NATS KV, reports status back, and keeps
 * the workloads running from its cache while NATS is unreachable.
 *
 * Only this module exits the process. Exit codes: 0 clean stop, 1 internal
 * error, 2 usage error, 78 (EX_CONFIG) bad config.
 *
 * @module
 */

import { type AgentConfig, redactUrl } from "@drover/contracts";
import {
  Lifecycle,
  Listeners,
  type Runnable,
  sealingKeyFromSeed,
  tolerateTransportResets,
  untilAborted,
} from "@drover/common";
import type { Logger } from "@logtape/logtape";
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, LOG_LEVEL_ENV } from "./config.ts";
import type { KeyPair } from "@nats-io/nkeys";
import { closeLogging, errorText, logger, parseLogFormat, setupLogging } from "./log.ts";
import { AGENT_VERSION } from "./version.ts";
import { loadDesiredCache, saveDesiredCache } from "./cache.ts";
import { StatusPublisher } from "./status.ts";
import { readNotifyEnv, SystemdNotifier } from "./systemd.ts";
import { NatsSession } from "./nats/session.ts";
import {
  formatMissing,
  missingPermissions,
  notifyPermissions,
  requiredPermissions,
} from "./permissions.ts";
import { DesiredStore } from "./reconcile/desired_store.ts";
import { Reconciler } from "./reconcile/reconciler.ts";
import { PodmanRuntime } from "./runtime/podman_runtime.ts";
import { PodmanClient } from "./runtime/podman/client.ts";
import type { AgentMetrics } from "./metrics.ts";
import { EventRing } from "./commands/event_ring.ts";
import { CommandServer } from "./commands/server.ts";
import { podmanLogSource } from "./commands/podman_logs.ts";
import { purgeVolumes } from "./commands/volumes.ts";
import type { ContainerRuntime } from "./runtime/runtime.ts";
import { RELEASE_ENV, Updater } from "./update/updater.ts";

/** Exit codes of the agent. */
export const EXIT = { ok: 0, internal: 1, usage: 2, config: 78 } as const;

/** Environment variable selecting the log format (`text` or `json`). */
export const LOG_FORMAT_ENV = "DROVER_LOG_FORMAT";

/** How long shutdown may take in total before the process exits anyway. */
export const SHUTDOWN_DEADLINE_MS = 8_000;

/** The usage text printed by `--help`. */
export const USAGE =
  `drover-agent ${AGENT_VERSION}: keeps this device's podman containers at the desired
state published in NATS KV (bucket desired-state, keys <device_id>.<deployment>) and
reports status to agent-status/<device_id>.

Usage:
  drover-agent [--config PATH]
  drover-agent --version
  drover-agent --help

Options:
  -c, --config PATH  agent config file (TOML) [default: ${DEFAULT_CONFIG_PATH}]
  -V, --version      print the version and exit
  -h, --help         print this help and exit

Environment:
  ${LOG_LEVEL_ENV}    overrides [agent] log_level (trace, debug, info, warning, error, fatal)
  ${LOG_FORMAT_ENV}   "text" (default) or "json" (one JSON object per line) on stderr
  NOTIFY_SOCKET, WATCHDOG_USEC  set by systemd for Type=notify units and WatchdogSec=

SIGTERM or SIGINT stops the agent within a few seconds; containers keep running.
Exit status: 0 stopped cleanly, 1 internal error, 2 usage error, 78 invalid config.
`;

/** What the command line asks for. */
export type CliCommand =
  | { kind: "run"; configPath: string }
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "usage-error"; message: string };

/**
 * Parses the command line. Pure. By hand rather than with node:util's `parseArgs`: loading any
 * `node:` module starts Deno's Node compatibility layer, megabytes of RSS on a device
 * (bench/RESULTS.md, footprint).
 */
export function parseArgs(args: readonly string[]): CliCommand {
  let help = false;
  let version = false;
  let config: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--help" || arg === "-h") help = true;
    else if (arg === "--version" || arg === "-V") version = true;
    else if (arg === "--config" || arg === "-c") {
      const value = args[i + 1];
      if (value === undefined || value.startsWith("-")) {
        return { kind: "usage-error", message: "--config needs a file path" };
      }
      config = value;
      i++;
    } else if (arg.startsWith("--config=")) config = arg.slice("--config=".length);
    else if (arg.startsWith("-c") && arg.length > 2) config = arg.slice(2);
    else return { kind: "usage-error", message: `unknown argument ${JSON.stringify(arg)}` };
  }
  if (help) return { kind: "help" };
  if (version) return { kind: "version" };
  if (config === "") return { kind: "usage-error", message: "--config needs a file path" };
  return { kind: "run", configPath: config ?? DEFAULT_CONFIG_PATH };
}

/**
 * What {@linkcode runAgent} can be given instead of the device's own: the
 * capacity-planning tool (`deno task hollow`, agent/hollow.ts) runs thousands
 * of agents in one process with a FAKE in-memory runtime and no disk.
 */
export interface AgentParts {
  /** The container runtime (default: podman at `[podman] socket`). */
  runtime?: ContainerRuntime;
  /** Keep the desired-state cache in `state_dir` (default true). */
  cache?: boolean;
  /** Talk to systemd when NOTIFY_SOCKET is set (default true). */
  systemd?: boolean;
  /** Seconds between full status puts while nothing changes (default: 6 heartbeats). */
  statusRefreshSeconds?: number;
  /** Called once the parts are built, e.g. to count connected and reporting devices. */
  onStarted?: (parts: { session: NatsSession; publisher: StatusPublisher }) => void;
}

/**
 * Runs the agent with a loaded config until `signal` aborts, then shuts down:
 * stops reconciling (containers keep running), publishes a last status
 * (`stopped`), saves the cache and drains the NATS connection.
 *
 * The parts are built in the order they depend on each other, so no callback
 * refers to a part built later; news flows back through {@linkcode Listeners}.
 * The lifecycle starts them in that order and stops them in reverse.
 */
export async function runAgent(
  config: AgentConfig,
  signal: AbortSignal,
  parts: AgentParts = {},
): Promise<void> {
  const deviceId = config.agent.device_id;
  const stateDir = config.agent.state_dir;
  const useCache = parts.cache ?? true;
  const log = logger("agent").with({ device: deviceId });
  log.info("Starting drover-agent {version}", {
    version: AGENT_VERSION,
    config: { nats: config.nats.servers.map(redactUrl), podman: config.podman.socket, stateDir },
  });
  if (useCache) await makeStateDir(stateDir, log);
  const life = new Lifecycle({
    onStopTimeout: (part, ms) => log.warn("{part} did not stop within {ms} ms", { part, ms }),
    onStopError: (part, e) =>
      log.warn("Stopping {part} failed: {error}", { part, error: errorText(e) }),
  });
  life.follow(signal);
  // The device's status changed (a deployment, the update state): the publisher and systemd listen.
  const statusChanged = new Listeners();

  const notifier = new SystemdNotifier(parts.systemd === false ? {} : readNotifyEnv(), stateDir);
  const notify = (what: string, send: () => Promise<void>) =>
    send().catch((e) =>
      log.warn("sd_notify {what} failed: {error}", { what, error: errorText(e) })
    );
  const { podman, runtime, metrics, counters } = await openRuntime(config, parts);
  // Started in the order added, stopped in reverse; these two hold sockets from here on.
  life.add({ name: "systemd notifier", stop: () => notifier.close() });
  life.add({
    name: "container runtime",
    stop: () => (runtime[Symbol.dispose]?.(), podman?.close()),
  });
  await life.start();
  try {
    const store = await openStore(config, useCache, log);
    // Recent events for `operator events`; bounded, never part of the status.
    const events = new EventRing();
    let lastReconcileAtMs: number | undefined;
    const sealingKey = await loadSealingKey(config, log);
    const reconciler = new Reconciler({
      deviceId,
      runtime,
      store,
      ...(sealingKey !== undefined ? { sealingKey } : {}),
      policy: config.policy,
      registries: config.registries,
      onChange: () => statusChanged.emit(),
      observer: {
        event: (event) => events.record(event),
        pass: (_deployment, durationMs, ok) => {
          if (ok) lastReconcileAtMs = Date.now();
          counters?.pass(durationMs, ok);
        },
      },
    });
    const updater = config.update !== undefined && useCache
      ? await startUpdater(config.update, deviceId, stateDir, statusChanged, life, log)
      : undefined;
    const publisher = newPublisher(config, parts, reconciler, updater);
    statusChanged.add(() => publisher.changed());
    statusChanged.add(systemdStatus(notifier, reconciler, notify));
    const commands = new CommandServer({
      deviceId,
      agentVersion: AGENT_VERSION,
      startedAtMs: Date.now(),
      lastReconcileAtMs: () => lastReconcileAtMs,
      events,
      logs: logSource(deviceId, runtime, podman, store),
      allowLogs: config.policy.allow_logs !== false,
      purgeVolumes: (deployment, signal) =>
        purgeVolumes(
          {
            deviceId,
            runtime,
            // A partial view (just started, NATS away, no cache) may not know it is desired.
            desired: (d) => store.get(d) !== undefined || !store.isRemovable(d),
          },
          deployment,
          signal,
        ),
      log: logger("commands").with({ device: deviceId }),
    });
    const session = new NatsSession({
      deviceId,
      nats: config.nats,
      sink: store,
      setStatusStore: (statusStore) => publisher.setStore(statusStore),
      log: logger("nats").with({ device: deviceId }),
      onConnection: (nc, signal) =>
        Promise.all([commands.serve(nc, signal), updater?.serve(nc, signal)]).then(() => {}),
      onReconnect: () => counters?.reconnected(),
    });
    parts.onStarted?.({ session, publisher });

    // The reconciler stops before the last status is published, which happens while the session
    // still holds the connection.
    life.add({ name: "desired-state store", stop: () => store.close(), stopWithinMs: 1_000 });
    life.add({
      name: "NATS session",
      run: (signal) => session.run(signal),
      stop: () => session.close(1_500),
      stopWithinMs: 1_500,
    });
    life.add({
      name: "status publisher",
      start: () => publisher.start(),
      stop: async () => {
        const published = await publisher.publishFinal("stopped", 2_000);
        log.info(published ? "Published final status" : "Could not publish a final status");
      },
      stopWithinMs: 2_500,
    });
    life.add({ name: "reconciler", run: (signal) => reconciler.run(signal), stopWithinMs: 3_000 });
    if (metrics !== undefined && counters !== undefined) {
      life.add({
        name: "metrics endpoint",
        run: (signal) => serveMetricsLogged(metrics, counters, signal, log),
      });
    }
    for (const part of readinessParts(reconciler, publisher, updater, notifier, notify, log)) {
      life.add(part);
    }
    life.add({
      name: "shutdown notice",
      stop: () => {
        const reason = life.signal.reason;
        log.info(
          reason instanceof RestartRequest
            ? `Restarting (${reason.message}); containers keep running`
            : "Stopping; containers keep running",
        );
        return notify("STOPPING", () => notifier.stopping());
      },
    });

    await life.start();
    await life.stopped();
  } finally {
    await life.stop();
  }
}

/** The container runtime (podman, unless `parts` brings one), metered when metrics are on. */
async function openRuntime(config: AgentConfig, parts: AgentParts) {
  const podman = parts.runtime === undefined
    ? new PodmanClient({ socketPath: config.podman.socket })
    : undefined;
  // Loaded only when configured (prom-client: ≈ 1 MiB of heap, bench/RESULTS.md).
  const metrics = config.metrics?.listen !== undefined
    ? { module: await import("./metrics.ts"), listen: config.metrics.listen }
    : undefined;
  const counters = metrics && new metrics.module.AgentMetrics(config.agent.device_id);
  const bare: ContainerRuntime & Partial<Disposable> = parts.runtime ??
    new PodmanRuntime({ client: podman! });
  const runtime: ContainerRuntime & Partial<Disposable> = counters?.instrument(bare) ?? bare;
  return { podman, runtime, metrics, counters };
}

/**
 * The device's sealing key (`[secrets] key`, an xkey seed file): secrets arrive sealed to it and
 * are opened only in memory. Unreadable: logged, and deployments that use secrets are refused.
 */
async function loadSealingKey(config: AgentConfig, log: Logger): Promise<KeyPair | undefined> {
  if (config.secrets === undefined) return undefined;
  const path = config.secrets.key;
  try {
    return sealingKeyFromSeed(await Deno.readTextFile(path));
  } catch (e) {
    log.error(
      "Cannot read the sealing key {path}; deployments that use secrets are refused: {error}",
      { path, error: errorText(e) },
    );
    return undefined;
  }
}

/** The desired-state store, filled from the offline cache when there is one. */
async function openStore(config: AgentConfig, useCache: boolean, log: Logger) {
  const { device_id: deviceId, state_dir: stateDir } = config.agent;
  const store = new DesiredStore({
    ...(useCache
      ? { persistence: { save: (entries) => saveDesiredCache(stateDir, deviceId, entries) } }
      : {}),
    log,
  });
  if (useCache) await loadCache(store, stateDir, deviceId, log);
  else store.replace(new Map(), false); // nothing known yet: leave what runs alone until KV answers
  return store;
}

/** Puts the device's status (from the reconciler and the updater) into `agent-status`. */
function newPublisher(
  config: AgentConfig,
  parts: AgentParts,
  reconciler: Reconciler,
  updater: Updater | undefined,
): StatusPublisher {
  const deviceId = config.agent.device_id;
  return new StatusPublisher({
    deviceId,
    labels: config.agent.labels,
    heartbeatSeconds: config.agent.heartbeat_seconds,
    ...(parts.statusRefreshSeconds !== undefined
      ? { refreshSeconds: parts.statusRefreshSeconds }
      : {}),
    source: reconciler,
    ...(updater !== undefined ? { update: () => updater.status() } : {}),
    log: logger("status").with({ device: deviceId }),
  });
}

/** What `operator logs` reads: podman's logs through the runtime's client; none without podman. */
function logSource(
  deviceId: string,
  runtime: ContainerRuntime,
  podman: PodmanClient | undefined,
  store: DesiredStore,
) {
  return podman !== undefined
    ? podmanLogSource({ deviceId, runtime, client: podman, claimed: (d) => store.isClaimed(d) })
    : { find: () => Promise.resolve(undefined), read: () => Promise.resolve([]) };
}

/** The reason of a shutdown the updater asked for: a restart into another release. */
class RestartRequest extends Error {
  override name = "RestartRequest";
}

async function makeStateDir(stateDir: string, log: Logger): Promise<void> {
  try {
    await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    log.error(
      "Cannot create state directory {stateDir}; the offline cache will not work: {error}",
      {
        stateDir,
        error: errorText(e),
      },
    );
  }
}

/** Fills `store` from the offline cache: the last complete view from KV, if one is usable. */
async function loadCache(
  store: DesiredStore,
  stateDir: string,
  deviceId: string,
  log: Logger,
): Promise<void> {
  const cached = await loadDesiredCache(stateDir, deviceId);
  if (cached.kind === "loaded") {
    // The last complete view from KV: deployments missing from it were deleted.
    store.replace(cached.entries, true);
    log.info("Loaded {count} deployment(s) from the cache saved at {savedAt}", {
      count: cached.entries.size,
      savedAt: cached.savedAt,
    });
    return;
  }
  if (cached.kind === "unusable") {
    log.warn("Ignoring the desired-state cache: {reason}", { reason: cached.reason });
  }
  // Nothing known yet: leave whatever runs alone until KV answers.
  store.replace(new Map(), false);
}

/** Self-update ([update] in the config), its state read from disk. */
async function startUpdater(
  config: NonNullable<AgentConfig["update"]>,
  deviceId: string,
  stateDir: string,
  statusChanged: Listeners,
  life: Lifecycle,
  log: Logger,
): Promise<Updater> {
  const updater = new Updater({
    deviceId,
    config,
    stateDir,
    release: env(RELEASE_ENV),
    log: logger("update").with({ device: deviceId }),
    onChange: () => statusChanged.emit(),
    requestRestart: (reason) => life.shutdown(new RestartRequest(reason)),
  });
  try {
    await updater.init();
  } catch (e) {
    log.error("Cannot read the update state in {dir}: {error}", {
      dir: updater.paths.dir,
      error: errorText(e),
    });
  }
  return updater;
}

/** Keeps systemd's STATUS= line current; `systemctl status` shows it. */
function systemdStatus(
  notifier: SystemdNotifier,
  reconciler: Reconciler,
  notify: (what: string, send: () => Promise<void>) => Promise<void>,
): () => void {
  let sent = "";
  return () => {
    // Not under systemd (hollow devices, a shell): no status line to build on every change.
    if (!notifier.enabled) return;
    const text = statusLine(reconciler.deviceStatus(), reconciler.deploymentStatuses());
    // Only when it says something new.
    if (text === sent) return;
    sent = text;
    void notify("STATUS", () => notifier.status(text));
  };
}

/**
 * After the first pass: systemd hears READY and the watchdog starts; a release on trial
 * commits once it has reconciled and stored a status (`updater.watchTrial`, from now).
 */
function readinessParts(
  reconciler: Reconciler,
  publisher: StatusPublisher,
  updater: Updater | undefined,
  notifier: SystemdNotifier,
  notify: (what: string, send: () => Promise<void>) => Promise<void>,
  log: Logger,
): Runnable[] {
  let firstPassDone = false;
  const trial: Runnable[] = updater === undefined ? [] : [{
    name: "update trial",
    run: (signal) => updater.watchTrial(() => firstPassDone && publisher.published > 0, signal),
  }];
  return [...trial, {
    name: "readiness",
    run: async (signal) => {
      await Promise.race([reconciler.firstPass, untilAborted(signal)]);
      if (signal.aborted) return;
      firstPassDone = true;
      if (updater?.onTrial) publisher.changed();
      log.info("First reconcile pass done: device is {status}", {
        status: reconciler.deviceStatus(),
      });
      const line = statusLine(reconciler.deviceStatus(), reconciler.deploymentStatuses());
      void notify("READY", () => notifier.ready(line));
      let watchdogFailures = 0;
      notifier.startWatchdog(
        () => !signal.aborted,
        (e) => {
          // Once is news; every ping after that would flood the journal.
          const level = watchdogFailures++ === 0 ? "warn" : "debug";
          log[level]("sd_notify WATCHDOG failed: {error}", { error: errorText(e) });
        },
      );
    },
  }];
}

/** Serves /metrics until `signal` aborts; a port that cannot be bound is logged, not fatal. */
async function serveMetricsLogged(
  metrics: { module: typeof import("./metrics.ts"); listen: string },
  counters: AgentMetrics,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  const listen = metrics.listen;
  let server: Deno.HttpServer;
  try {
    server = metrics.module.serveMetrics(counters, listen, signal);
  } catch (e) {
    log.error("Cannot serve metrics on {listen}: {error}", { listen, error: errorText(e) });
    return;
  }
  log.info("Serving Prometheus metrics on http://{listen}/metrics", { listen });
  await server.finished;
}

/** One-line summary for systemd's STATUS=, e.g. `degraded: 3 deployments, 1 failed`. Pure. */
export function statusLine(
  device: string,
  deployments: Record<string, { phase: string }>,
): string {
  const all = Object.values(deployments);
  const failed = all.filter((d) => d.phase === "failed").length;
  const pending = all.filter((d) => d.phase === "pending" || d.phase === "removing").length;
  const parts = [`${all.length} deployment${all.length === 1 ? "" : "s"}`];
  if (failed > 0) parts.push(`${failed} failed`);
  if (pending > 0) parts.push(`${pending} in progress`);
  return `${device}: ${parts.join(", ")}`;
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env for it: treat as unset
  }
}

/** Entry point: returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const command = parseArgs(args);
  switch (command.kind) {
    case "help":
      console.log(USAGE);
      return EXIT.ok;
    case "version":
      console.log(AGENT_VERSION);
      return EXIT.ok;
    case "usage-error":
      console.error(`drover-agent: ${command.message}\nTry 'drover-agent --help'.`);
      return EXIT.usage;
  }

  let config: AgentConfig;
  try {
    config = await loadConfig(command.configPath, env);
  } catch (e) {
    if (e instanceof ConfigError) {
      // TOML errors quote the offending line, which may hold a server URL with a password.
      console.error(`drover-agent: invalid configuration:\n${redactUrl(e.message)}`);
      return EXIT.config;
    }
    throw e;
  }
  const missing = missingPermissions(requiredPermissions(config));
  if (missing.length > 0) {
    console.error(
      `drover-agent: ${command.configPath} needs Deno permissions this process lacks; ` +
        `run it with:\n${redactUrl(formatMissing(missing))}`,
    );
    return EXIT.config;
  }
  await setupLogging({
    level: config.agent.log_level,
    format: parseLogFormat(env(LOG_FORMAT_ENV)),
  });
  const notifyMissing = missingPermissions(
    notifyPermissions(config.agent.state_dir, env("NOTIFY_SOCKET")),
  );
  if (notifyMissing.length > 0) {
    logger("agent").warn("systemd notification will fail without:\n{flags}", {
      flags: formatMissing(notifyMissing),
    });
  }

  const shutdown = new AbortController();
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const onSignal = () => {
    if (shutdown.signal.aborted) return;
    shutdown.abort(new Error("signal received"));
  };
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    const running = runAgent(config, shutdown.signal);
    // Once asked to stop, a hung step must not keep the process alive for long.
    const deadline = new Promise<"deadline">((resolve) => {
      shutdown.signal.addEventListener("abort", () => {
        setTimeout(() => resolve("deadline"), SHUTDOWN_DEADLINE_MS);
      }, { once: true });
    });
    if (await Promise.race([running.then(() => "done" as const), deadline]) === "deadline") {
      logger("agent").warn("Shutdown took longer than {ms} ms; exiting anyway", {
        ms: SHUTDOWN_DEADLINE_MS,
      });
    }
    return EXIT.ok;
  } catch (e) {
    logger("agent").fatal("Agent failed: {error}", { error: errorText(e) });
    return EXIT.internal;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await closeLogging();
  }
}

if (import.meta.main) {
  // The process-wide guard belongs to the entry point, not to library code (agent/nats/connect.ts).
  tolerateTransportResets();
  const code = await main(Deno.args);
  // --version and --help leave nothing running, so they end normally: only a module that
  // finished evaluating gets its code cached by Deno, and the bundle's launcher warms the caches
  // with a --version run (scripts/bundle.ts).
  if (parseArgs(Deno.args).kind === "run") Deno.exit(code);
  Deno.exitCode = code;
}
