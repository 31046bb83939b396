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
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, LOG_LEVEL_ENV } from "./config.ts";
import { sealingKeyFromSeed } from "@drover/common";
import type { KeyPair } from "@nats-io/nkeys";
import { closeLogging, errorText, logger, parseLogFormat, setupLogging } from "./log.ts";
import { AGENT_VERSION } from "./version.ts";
import { loadDesiredCache, saveDesiredCache } from "./cache.ts";
import { StatusPublisher } from "./status.ts";
import { readNotifyEnv, SystemdNotifier } from "./systemd.ts";
import { NatsSession } from "./nats/session.ts";
import { tolerateTransportResets } from "./nats/connect.ts";
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
// Loaded only when metrics are configured (prom-client: ≈ 1 MiB of heap, bench/RESULTS.md).
import type { AgentMetrics } from "./metrics.ts";
import { EventRing } from "./commands/event_ring.ts";
import { CommandServer } from "./commands/server.ts";
import { podmanLogSource } from "./commands/podman_logs.ts";
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

/** Parses the command line. Pure. */
export function parseArgs(args: readonly string[]): CliCommand {
  let configPath: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "-h" || arg === "--help") return { kind: "help" };
    if (arg === "-V" || arg === "--version") return { kind: "version" };
    if (arg === "-c" || arg === "--config") {
      const value = args[i + 1];
      if (value === undefined || value === "") {
        return { kind: "usage-error", message: `${arg} needs a file path` };
      }
      configPath = value;
      i++;
    } else if (arg.startsWith("--config=")) {
      configPath = arg.slice("--config=".length);
      if (configPath === "") return { kind: "usage-error", message: "--config needs a file path" };
    } else {
      return { kind: "usage-error", message: `unknown argument ${JSON.stringify(arg)}` };
    }
  }
  return { kind: "run", configPath: configPath ?? DEFAULT_CONFIG_PATH };
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

/** The xkey pair in the seed file `path` (`[secrets] key`). */
async function readSealingKey(path: string): Promise<KeyPair> {
  return sealingKeyFromSeed(await Deno.readTextFile(path));
}

/**
 * Runs the agent with a loaded config until `signal` aborts, then shuts down:
 * stops reconciling (containers keep running), saves the cache, publishes a
 * last status (`stopped`) and drains the NATS connection.
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

  try {
    if (useCache) await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    log.error(
      "Cannot create state directory {stateDir}; the offline cache will not work: {error}",
      {
        stateDir,
        error: errorText(e),
      },
    );
  }

  const notifier = new SystemdNotifier(parts.systemd === false ? {} : readNotifyEnv(), stateDir);
  const notify = (what: string, send: () => Promise<void>) =>
    send().catch((e) =>
      log.warn("sd_notify {what} failed: {error}", { what, error: errorText(e) })
    );

  const startedAtMs = Date.now();
  // The logs command reads through the same podman client as the runtime.
  const podman = parts.runtime === undefined
    ? new PodmanClient({ socketPath: config.podman.socket })
    : undefined;
  const metricsModule = config.metrics?.listen !== undefined
    ? await import("./metrics.ts")
    : undefined;
  const metrics: AgentMetrics | undefined = metricsModule &&
    new metricsModule.AgentMetrics(deviceId);
  const bareRuntime: ContainerRuntime & Partial<Disposable> = parts.runtime ??
    new PodmanRuntime({ client: podman! });
  const runtime = metrics !== undefined ? metrics.instrument(bareRuntime) : bareRuntime;
  // Recent events for `operator events`; bounded, never part of the status.
  const events = new EventRing();
  let lastReconcileAtMs: number | undefined;
  // Desired state lives in the store, which keeps the offline cache in step.
  const store = new DesiredStore({
    ...(useCache
      ? { persistence: { save: (entries) => saveDesiredCache(stateDir, deviceId, entries) } }
      : {}),
    log,
  });
  // The device's sealing key: secrets arrive sealed to it and are opened only in memory.
  const sealingKey = config.secrets === undefined
    ? undefined
    : await readSealingKey(config.secrets.key).catch((e) => {
      log.error(
        "Cannot read the sealing key {path}; deployments that use secrets are refused: {error}",
        { path: config.secrets?.key, error: errorText(e) },
      );
      return undefined;
    });
  // The reconciler reports changes to the publisher, which reads statuses from the reconciler.
  let statusChanged = () => {};
  const reconciler = new Reconciler({
    deviceId,
    runtime,
    store,
    ...(sealingKey !== undefined ? { sealingKey } : {}),
    policy: config.policy,
    registries: config.registries,
    onChange: () => statusChanged(),
    observer: {
      event: (event) => events.record(event),
      pass: (_deployment, durationMs, ok) => {
        if (ok) lastReconcileAtMs = Date.now();
        metrics?.pass(durationMs, ok);
      },
    },
  });
  // Self-update ([update] in the config); only for a real device (not hollow agents).
  let restartReason: string | undefined;
  const updater = config.update !== undefined && useCache
    ? new Updater({
      deviceId,
      config: config.update,
      stateDir,
      release: env(RELEASE_ENV),
      log: logger("update").with({ device: deviceId }),
      onChange: () => publisher.changed(),
      requestRestart: (reason) => {
        restartReason = reason;
        stop.abort(new Error(reason));
      },
    })
    : undefined;
  if (updater !== undefined) {
    try {
      await updater.init();
    } catch (e) {
      log.error("Cannot read the update state in {dir}: {error}", {
        dir: updater.paths.dir,
        error: errorText(e),
      });
    }
  }
  const publisher = new StatusPublisher({
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
  let systemdStatus = "";
  statusChanged = () => {
    publisher.changed();
    // systemctl status shows this line; only send it when it says something new.
    const text = statusLine(reconciler.deviceStatus(), reconciler.deploymentStatuses());
    if (text !== systemdStatus && notifier.enabled) {
      systemdStatus = text;
      void notify("STATUS", () => notifier.status(text));
    }
  };

  const cached = useCache
    ? await loadDesiredCache(stateDir, deviceId)
    : { kind: "absent" as const };
  if (cached.kind === "loaded") {
    // The last complete view from KV: deployments missing from it were deleted.
    store.replace(cached.entries, true);
    log.info("Loaded {count} deployment(s) from the cache saved at {savedAt}", {
      count: cached.entries.size,
      savedAt: cached.savedAt,
    });
  } else {
    if (cached.kind === "unusable") {
      log.warn("Ignoring the desired-state cache: {reason}", { reason: cached.reason });
    }
    // Nothing known yet: leave whatever runs alone until KV answers.
    store.replace(new Map(), false);
  }

  const session = new NatsSession({
    deviceId,
    nats: config.nats,
    sink: store,
    setStatusStore: (store) => publisher.setStore(store),
    log: logger("nats").with({ device: deviceId }),
    onConnection: (nc, signal) =>
      Promise.all([commands.serve(nc, signal), updater?.serve(nc, signal)]).then(() => {}),
    onReconnect: () => metrics?.reconnected(),
  });
  const commands = new CommandServer({
    deviceId,
    agentVersion: AGENT_VERSION,
    startedAtMs,
    lastReconcileAtMs: () => lastReconcileAtMs,
    events,
    logs: podman !== undefined
      ? podmanLogSource({ deviceId, runtime, client: podman, claimed: (d) => store.isClaimed(d) })
      : { find: () => Promise.resolve(undefined), read: () => Promise.resolve([]) },
    allowLogs: config.policy.allow_logs !== false,
    log: logger("commands").with({ device: deviceId }),
  });

  parts.onStarted?.({ session, publisher });

  const stop = new AbortController();
  const onAbort = () => stop.abort(signal.reason);
  if (signal.aborted) onAbort();
  signal.addEventListener("abort", onAbort, { once: true });

  if (
    metricsModule !== undefined && metrics !== undefined && config.metrics?.listen !== undefined
  ) {
    const listen = config.metrics.listen;
    try {
      await metricsModule.serveMetrics(metrics, listen, stop.signal);
      log.info("Serving Prometheus metrics on http://{listen}/metrics", { listen });
    } catch (e) {
      log.error("Cannot serve metrics on {listen}: {error}", { listen, error: errorText(e) });
    }
  }
  const reconciling = reconciler.run(stop.signal);
  const sessionRun = session.run(stop.signal);
  publisher.start();
  // A release on trial must reconcile once and store a status before its deadline (from now).
  let firstPassDone = false;
  void updater?.watchTrial(() => firstPassDone && publisher.published > 0, stop.signal);
  void reconciler.firstPass.then(() => {
    if (stop.signal.aborted) return;
    log.info("First reconcile pass done: device is {status}", {
      status: reconciler.deviceStatus(),
    });
    firstPassDone = true;
    if (updater?.onTrial) publisher.changed();
    notify(
      "READY",
      () => notifier.ready(statusLine(reconciler.deviceStatus(), reconciler.deploymentStatuses())),
    );
    let watchdogFailures = 0;
    notifier.startWatchdog(
      () => !stop.signal.aborted,
      (e) => {
        // Once is news; every ping after that would flood the journal.
        const level = watchdogFailures++ === 0 ? "warn" : "debug";
        log[level]("sd_notify WATCHDOG failed: {error}", { error: errorText(e) });
      },
    );
  });

  await new Promise<void>((resolve) => {
    if (stop.signal.aborted) resolve();
    stop.signal.addEventListener("abort", () => resolve(), { once: true });
  });

  log.info(
    restartReason !== undefined
      ? `Restarting (${restartReason}); containers keep running`
      : "Stopping; containers keep running",
  );
  await notify("STOPPING", () => notifier.stopping());
  await withTimeout(reconciling, 3_000, () => log.warn("Reconciler did not stop in time"));
  await withTimeout(sessionRun, 1_000, () => log.debug("NATS session did not stop in time"));
  await withTimeout(store.close(), 1_000);
  const published = await publisher.publishFinal("stopped", 2_000);
  log.info(published ? "Published final status" : "Could not publish a final status");
  await session.close(1_500);
  runtime[Symbol.dispose]?.();
  podman?.close();
  notifier.close();
  signal.removeEventListener("abort", onAbort);
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

/** Waits for `p` at most `ms`; calls `onTimeout` if it did not settle. Never rejects. */
async function withTimeout(p: Promise<unknown>, ms: number, onTimeout?: () => void): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const settled = await Promise.race([
    p.then(() => true, () => true),
    new Promise<false>((r) => (timer = setTimeout(() => r(false), ms))),
  ]);
  clearTimeout(timer);
  if (!settled) onTimeout?.();
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
  Deno.exit(await main(Deno.args));
}
