/**
 * Fleet fan-out: one nats-server (or a 3-node cluster), the real operator
 * (`serve` as a subprocess, `apply`/`delete` through its CLI) and N hollow
 * devices spread over a few `deno task hollow` processes (scripts/hollow.ts,
 * agent/hollow.ts: the real agent code, FAKE in-memory container runtime).
 *
 * Per-device convergence is the server time at which the device's status
 * showing the new state was stored (a watch of `agent-status` in this
 * process); the total from the operator's HTTP API (polled every
 * {@linkcode API_POLL_MS} ms, so ± that much).
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { AgentStatus, BUCKET_AGENT_STATUS, decodeJson, labelPairs } from "@drover/contracts";
import { type NatsServer, startNats, startNatsCluster } from "../tests/support/mod.ts";
import { freePort } from "../tests/support/ports.ts";
import { ensureBuckets, forEachBounded } from "../operator/nats/kv.ts";
import { registerDevice } from "../operator/fleet/registry.ts";
import { HOLLOW_IMAGES, hollowDeviceId } from "../agent/hollow.ts";
import { LoggedProcess, REPO_ROOT, run } from "./process.ts";
import { cpuPercent, jszConsumers, type ProcSample, sampleProcess, varz } from "./machine.ts";
import { epochMs, round, summarise, type Summary } from "./stats.ts";

/**
 * How far the wall clock (what the server stamps messages with) has moved from this process's
 * monotonic clock, ms: it grows when the machine (a VM) was paused, and a phase's per-device times
 * are then off by as much.
 */
const clockSkewMs = () => Date.now() - epochMs();
import { gcPauses, loopLag, type PhaseTrace, schedTimes, WireTap } from "./wiretap.ts";

/** How often the operator's API is polled for the totals. */
export const API_POLL_MS = 250;
export const DEPLOYMENT = "fleet-app";
/** The image every hollow device already has (so the IfNotPresent pull is skipped, as on a Pi). */
export const FLEET_IMAGE = HOLLOW_IMAGES[0];
export const PREFIX = "dev";
/** The bench service's `min_ready`: none, the figures are the control plane's (see writeManifest). */
export const FLEET_MIN_READY = "0s";
export const LABELS = { fleet: "bench" };

/** One transition seen in a stored status. */
export interface FleetRecord {
  device: string;
  deployment: string;
  /** `running` at `revision`, or `gone`. */
  event: "running" | "gone";
  revision?: number;
  /** Epoch ms (server time) when the status carrying it was stored. */
  at: number;
}

/** Options of {@linkcode runFleetBench}. */
export interface FleetOptions {
  n: number;
  /** Agent processes to spread the N agents over. */
  processes: number;
  /** Seconds of steady-state sampling (≥ one heartbeat interval). */
  steadySeconds: number;
  heartbeatSeconds: number;
  /** Give up on a phase after this long. */
  phaseTimeoutMs: number;
  workDir: string;
  progress: (line: string) => void;
  /** nats-server binary (default: natsServerCommand(), i.e. DROVER_NATS_SERVER or PATH). */
  natsServer?: string;
  /** Run a cluster of this many nodes (buckets with as many replicas) instead of one server. */
  clusterNodes?: number;
  /** Seconds between full status puts while nothing changes (default: the agent's). */
  statusRefreshSeconds?: number;
  /** Only connect and measure the steady state (no deploy/update/delete). */
  steadyOnly?: boolean;
  /** Restart nats-server once everything runs and time the fleet's return. */
  storm?: boolean;
  /**
   * Listen to every message (bench/wiretap.ts) and split each device's change into steps;
   * the per-device timelines go to `<dir>/trace-<phase>.json`. Costs the server a delivery
   * per message: for the breakdown, not the headline figures.
   */
  trace?: boolean;
  /** Apply with `--wait` (the CLI then returns when the operator's view says done). */
  wait?: boolean;
  /**
   * Stall the last hollow process (SIGSTOP … SIGCONT) for this many seconds, 1 s into the
   * update: what a device whose CPU is taken away for a while lives through (its requests'
   * answers wait unread past their timeout).
   */
  stallSeconds?: number;
}

/** The reconnect storm: a server restart with every device connected. */
export interface StormResult {
  /** How long the restart itself took (stop + start until healthy), seconds. */
  restartSeconds: number;
  /** Restart begun → every device stored a status again, seconds. */
  allReportedSeconds: number | null;
  /** Restart begun → the operator's API lists every device online and ready again, seconds. */
  allReadySeconds: number | null;
  /** Per device: restart begun → its first status stored after it, seconds. */
  perDevice: Summary;
  /** Devices the restart disconnected (all on one server; a cluster node's share). */
  devices?: number;
}

/** One phase (deploy, update or delete). */
export interface FleetPhase {
  /** Per-device convergence, seconds from the command's start. */
  perDevice: Summary;
  /** Devices that converged within the timeout. */
  converged: number;
  /** Command start → the operator's API reports all N done, seconds. */
  totalSeconds: number | null;
  /** How long the `operator apply`/`delete` process itself took, seconds. */
  cliSeconds: number;
  /** CPU use from the command's start until the operator reported done, % of one core. */
  cpuPercent: PhaseCpu;
  /**
   * Where the time went, seconds: command start → the operator stored the first and the last
   * desired-state key of the phase, and per device its key stored → its status stored.
   */
  breakdown?: { firstKey: number; lastKey: number; deviceReaction: Summary };
  /** The wiretap's step durations (`trace`), ms. */
  trace?: PhaseTrace;
  /** Each party's time on a CPU and runnable-but-waiting during the phase (schedstat). */
  scheduler?: PhaseScheduler;
  /** The wall clock jumped this far against the monotonic one during the phase (a paused VM). */
  clockJumpSeconds?: number;
}

/** Scheduler time per party (`nats-server 0`, `operator`, `hollow 0`, …) during a phase, ms. */
export interface PhaseScheduler {
  runMs: Record<string, number>;
  waitMs: Record<string, number>;
}

/** CPU per party during a phase, % of one core (the machine has nproc × 100 %). */
export interface PhaseCpu {
  natsServer: number;
  operator: number;
  /** All agent processes together, and the busiest one. */
  agents: number;
  agentsBusiest: number;
}

/** The processes whose CPU a phase reports. */
interface Parties {
  /** Every nats-server node's pid. */
  nats: (number | undefined)[];
  operator: number;
  agents: number[];
}

/** Steady-state load with every device running the deployment. */
export interface SteadyState {
  seconds: number;
  natsInMsgsPerSecond: number;
  natsOutMsgsPerSecond: number;
  /** Bytes clients sent the server(s) per second: with nothing changing, the heartbeats' cost. */
  natsInBytesPerSecond: number;
  natsOutBytesPerSecond: number;
  /** Full status puts stored per second (agent-status stream). */
  statusPutsPerSecond: number;
  natsCpuPercent: number;
  natsRssMiB: number;
  natsConnections: number;
  natsConsumers: number;
  operatorCpuPercent: number;
  operatorRssMiB: number;
  agentsRssMiB: number;
  agentsCpuPercent: number;
}

/** Everything measured for one N. */
export interface FleetResult {
  n: number;
  processes: number;
  heartbeatSeconds: number;
  /** nats-server version(s) and topology, e.g. `2.9.10 ×1`. */
  server: string;
  statusRefreshSeconds?: number;
  storm?: StormResult;
  /** Agents started → the operator's API lists all N devices ready, seconds. */
  connectSeconds: number;
  deploy?: FleetPhase;
  update?: FleetPhase;
  delete?: FleetPhase;
  steady: SteadyState;
  /** Operator CPU during the deploy phase, % of one core. */
  operatorRolloutCpuPercent: number;
  operatorRssMaxMiB: number;
  /** The operator's fan-out passes that wrote something, from its log: keys written/deleted and ms. */
  operatorPasses: { put: number; deleted: number; ms: number }[];
  /**
   * JetStream consumers on the server (from `/jsz`, polled every second while
   * agents run): the most seen, and the count once each phase was done. N
   * agents should hold N (plus the operator's few); more means watches were
   * recreated while their predecessors lingered.
   */
  consumers: {
    max: number;
    afterConnect: number;
    afterDeploy: number;
    afterUpdate: number;
    afterDelete: number;
  };
  error?: string;
  /** The machine's 1-minute load average when the run started and ended (/proc/loadavg). */
  load?: { before: number; after: number };
  /** `apply` ran with `--wait`: the phases' `cliSeconds` are the user's wait. */
  applyWait?: boolean;
}

/** The 1-minute load average (/proc/loadavg), or NaN. */
async function loadAverage(): Promise<number> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  return Number(text.split(" ")[0] ?? NaN);
}

interface ApiDeployment {
  name: string;
  targeted: number;
  ready: number;
  devices: { device_id: string; wanted_revision: number | null; phase: string }[];
}

interface ApiDevice {
  device_id: string;
  status: string;
  online: boolean;
  deployments: string[];
}

/** Registers devices 0..n-1 of the bench fleet with their labels in the device registry. */
export async function registerFleet(servers: string[], n: number): Promise<void> {
  const nc = await connect({ servers });
  try {
    const kv = (await ensureBuckets(nc)).devices;
    const failures = await forEachBounded(Array.from({ length: n }, (_, i) => i), 64, async (i) => {
      await registerDevice(kv, hollowDeviceId(PREFIX, i), LABELS);
    });
    if (failures.length > 0) {
      throw new Error(
        `Cannot register ${failures.length} bench device(s): ${
          (failures[0]?.error as Error | undefined)?.message
        }`,
      );
    }
  } finally {
    await nc.close();
  }
}

/** The servers a run uses: one nats-server or a cluster, with what the bench needs of them. */
export interface Servers extends AsyncDisposable {
  urls: string[];
  monitorUrls: string[];
  nodes: NatsServer[];
}

export async function startServers(options: FleetOptions): Promise<Servers> {
  // tests/support starts natsServerCommand(), which reads DROVER_NATS_SERVER.
  const before = Deno.env.get("DROVER_NATS_SERVER");
  if (options.natsServer !== undefined) Deno.env.set("DROVER_NATS_SERVER", options.natsServer);
  try {
    if ((options.clusterNodes ?? 1) > 1) {
      const cluster = await startNatsCluster(options.clusterNodes);
      return {
        urls: cluster.urls,
        monitorUrls: cluster.nodes.map((n) => n.monitorUrl),
        nodes: cluster.nodes,
        [Symbol.asyncDispose]: () => cluster[Symbol.asyncDispose](),
      };
    }
    const nats = await startNats();
    return {
      urls: [nats.url],
      monitorUrls: [nats.monitorUrl],
      nodes: [nats],
      [Symbol.asyncDispose]: () => nats[Symbol.asyncDispose](),
    };
  } finally {
    if (before === undefined) Deno.env.delete("DROVER_NATS_SERVER");
    else Deno.env.set("DROVER_NATS_SERVER", before);
  }
}

/** Watches `agent-status` and notes each device's transitions at the server's store time. */
export class StatusRecorder {
  readonly records: FleetRecord[] = [];
  /** Device → server time of its last stored status. */
  readonly lastStored = new Map<string, number>();
  /** Status puts seen. */
  puts = 0;
  /** Device → server time its desired-state key was last written (put or delete). */
  readonly desiredAt = new Map<string, number>();
  readonly #running = new Map<string, Map<string, number>>();
  #nc: NatsConnection | undefined;
  #stop: (() => void) | undefined;

  async start(servers: string[]): Promise<void> {
    this.#nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    const kv = await new Kvm(this.#nc).open(BUCKET_AGENT_STATUS);
    const watch = await kv.watch({ include: "updates" });
    const desired = await new Kvm(this.#nc).open("desired-state");
    const desiredWatch = await desired.watch({ include: "updates" });
    this.#stop = () => {
      watch.stop();
      desiredWatch.stop();
    };
    void (async () => {
      for await (const e of desiredWatch) {
        const [device = e.key] = e.key.split(".");
        this.desiredAt.set(device, e.created.getTime());
      }
    })();
    void (async () => {
      for await (const e of watch) {
        if (e.operation !== "PUT") continue;
        this.puts++;
        const at = e.created.getTime();
        this.lastStored.set(e.key, at);
        const decoded = decodeJson(AgentStatus, e.value);
        if (decoded.ok) this.#note(e.key, decoded.value, at);
      }
    })();
  }

  #note(device: string, status: AgentStatus, at: number): void {
    let running = this.#running.get(device);
    if (running === undefined) this.#running.set(device, running = new Map());
    for (const [deployment, d] of Object.entries(status.deployments)) {
      if (d.phase === "running" && running.get(deployment) !== d.revision) {
        running.set(deployment, d.revision);
        this.records.push({ device, deployment, event: "running", revision: d.revision, at });
      }
    }
    for (const deployment of [...running.keys()]) {
      if (status.deployments[deployment] === undefined) {
        running.delete(deployment);
        this.records.push({ device, deployment, event: "gone", at });
      }
    }
  }

  /** Messages ever stored in `agent-status` (its stream's last sequence): full status puts. */
  async storedPuts(): Promise<number> {
    const jsm = await jetstreamManager(this.#nc!);
    return (await jsm.streams.info(`KV_${BUCKET_AGENT_STATUS}`)).state.last_seq;
  }

  async close(): Promise<void> {
    this.#stop?.();
    await this.#nc?.close();
  }
}

/** `--wait --timeout` for `apply` when the run asks for `--wait` (the phase's own limit). */
function waitArgs(options: FleetOptions): string[] {
  return options.wait
    ? ["--wait", "--timeout", `${Math.ceil(options.phaseTimeoutMs / 1000)}s`]
    : [];
}

/**
 * Stops `process` (SIGSTOP) for `seconds` once `device`'s desired-state key is written anew:
 * requests its devices have in flight then wait unread past their timeout, as on a device whose
 * CPU is taken away. Abort to cancel (the process is always continued).
 */
function stallWhenKeyed(
  seconds: number,
  process: LoggedProcess,
  device: string,
  recorder: StatusRecorder,
  tag: string,
  progress: (line: string) => void,
): AbortController {
  const cancel = new AbortController();
  const since = Date.now();
  void (async () => {
    while (!cancel.signal.aborted && (recorder.desiredAt.get(device) ?? 0) < since) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (cancel.signal.aborted) return;
    progress(
      `${tag}: ${device}'s key written: stalling hollow process ${process.pid} for ${seconds} s`,
    );
    Deno.kill(process.pid, "SIGSTOP");
    await new Promise((r) => setTimeout(r, seconds * 1000));
    Deno.kill(process.pid, "SIGCONT");
    progress(`${tag}: hollow process ${process.pid} continued`);
  })();
  return cancel;
}

/** When the current run's hollow processes were spawned (their `--trace-gc` clock starts about then). */
let hollowStartedAt = 0;

/** Runs deploy, steady state, update and delete for N agents (and the storm when asked). */
export async function runFleetBench(options: FleetOptions): Promise<FleetResult> {
  const { n, progress, workDir } = options;
  const nodes = options.clusterNodes ?? 1;
  const tag = `fleet N=${n}${nodes > 1 ? ` cluster×${nodes}` : ""}`;
  const dir = `${workDir}/fleet-${n}-${nodes}-${crypto.randomUUID().slice(0, 6)}`;
  const loadBefore = await loadAverage();
  await Deno.mkdir(dir, { recursive: true });
  // nats-server's defaults allow 64K connections.
  await using servers = await startServers(options);
  const natsUrl = servers.urls.join(",");
  await using operator = await startBenchOperator(
    dir,
    natsUrl,
    nodes > 1 ? ["--replicas", String(Math.min(nodes, 3))] : [],
  );
  const api = operator.api;
  // The CLI runs against the same servers as the operator.
  const opEnv = operator.env;

  // Label selectors match the operator's device registry: register the fleet as `device add` does.
  await registerFleet(servers.urls, n);
  const recorder = new StatusRecorder();
  await recorder.start(servers.urls);
  const tap = options.trace ? new WireTap() : undefined;
  await tap?.start(servers.urls);
  progress(`${tag}: starting ${n} hollow devices in ${options.processes} process(es)`);
  const agents: LoggedProcess[] = [];
  const t0 = Date.now();
  hollowStartedAt = t0;
  agents.push(
    ...(await spawnHollowDevices(n, options.processes, servers.urls, dir, [
      "--heartbeat",
      String(options.heartbeatSeconds),
      ...(options.statusRefreshSeconds !== undefined
        ? ["--status-refresh", String(options.statusRefreshSeconds)]
        : []),
    ], options.trace ? ["--trace-gc"] : [])),
  );
  const versions = await Promise.all(
    servers.monitorUrls.map((u) => varz(u).then((v) => v.version)),
  );
  const result: FleetResult = {
    n,
    processes: agents.length,
    heartbeatSeconds: options.heartbeatSeconds,
    server: `${[...new Set(versions)].join("/")} ×${nodes}`,
    ...(options.statusRefreshSeconds !== undefined
      ? { statusRefreshSeconds: options.statusRefreshSeconds }
      : {}),
    connectSeconds: NaN,
    ...(options.wait ? { applyWait: true } : {}),
    steady: emptySteady(),
    operatorRolloutCpuPercent: NaN,
    operatorRssMaxMiB: NaN,
    operatorPasses: [],
    consumers: { max: 0, afterConnect: NaN, afterDeploy: NaN, afterUpdate: NaN, afterDelete: NaN },
  };
  const consumersNow = async () => {
    let c = 0;
    for (const u of servers.monitorUrls) c += await jszConsumers(u).catch(() => NaN);
    if (c > result.consumers.max) result.consumers.max = c;
    return c;
  };
  const consumerPoll = setInterval(() => void consumersNow(), 1000);
  let rssMax = 0;
  const sampleOperator = async () => {
    const s = await sampleProcess(operator.process.pid);
    if (s) rssMax = Math.max(rssMax, s.rssMiB);
    return s;
  };
  try {
    await until(
      async () => {
        const devices = await getJson<ApiDevice[]>(`${api}/api/devices`);
        return devices.filter((d) => d.status === "ready").length >= n;
      },
      options.phaseTimeoutMs,
      `all ${n} agents report ready`,
      500,
    );
    result.connectSeconds = round((Date.now() - t0) / 1000);
    result.consumers.afterConnect = await consumersNow();
    progress(
      `${tag}: all agents connected in ${result.connectSeconds} s ` +
        `(${result.consumers.afterConnect} consumers)`,
    );
    const parties: Parties = {
      nats: await Promise.all(servers.nodes.map((node) => findPid(node.configPath))),
      operator: operator.process.pid,
      agents: agents.map((a) => a.pid),
    };
    if (options.steadyOnly) {
      result.steady = await steady(
        options,
        servers.monitorUrls,
        operator.process.pid,
        parties.nats,
        agents,
        recorder,
      );
      return result;
    }

    const tapOf = tap === undefined
      ? undefined
      : { wire: tap, dir, agentLogs: agents.map((a) => a.logPath) };
    // Deploy.
    const manifest = `${dir}/manifest.json`;
    const before = await sampleOperator();
    await writeManifest(manifest, 1, { minReady: FLEET_MIN_READY });
    result.deploy = await phase(
      options,
      parties,
      "deploy",
      async () => {
        return await cli(["apply", "-f", manifest, ...waitArgs(options)], opEnv);
      },
      async () => {
        const d = await getJson<ApiDeployment>(`${api}/api/deployments/${DEPLOYMENT}`)
          .catch(() => undefined);
        return d !== undefined && d.targeted === n && d.ready === n;
      },
      recorder,
      (r) => r.event === "running",
      tapOf,
    );
    result.consumers.afterDeploy = await consumersNow();
    const after = await sampleOperator();
    if (before && after) result.operatorRolloutCpuPercent = round(cpuPercent(before, after));

    // Steady state: everything running, only heartbeats.
    result.steady = await steady(
      options,
      servers.monitorUrls,
      operator.process.pid,
      parties.nats,
      agents,
      recorder,
    );
    await sampleOperator();

    // Update: every device replaces its container.
    const wanted = await getJson<ApiDeployment>(`${api}/api/deployments/${DEPLOYMENT}`);
    const oldMax = Math.max(...wanted.devices.map((d) => d.wanted_revision ?? 0));
    const revisionsBefore = latestRunningRevisions(recorder);
    await writeManifest(manifest, 2, { minReady: FLEET_MIN_READY });
    const stall = options.stallSeconds === undefined ? undefined : stallWhenKeyed(
      options.stallSeconds,
      agents[0]!,
      hollowDeviceId(PREFIX, 100),
      recorder,
      tag,
      progress,
    );
    result.update = await phase(
      options,
      parties,
      "update",
      async () => {
        return await cli(["apply", "-f", manifest, ...waitArgs(options)], opEnv);
      },
      async () => {
        const d = await getJson<ApiDeployment>(`${api}/api/deployments/${DEPLOYMENT}`);
        return d.targeted === n && d.ready === n &&
          d.devices.every((x) => (x.wanted_revision ?? 0) > oldMax);
      },
      recorder,
      (r) =>
        r.event === "running" && (r.revision ?? 0) > (revisionsBefore.get(r.device) ?? Infinity),
      tapOf,
    ).finally(() => stall?.abort());
    result.consumers.afterUpdate = await consumersNow();
    await sampleOperator();

    // Delete.
    result.delete = await phase(
      options,
      parties,
      "delete",
      async () => {
        return await cli(["delete", DEPLOYMENT], opEnv);
      },
      async () => {
        const devices = await getJson<ApiDevice[]>(`${api}/api/devices`);
        return devices.every((d) => !d.deployments.includes(DEPLOYMENT));
      },
      recorder,
      (r) => r.event === "gone",
      tapOf,
    );
    result.consumers.afterDelete = await consumersNow();
    progress(
      `${tag}: consumers after connect/deploy/update/delete: ` +
        `${result.consumers.afterConnect}/${result.consumers.afterDeploy}/` +
        `${result.consumers.afterUpdate}/${result.consumers.afterDelete}, max ${result.consumers.max}`,
    );
    await sampleOperator();

    const [first] = servers.nodes;
    if (options.storm && first !== undefined) {
      // On a cluster, one node restarts: the devices connected to it come back (to it or
      // another node); the rest stay connected.
      const on = nodes > 1 ? await devicesOn(servers.monitorUrls[0]!) : undefined;
      result.storm = await storm(options, first, api, recorder, tag, on);
    }
  } catch (e) {
    result.error = (e as Error).message;
    progress(`${tag}: ${result.error}`);
  } finally {
    clearInterval(consumerPoll);
    result.operatorRssMaxMiB = round(rssMax);
    await Promise.all(agents.map((a) => a.stop(15_000)));
    await recorder.close();
    await tap?.close();
    result.operatorPasses = await operatorPasses(operator.process.logPath);
    result.load = { before: loadBefore, after: await loadAverage() };
  }
  return result;
}

/**
 * Restarts the server with every device connected and times the return:
 * every device reconnects, takes its snapshot and puts its full status again.
 */
async function storm(
  options: FleetOptions,
  server: NatsServer,
  api: string,
  recorder: StatusRecorder,
  tag: string,
  /** The devices connected to `server` (a cluster node); all of them when undefined. */
  on?: Set<string>,
): Promise<StormResult> {
  const { progress } = options;
  const n = on?.size ?? options.n;
  progress(`${tag}: reconnect storm — restarting nats-server with ${n} devices connected to it`);
  const t0 = Date.now();
  await server.restart();
  const restartSeconds = round((Date.now() - t0) / 1000);
  let allReportedSeconds: number | null = null;
  let allReadySeconds: number | null = null;
  const reported = () => {
    let count = 0;
    for (const [device, at] of recorder.lastStored) {
      if (at >= t0 && (on === undefined || on.has(device))) count++;
    }
    return count;
  };
  try {
    await until(
      () => Promise.resolve(reported() >= n),
      options.phaseTimeoutMs,
      "every device reports again",
      100,
    );
    allReportedSeconds = round((Date.now() - t0) / 1000);
    await until(
      async () => {
        const devices = await getJson<ApiDevice[]>(`${api}/api/devices`);
        return devices.filter((d) => d.status === "ready" && d.online).length >= options.n;
      },
      options.phaseTimeoutMs,
      "operator lists every device ready again",
      API_POLL_MS,
    );
    allReadySeconds = round((Date.now() - t0) / 1000);
  } catch (e) {
    progress(`${tag}: storm: ${(e as Error).message} (${reported()}/${n} reported)`);
  }
  const ms = summarise(
    [...recorder.lastStored].filter(([d, at]) => at >= t0 && (on === undefined || on.has(d)))
      .map(([, at]) => at - t0),
  );
  const perDevice = secondsSummary(ms);
  progress(
    `${tag}: storm: restart ${restartSeconds} s, all reported again ${
      allReportedSeconds ?? "timeout"
    } s ` +
      `(p50 ${perDevice.p50}, p99 ${perDevice.p99}), operator all ready ${
        allReadySeconds ?? "timeout"
      } s`,
  );
  return { restartSeconds, allReportedSeconds, allReadySeconds, perDevice, devices: n };
}

/** The bench devices connected to the server at `monitorUrl` (by connection name). */
async function devicesOn(monitorUrl: string): Promise<Set<string>> {
  const connz = await getJson<{ connections?: { name?: string }[] }>(
    `${monitorUrl}/connz?limit=100000`,
  );
  const out = new Set<string>();
  for (const c of connz.connections ?? []) {
    const m = /^drover-agent-(.+)$/.exec(c.name ?? "");
    if (m) out.add(m[1]!);
  }
  return out;
}

function secondsSummary(ms: Summary): Summary {
  const sec = (x: number) => Math.round(x / 10) / 100;
  return {
    n: ms.n,
    min: sec(ms.min),
    p50: sec(ms.p50),
    p95: sec(ms.p95),
    p99: sec(ms.p99),
    max: sec(ms.max),
    mean: sec(ms.mean),
  };
}

async function operatorPasses(
  logPath: string,
): Promise<{ put: number; deleted: number; ms: number }[]> {
  const text = await Deno.readTextFile(logPath).catch(() => "");
  return [...text.matchAll(/(\d+) written, (\d+) deleted, (\d+) failed in (\d+) ms/g)]
    .map((m) => ({ put: Number(m[1]), deleted: Number(m[2]), ms: Number(m[4]) }));
}

/**
 * Writes the bench deployment's manifest. `minReady` sets the service's `min_ready`: the fleet
 * benchmark passes `0s`, as it measures the control plane, not the readiness wait (a service
 * without a health check otherwise counts as ready only after the default 10 s).
 */
export async function writeManifest(
  path: string,
  version: number,
  options: { minReady?: string } = {},
): Promise<void> {
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      name: DEPLOYMENT,
      selector: { labels: { fleet: "bench" } },
      score: {
        type: "PodmanV0",
        services: [{
          name: "app",
          image: FLEET_IMAGE,
          env: { BENCH_VERSION: String(version) },
          ...(options.minReady !== undefined ? { min_ready: options.minReady } : {}),
        }],
      },
    }),
  );
}

export async function cli(args: string[], env: Record<string, string>): Promise<void> {
  const out = await run(Deno.execPath(), ["run", "-A", "operator/main.ts", ...args], env);
  if (out.code !== 0) {
    throw new Error(`operator ${args.join(" ")} exited ${out.code}: ${out.stderr.trim()}`);
  }
}

/**
 * Runs one command and waits for the operator to report it done; per-device
 * times are the first matching record of each device after the start.
 */
async function phase(
  options: FleetOptions,
  parties: Parties,
  name: string,
  command: () => Promise<void>,
  done: () => Promise<boolean>,
  recorder: StatusRecorder,
  matches: (r: FleetRecord) => boolean,
  tap?: { wire: WireTap; dir: string; agentLogs: string[] },
): Promise<FleetPhase> {
  const t0 = Date.now();
  const cpu0 = await sampleParties(parties);
  const skew0 = clockSkewMs();
  const sched0 = await schedOf(parties);
  // A failed command (e.g. `apply --wait` out of time) still gets its breakdown below.
  let commandError: unknown;
  await command().catch((e) => commandError = e);
  const cliSeconds = round((Date.now() - t0) / 1000);
  let totalSeconds: number | null = null;
  try {
    if (commandError !== undefined) throw commandError;
    await until(done, options.phaseTimeoutMs, `operator reports ${name} done`, API_POLL_MS);
    totalSeconds = Math.round((Date.now() - t0) / 10) / 100;
  } catch (e) {
    options.progress(`fleet N=${options.n}: ${name}: ${(e as Error).message.slice(0, 500)}`);
  }
  const cpuPercent = phaseCpu(cpu0, await sampleParties(parties));
  const clockJumpSeconds = round((clockSkewMs() - skew0) / 1000);
  if (Math.abs(clockJumpSeconds) >= 0.5) {
    options.progress(
      `fleet N=${options.n}: ${name}: the wall clock moved ${clockJumpSeconds} s against the ` +
        `monotonic one during the phase (the machine was paused?)`,
    );
  }
  const sched1 = await schedOf(parties);
  const scheduler: PhaseScheduler = { runMs: {}, waitMs: {} };
  for (const [who, b] of Object.entries(sched1)) {
    const a = sched0[who] ?? { runMs: NaN, waitMs: NaN };
    scheduler.runMs[who] = Math.round(b.runMs - a.runMs);
    scheduler.waitMs[who] = Math.round(b.waitMs - a.waitMs);
  }
  options.progress(
    `fleet N=${options.n}: ${name}: scheduler (ms on a CPU / runnable but waiting): ${
      Object.keys(scheduler.runMs).map((w) => `${w} ${scheduler.runMs[w]} / ${scheduler.waitMs[w]}`)
        .join("; ")
    }`,
  );
  const first = new Map<string, number>();
  const reaction = new Map<string, number>();
  for (const r of recorder.records) {
    if (r.at < t0 || !matches(r) || first.has(r.device)) continue;
    first.set(r.device, (r.at - t0) / 1000);
    const keyAt = recorder.desiredAt.get(r.device);
    if (keyAt !== undefined && keyAt >= t0) reaction.set(r.device, r.at - keyAt);
  }
  const keyTimes = [...recorder.desiredAt.values()].filter((at) => at >= t0);
  const breakdown = keyTimes.length === 0 ? undefined : {
    firstKey: round((Math.min(...keyTimes) - t0) / 1000),
    lastKey: round((Math.max(...keyTimes) - t0) / 1000),
    deviceReaction: secondsSummary(summarise([...reaction.values()])),
  };
  if (breakdown) {
    options.progress(
      `fleet N=${options.n}: ${name}: keys written ${breakdown.firstKey}–${breakdown.lastKey} s ` +
        `after the command; key → status p50 ${breakdown.deviceReaction.p50} s, ` +
        `p99 ${breakdown.deviceReaction.p99} s`,
    );
  }
  let trace: PhaseTrace | undefined;
  if (tap !== undefined) {
    const converged = new Map([...first].map(([d, s]) => [d, t0 + s * 1000]));
    const traced = tap.wire.phase(t0, Date.now(), converged);
    // Every timeline is in the work directory's trace file; the result keeps the summary.
    const { slowest: _slowest, ...summary } = traced.trace;
    trace = summary;
    await Deno.writeTextFile(`${tap.dir}/trace-${name}.json`, JSON.stringify(traced, null, 1));
    const s = trace.steps;
    const line = Object.entries(s).map(([k, v]) => `${k} ${v.p50}/${v.p99}/${v.max}`).join("; ");
    options.progress(
      `fleet N=${options.n}: ${name}: trace (ms p50/p99/max): ${line}; requests ${
        JSON.stringify(trace.requests)
      }, unanswered ${JSON.stringify(trace.unanswered)}`,
    );
    const t1 = Date.now();
    for (const [i, log] of tap.agentLogs.entries()) {
      const text = await Deno.readTextFile(log);
      const gc = gcPauses(text, hollowStartedAt, t0, t1);
      const lag = loopLag(text, t0, t1);
      options.progress(
        `fleet N=${options.n}: ${name}: hollow process ${i}: event loop late by up to ` +
          `${lag.maxMs} ms (line at ${Math.round(lag.at)} ms); GC ${JSON.stringify(gc.count)}, ` +
          `${gc.totalMs} ms paused, longest ${gc.maxMs} ms at ${Math.round(gc.maxAt)} ms`,
      );
    }
  }
  const ms = summarise([...first.values()].map((s) => s * 1000));
  const sec = (x: number) => Math.round(x / 10) / 100;
  const seconds: Summary = {
    n: ms.n,
    min: sec(ms.min),
    p50: sec(ms.p50),
    p95: sec(ms.p95),
    p99: sec(ms.p99),
    max: sec(ms.max),
    mean: sec(ms.mean),
  };
  options.progress(
    `fleet N=${options.n}: ${name}: ${first.size}/${options.n} devices, p50 ${seconds.p50} s, ` +
      `p99 ${seconds.p99} s, operator total ${
        totalSeconds ?? "timeout"
      } s (cli ${cliSeconds} s); ` +
      `CPU % nats ${cpuPercent.natsServer}, operator ${cpuPercent.operator}, agents ` +
      `${cpuPercent.agents} (busiest process ${cpuPercent.agentsBusiest})`,
  );
  if (totalSeconds === null) {
    throw new Error(`${name} did not converge within ${options.phaseTimeoutMs / 1000} s`);
  }
  return {
    perDevice: seconds,
    converged: first.size,
    totalSeconds,
    cliSeconds,
    cpuPercent,
    ...(breakdown ? { breakdown } : {}),
    ...(trace ? { trace } : {}),
    scheduler,
    ...(Math.abs(clockJumpSeconds) >= 0.5 ? { clockJumpSeconds } : {}),
  };
}

/** Scheduler times of every party (bench/wiretap.ts `schedTimes`), by name. */
async function schedOf(p: Parties): Promise<Record<string, { runMs: number; waitMs: number }>> {
  const out: Record<string, { runMs: number; waitMs: number }> = {};
  for (const [i, pid] of p.nats.entries()) {
    if (pid !== undefined) out[`nats-server ${i}`] = await schedTimes(pid);
  }
  out.operator = await schedTimes(p.operator);
  for (const [i, pid] of p.agents.entries()) out[`hollow ${i}`] = await schedTimes(pid);
  return out;
}

type PartySamples = {
  nats: (ProcSample | undefined)[];
  operator: ProcSample | undefined;
  agents: (ProcSample | undefined)[];
};

async function sampleParties(p: Parties): Promise<PartySamples> {
  return {
    nats: await Promise.all(
      p.nats.map((pid) => pid === undefined ? undefined : sampleProcess(pid)),
    ),
    operator: await sampleProcess(p.operator),
    agents: await Promise.all(p.agents.map((pid) => sampleProcess(pid))),
  };
}

function phaseCpu(a: PartySamples, b: PartySamples): PhaseCpu {
  const pct = (x: ProcSample | undefined, y: ProcSample | undefined) =>
    x && y ? cpuPercent(x, y) : NaN;
  const agents = b.agents.map((s, i) => pct(a.agents[i], s));
  const nats = b.nats.map((s, i) => pct(a.nats[i], s));
  return {
    natsServer: round(nats.reduce((x, y) => x + y, 0)),
    operator: round(pct(a.operator, b.operator)),
    agents: round(agents.reduce((x, y) => x + y, 0)),
    agentsBusiest: round(Math.max(...agents)),
  };
}

/** The pid of the process whose command line mentions `needle` (e.g. a config path). */
export async function findPid(needle: string): Promise<number | undefined> {
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline.includes(needle) && cmdline.includes("nats-server")) return Number(entry.name);
  }
  return undefined;
}

/** The highest revision each device reported running so far. */
function latestRunningRevisions(recorder: StatusRecorder): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of recorder.records) {
    if (r.event === "running") out.set(r.device, Math.max(out.get(r.device) ?? 0, r.revision ?? 0));
  }
  return out;
}

async function steady(
  options: FleetOptions,
  monitorUrls: string[],
  operatorPid: number,
  natsPids: (number | undefined)[],
  agents: LoggedProcess[],
  recorder: StatusRecorder,
): Promise<SteadyState> {
  options.progress(`fleet N=${options.n}: steady state for ${options.steadySeconds} s`);
  // Let the rollout's tail (debounced puts, operator passes) finish first.
  await new Promise((r) => setTimeout(r, 2_000));
  const sumVarz = async () => {
    const all = await Promise.all(monitorUrls.map((u) => varz(u)));
    return {
      in_msgs: all.reduce((x, v) => x + v.in_msgs, 0),
      out_msgs: all.reduce((x, v) => x + v.out_msgs, 0),
      in_bytes: all.reduce((x, v) => x + v.in_bytes, 0),
      out_bytes: all.reduce((x, v) => x + v.out_bytes, 0),
      mem: all.reduce((x, v) => x + v.mem, 0),
      connections: all.reduce((x, v) => x + v.connections, 0),
    };
  };
  const natsSample = () =>
    Promise.all(natsPids.map((pid) => pid === undefined ? undefined : sampleProcess(pid)));
  const v0 = await sumVarz();
  const puts0 = await recorder.storedPuts();
  const t0 = performance.now();
  const op0 = await sampleProcess(operatorPid);
  const nats0 = await natsSample();
  const ag0 = await Promise.all(agents.map((a) => sampleProcess(a.pid)));
  await new Promise((r) => setTimeout(r, options.steadySeconds * 1000));
  const v1 = await sumVarz();
  const dt = (performance.now() - t0) / 1000;
  const puts = (await recorder.storedPuts()) - puts0;
  const op1 = await sampleProcess(operatorPid);
  const nats1 = await natsSample();
  const ag1 = await Promise.all(agents.map((a) => sampleProcess(a.pid)));
  let agentsCpu = 0;
  let agentsRss = 0;
  ag1.forEach((s, i) => {
    const a = ag0[i];
    if (s && a) agentsCpu += cpuPercent(a, s);
    if (s) agentsRss += s.rssMiB;
  });
  let natsCpu = 0;
  nats1.forEach((s, i) => {
    const a = nats0[i];
    natsCpu += s && a ? cpuPercent(a, s) : NaN;
  });
  let consumers = 0;
  for (const u of monitorUrls) consumers += await jszConsumers(u).catch(() => NaN);
  return {
    seconds: round(dt),
    natsInMsgsPerSecond: round((v1.in_msgs - v0.in_msgs) / dt),
    natsOutMsgsPerSecond: round((v1.out_msgs - v0.out_msgs) / dt),
    natsInBytesPerSecond: Math.round((v1.in_bytes - v0.in_bytes) / dt),
    natsOutBytesPerSecond: Math.round((v1.out_bytes - v0.out_bytes) / dt),
    statusPutsPerSecond: round(puts / dt),
    natsCpuPercent: round(natsCpu),
    natsRssMiB: round(v1.mem / 1024 / 1024),
    natsConnections: v1.connections,
    natsConsumers: consumers,
    operatorCpuPercent: op0 && op1 ? round(cpuPercent(op0, op1)) : NaN,
    operatorRssMiB: op1 ? round(op1.rssMiB) : NaN,
    agentsRssMiB: round(agentsRss),
    agentsCpuPercent: round(agentsCpu),
  };
}

function emptySteady(): SteadyState {
  return {
    seconds: NaN,
    natsInMsgsPerSecond: NaN,
    natsOutMsgsPerSecond: NaN,
    natsInBytesPerSecond: NaN,
    natsOutBytesPerSecond: NaN,
    statusPutsPerSecond: NaN,
    natsCpuPercent: NaN,
    natsRssMiB: NaN,
    natsConnections: NaN,
    natsConsumers: NaN,
    operatorCpuPercent: NaN,
    operatorRssMiB: NaN,
    agentsRssMiB: NaN,
    agentsCpuPercent: NaN,
  };
}

export async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`GET ${url}: HTTP ${res.status}`);
  }
  return await res.json() as T;
}

export async function until(
  condition: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await condition()) return;
    } catch (e) {
      lastError = e;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  const why = lastError ? ` (last error: ${(lastError as Error).message})` : "";
  throw new Error(`Timed out after ${timeoutMs / 1000} s waiting until ${what}${why}`);
}

/** A bench's `operator serve`: its API address, and the process (disposed with it). */
export interface BenchOperator extends AsyncDisposable {
  api: string;
  process: LoggedProcess;
  /** Environment for the operator CLI: the same NATS servers, info-level logs. */
  env: Record<string, string>;
}

/**
 * Starts `operator serve` on a free loopback port for a benchmark (its log in
 * `dir/operator.log`, info level: it logs each fan-out pass with its duration)
 * and waits until `/healthz` answers.
 */
export async function startBenchOperator(
  dir: string,
  natsUrl: string,
  extraArgs: string[] = [],
): Promise<BenchOperator> {
  const apiPort = await freePort();
  const api = `http://127.0.0.1:${apiPort}`;
  const env = { NATS_URL: natsUrl, DROVER_LOG_LEVEL: "info" };
  const process = await LoggedProcess.spawn(
    Deno.execPath(),
    ["run", "-A", "operator/main.ts", "serve", "--listen", `127.0.0.1:${apiPort}`, ...extraArgs],
    `${dir}/operator.log`,
    env,
  );
  try {
    await until(
      async () => (await fetch(`${api}/healthz`).then(async (r) => {
        await r.body?.cancel();
        return r.ok;
      }).catch(() => false)),
      120_000,
      "operator /healthz",
    );
  } catch (e) {
    await process[Symbol.asyncDispose]();
    throw e;
  }
  return { api, process, env, [Symbol.asyncDispose]: () => process[Symbol.asyncDispose]() };
}

/**
 * Starts `n` hollow devices (`scripts/hollow.ts --worker`) split over
 * `processes` processes, labelled with the bench fleet's {@linkcode LABELS} and
 * connected to every URL; each process logs to `dir/agents-P.log`.
 */
export async function spawnHollowDevices(
  n: number,
  processes: number,
  urls: readonly string[],
  dir: string,
  extraArgs: readonly string[] = [],
  v8Flags: readonly string[] = [],
): Promise<LoggedProcess[]> {
  const out: LoggedProcess[] = [];
  const per = Math.ceil(n / processes);
  for (let p = 0; p * per < n; p++) {
    out.push(
      await LoggedProcess.spawn(
        Deno.execPath(),
        [
          "run",
          "-A",
          `--v8-flags=${["--max-old-space-size=4096", ...v8Flags].join(",")}`,
          `${REPO_ROOT}/scripts/hollow.ts`,
          "--worker",
          "--prefix",
          PREFIX,
          "--first",
          String(p * per),
          "--devices",
          String(Math.min(per, n - p * per)),
          ...extraArgs,
          ...labelPairs(LABELS).flatMap((pair) => ["--label", pair]),
          ...urls.flatMap((u) => ["--nats", u]),
        ],
        `${dir}/agents-${p}.log`,
      ),
    );
  }
  return out;
}
