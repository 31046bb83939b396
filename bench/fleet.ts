/**
 * Fleet fan-out: one nats-server, the real operator (`serve` as a
 * subprocess, `apply`/`delete` through its CLI) and N agents spread over a
 * few `fleet_agents.ts` processes (see there: real agent code, FAKE
 * in-memory container runtime).
 *
 * Per-device convergence comes from the agents (when their status put with
 * the new state was acknowledged); the total from the operator's HTTP API
 * (polled every {@linkcode API_POLL_MS} ms, so ± that much).
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { startNats } from "../tests/support/mod.ts";
import { freePort } from "../tests/support/ports.ts";
import { ensureBuckets, forEachBounded } from "../operator/kv.ts";
import { registerDevice } from "../operator/registry.ts";
import { FLEET_IMAGE, fleetDevice, type FleetRecord } from "./fleet_agents.ts";
import { LoggedProcess, run } from "./process.ts";
import { cpuPercent, jszConsumers, type ProcSample, sampleProcess, varz } from "./machine.ts";
import { epochMs, round, summarise, type Summary } from "./stats.ts";

/** How often the operator's API is polled for the totals. */
export const API_POLL_MS = 250;
const DEPLOYMENT = "fleet-app";

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
  nats: number | undefined;
  operator: number;
  agents: number[];
}

/** Steady-state load with every device running the deployment. */
export interface SteadyState {
  seconds: number;
  natsInMsgsPerSecond: number;
  natsOutMsgsPerSecond: number;
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
  deployments: string[];
}

/** Registers devices 0..n-1 of the bench fleet with their labels in the device registry. */
async function registerFleet(natsUrl: string, n: number): Promise<void> {
  const nc = await connect({ servers: natsUrl });
  try {
    const kv = (await ensureBuckets(nc)).devices;
    const failures = await forEachBounded(Array.from({ length: n }, (_, i) => i), 64, async (i) => {
      const device = fleetDevice(i);
      await registerDevice(kv, device.id, device.labels);
    });
    if (failures.length > 0) {
      throw new Error(
        `Cannot register ${failures.length} bench device(s): ${
          (failures[0].error as Error).message
        }`,
      );
    }
  } finally {
    await nc.close();
  }
}

/** Runs deploy, steady state, update and delete for N agents. */
export async function runFleetBench(options: FleetOptions): Promise<FleetResult> {
  const { n, progress, workDir } = options;
  const dir = `${workDir}/fleet-${n}`;
  await Deno.mkdir(dir, { recursive: true });
  // 5 000 connections and consumers: nats-server's defaults allow 64K connections.
  await using nats = await startNats();
  const apiPort = await freePort();
  const api = `http://127.0.0.1:${apiPort}`;
  // Info level: the operator logs each fan-out pass with its duration.
  const opEnv = { NATS_URL: nats.url, DROVER_LOG_LEVEL: "info" };
  await using operator = await LoggedProcess.spawn(
    Deno.execPath(),
    ["run", "-A", "operator/main.ts", "serve", "--listen", `127.0.0.1:${apiPort}`],
    `${dir}/operator.log`,
    opEnv,
  );
  await until(
    async () => (await fetch(`${api}/healthz`).then(async (r) => {
      await r.body?.cancel();
      return r.ok;
    }).catch(() => false)),
    60_000,
    "operator /healthz",
  );

  // Label selectors match the operator's device registry: register the fleet as `device add` does.
  await registerFleet(nats.url, n);
  progress(`fleet N=${n}: starting ${n} agents in ${options.processes} process(es)`);
  const recordFiles: string[] = [];
  const agents: LoggedProcess[] = [];
  const t0 = epochMs();
  const per = Math.ceil(n / options.processes);
  for (let p = 0; p < options.processes; p++) {
    const from = p * per;
    const count = Math.min(per, n - from);
    if (count <= 0) break;
    const records = `${dir}/records-${p}.jsonl`;
    recordFiles.push(records);
    agents.push(
      await LoggedProcess.spawn(
        Deno.execPath(),
        [
          "run",
          "-A",
          "--v8-flags=--max-old-space-size=4096",
          "bench/fleet_agents.ts",
          "--nats",
          nats.url,
          "--from",
          String(from),
          "--count",
          String(count),
          "--records",
          records,
          "--heartbeat",
          String(options.heartbeatSeconds),
        ],
        `${dir}/agents-${p}.log`,
      ),
    );
  }
  const result: FleetResult = {
    n,
    processes: agents.length,
    heartbeatSeconds: options.heartbeatSeconds,
    connectSeconds: NaN,
    steady: emptySteady(),
    operatorRolloutCpuPercent: NaN,
    operatorRssMaxMiB: NaN,
    operatorPasses: [],
    consumers: { max: 0, afterConnect: NaN, afterDeploy: NaN, afterUpdate: NaN, afterDelete: NaN },
  };
  const consumersNow = async () => {
    const c = await jszConsumers(nats.monitorUrl).catch(() => NaN);
    if (c > result.consumers.max) result.consumers.max = c;
    return c;
  };
  const consumerPoll = setInterval(() => void consumersNow(), 1000);
  let rssMax = 0;
  const sampleOperator = async () => {
    const s = await sampleProcess(operator.pid);
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
    result.connectSeconds = round((epochMs() - t0) / 1000);
    result.consumers.afterConnect = await consumersNow();
    progress(
      `fleet N=${n}: all agents connected in ${result.connectSeconds} s ` +
        `(${result.consumers.afterConnect} consumers)`,
    );

    // Deploy.
    const manifest = `${dir}/manifest.json`;
    const before = await sampleOperator();
    await writeManifest(manifest, 1);
    const parties: Parties = {
      nats: await findPid(nats.configPath),
      operator: operator.pid,
      agents: agents.map((a) => a.pid),
    };
    result.deploy = await phase(
      options,
      parties,
      "deploy",
      async () => {
        return await cli(["apply", "-f", manifest], opEnv);
      },
      async () => {
        const d = await getJson<ApiDeployment>(`${api}/api/deployments/${DEPLOYMENT}`)
          .catch(() => undefined);
        return d !== undefined && d.targeted === n && d.ready === n;
      },
      recordFiles,
      (r) => r.event === "running",
    );
    result.consumers.afterDeploy = await consumersNow();
    const after = await sampleOperator();
    if (before && after) result.operatorRolloutCpuPercent = round(cpuPercent(before, after));

    // Steady state: everything running, only heartbeats.
    result.steady = await steady(
      options,
      nats.monitorUrl,
      operator.pid,
      parties.nats,
      agents,
    );
    await sampleOperator();

    // Update: every device replaces its container.
    const wanted = await getJson<ApiDeployment>(`${api}/api/deployments/${DEPLOYMENT}`);
    const oldMax = Math.max(...wanted.devices.map((d) => d.wanted_revision ?? 0));
    const revisionsBefore = await latestRunningRevisions(recordFiles);
    await writeManifest(manifest, 2);
    result.update = await phase(
      options,
      parties,
      "update",
      async () => {
        return await cli(["apply", "-f", manifest], opEnv);
      },
      async () => {
        const d = await getJson<ApiDeployment>(`${api}/api/deployments/${DEPLOYMENT}`);
        return d.targeted === n && d.ready === n &&
          d.devices.every((x) => (x.wanted_revision ?? 0) > oldMax);
      },
      recordFiles,
      (r) =>
        r.event === "running" && (r.revision ?? 0) > (revisionsBefore.get(r.device) ?? Infinity),
    );
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
      recordFiles,
      (r) => r.event === "gone",
    );
    result.consumers.afterDelete = await consumersNow();
    progress(
      `fleet N=${n}: consumers after connect/deploy/update/delete: ` +
        `${result.consumers.afterConnect}/${result.consumers.afterDeploy}/` +
        `${result.consumers.afterUpdate}/${result.consumers.afterDelete}, max ${result.consumers.max}`,
    );
    await sampleOperator();
  } catch (e) {
    result.error = (e as Error).message;
    progress(`fleet N=${n}: ${result.error}`);
  } finally {
    clearInterval(consumerPoll);
    result.operatorRssMaxMiB = round(rssMax);
    await Promise.all(agents.map((a) => a.stop(15_000)));
    result.operatorPasses = await operatorPasses(operator.logPath);
  }
  return result;
}

async function operatorPasses(
  logPath: string,
): Promise<{ put: number; deleted: number; ms: number }[]> {
  const text = await Deno.readTextFile(logPath).catch(() => "");
  return [...text.matchAll(/(\d+) written, (\d+) deleted, (\d+) failed in (\d+) ms/g)]
    .map((m) => ({ put: Number(m[1]), deleted: Number(m[2]), ms: Number(m[4]) }));
}

async function writeManifest(path: string, version: number): Promise<void> {
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      name: DEPLOYMENT,
      selector: { labels: { fleet: "bench" } },
      score: {
        type: "PodmanV0",
        services: [{ name: "app", image: FLEET_IMAGE, env: { BENCH_VERSION: String(version) } }],
      },
    }),
  );
}

async function cli(args: string[], env: Record<string, string>): Promise<void> {
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
  recordFiles: string[],
  matches: (r: FleetRecord) => boolean,
): Promise<FleetPhase> {
  const t0 = epochMs();
  const cpu0 = await sampleParties(parties);
  await command();
  const cliSeconds = round((epochMs() - t0) / 1000);
  let totalSeconds: number | null = null;
  try {
    await until(done, options.phaseTimeoutMs, `operator reports ${name} done`, API_POLL_MS);
    totalSeconds = Math.round((epochMs() - t0) / 10) / 100;
  } catch (e) {
    options.progress(`fleet N=${options.n}: ${name}: ${(e as Error).message}`);
  }
  const cpuPercent = phaseCpu(cpu0, await sampleParties(parties));
  // Records are flushed every 50 ms.
  await new Promise((r) => setTimeout(r, 300));
  const first = new Map<string, number>();
  for (const r of await readRecords(recordFiles)) {
    if (r.at < t0 || !matches(r) || first.has(r.device)) continue;
    first.set(r.device, (r.at - t0) / 1000);
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
  return { perDevice: seconds, converged: first.size, totalSeconds, cliSeconds, cpuPercent };
}

type PartySamples = {
  nats: ProcSample | undefined;
  operator: ProcSample | undefined;
  agents: (ProcSample | undefined)[];
};

async function sampleParties(p: Parties): Promise<PartySamples> {
  return {
    nats: p.nats === undefined ? undefined : await sampleProcess(p.nats),
    operator: await sampleProcess(p.operator),
    agents: await Promise.all(p.agents.map((pid) => sampleProcess(pid))),
  };
}

function phaseCpu(a: PartySamples, b: PartySamples): PhaseCpu {
  const pct = (x: ProcSample | undefined, y: ProcSample | undefined) =>
    x && y ? cpuPercent(x, y) : NaN;
  const agents = b.agents.map((s, i) => pct(a.agents[i], s));
  return {
    natsServer: round(pct(a.nats, b.nats)),
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

async function readRecords(files: string[]): Promise<FleetRecord[]> {
  const out: FleetRecord[] = [];
  for (const file of files) {
    const text = await Deno.readTextFile(file).catch(() => "");
    for (const line of text.split("\n")) if (line) out.push(JSON.parse(line));
  }
  return out;
}

/** The highest revision each device reported running so far. */
async function latestRunningRevisions(files: string[]): Promise<Map<string, number>> {
  await new Promise((r) => setTimeout(r, 100));
  const out = new Map<string, number>();
  for (const r of await readRecords(files)) {
    if (r.event === "running") out.set(r.device, Math.max(out.get(r.device) ?? 0, r.revision ?? 0));
  }
  return out;
}

async function steady(
  options: FleetOptions,
  monitorUrl: string,
  operatorPid: number,
  natsPid: number | undefined,
  agents: LoggedProcess[],
): Promise<SteadyState> {
  options.progress(`fleet N=${options.n}: steady state for ${options.steadySeconds} s`);
  // Let the rollout's tail (debounced puts, operator passes) finish first.
  await new Promise((r) => setTimeout(r, 2_000));
  const v0 = await varz(monitorUrl);
  const t0 = performance.now();
  const op0 = await sampleProcess(operatorPid);
  const nats0 = natsPid === undefined ? undefined : await sampleProcess(natsPid);
  const ag0 = await Promise.all(agents.map((a) => sampleProcess(a.pid)));
  await new Promise((r) => setTimeout(r, options.steadySeconds * 1000));
  const v1 = await varz(monitorUrl);
  const dt = (performance.now() - t0) / 1000;
  const op1 = await sampleProcess(operatorPid);
  const nats1 = natsPid === undefined ? undefined : await sampleProcess(natsPid);
  const ag1 = await Promise.all(agents.map((a) => sampleProcess(a.pid)));
  let agentsCpu = 0;
  let agentsRss = 0;
  ag1.forEach((s, i) => {
    const a = ag0[i];
    if (s && a) agentsCpu += cpuPercent(a, s);
    if (s) agentsRss += s.rssMiB;
  });
  return {
    seconds: round(dt),
    natsInMsgsPerSecond: round((v1.in_msgs - v0.in_msgs) / dt),
    natsOutMsgsPerSecond: round((v1.out_msgs - v0.out_msgs) / dt),
    natsCpuPercent: nats0 && nats1 ? round(cpuPercent(nats0, nats1)) : NaN,
    natsRssMiB: round(v1.mem / 1024 / 1024),
    natsConnections: v1.connections,
    natsConsumers: await jszConsumers(monitorUrl).catch(() => NaN),
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

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`GET ${url}: HTTP ${res.status}`);
  }
  return await res.json() as T;
}

async function until(
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
