/**
 * Benchmarks on one real device: the real agent (`deno run agent/main.ts`
 * as a subprocess), a real nats-server and a real, isolated podman service.
 *
 * - Reconcile latency against podman's floor: the floor is the raw REST
 *   calls an equivalent change needs (create+start; remove+create+start;
 *   remove) made directly with the podman client; Drover's figure runs from
 *   `kv.put`/`kv.delete` until podman's event stream reports the container
 *   started/removed. Both ends use podman's own event time (`timeNano`), so
 *   the event logger's polling lag counts for neither. Floor and Drover runs
 *   alternate, so drift of the machine hits both alike.
 * - Footprint: a fresh agent process with 10 running deployments — time from
 *   process start to its first status in KV, then idle CPU and RSS.
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { type KV, Kvm } from "@nats-io/kv";
import {
  type AgentStatus,
  BUCKET_AGENT_STATUS,
  BUCKET_DEPLOYMENTS,
  BUCKET_DESIRED_STATE,
  type DesiredState,
  desiredStateKey,
  LABELS,
  type PodmanService,
  statusKey,
} from "@drover/contracts";
import { buildBusyboxImage, startNats, startPodman, waitFor } from "../tests/support/mod.ts";
import { PodmanClient } from "../agent/runtime/podman/mod.ts";
import { toLibpodSpec } from "../agent/runtime/podman_runtime.ts";
import { toContainerSpec } from "../agent/reconcile/plan.ts";
import { DesiredSnapshotService } from "../operator/devices/snapshots.ts";
import { EventWatch, type ObservedEvent } from "./podman_events.ts";
import { LoggedProcess } from "./process.ts";
import { cpuPercent, sampleProcess } from "./machine.ts";
import { epochMs, rounded, summarise, type Summary } from "./stats.ts";
import { NOTHING_FETCHED_FLAGS } from "../scripts/bundle.ts";

/** The test image under a fixed, non-`latest` tag: present locally, so never pulled (IfNotPresent). */
export const BENCH_IMAGE = "localhost/drover/busybox:bench";
const DEVICE = "bench-device";
/** Exits at once on SIGTERM (a plain `sleep` as PID 1 ignores it and would wait out the stop timeout). */
const COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"];

/** Options of {@linkcode runDeviceBench}. */
export interface DeviceBenchOptions {
  /** Measured iterations of each operation (floor and Drover alike). */
  iterations: number;
  /** Seconds of idle sampling for the footprint. */
  idleSeconds: number;
  /** Deployments running during the footprint sampling. */
  footprintDeployments: number;
  /** Where agent logs and configs go. */
  workDir: string;
  progress: (line: string) => void;
  /**
   * Command that runs the aarch64 agent under qemu (without `--config`), to
   * measure its footprint too; omitted to skip.
   */
  aarch64?: string[];
  /** Shorter idle window for the (slow, emulated) aarch64 run. */
  aarch64IdleSeconds?: number;
}

/** One operation's latency, floor against Drover. */
export interface LatencyRow {
  operation: "deploy" | "update" | "delete";
  /** What the floor consists of. */
  floorCalls: string;
  /** Floor by podman's event time. */
  floor: Summary;
  /** Floor as the client saw the REST calls return (for reference). */
  floorRest: Summary;
  drover: Summary;
  /** Drover p50 / floor p50, and the same for p95. */
  ratioP50: number;
  ratioP95: number;
}

/** Footprint of one real agent. */
export interface FootprintResult {
  deployments: number;
  /** Process start → first status in KV, ms. */
  startToFirstStatusMs: number;
  /** Process start → a status showing every deployment running, ms. */
  startToReadyMs: number;
  idleSeconds: number;
  idleCpuPercent: number;
  rssMiB: { start: number; end: number; max: number };
  /** /proc/PID/smaps_rollup at the end of the idle window: anonymous and file-backed RSS, MiB. */
  rssSplitMiB?: { anon: number; file: number };
}

/** Everything {@linkcode runDeviceBench} measured. */
export interface DeviceBenchResult {
  iterations: number;
  warmup: number;
  latency: LatencyRow[];
  /** Single podman round trips the agent may add to the floor calls, ms. */
  roundTrips: { listManaged: Summary; imageExists: Summary };
  footprint: FootprintResult;
  /**
   * CPU time (utime + stime) of the agent process over the measured Drover
   * iterations, per change (each iteration is three: deploy, update, delete),
   * ms, less its idle rate (measured over 5 s before) over as long.
   */
  agentCpuMsPerChange: number;
  /** The same for the aarch64 bundle under qemu (emulated: for information only). */
  aarch64?: FootprintResult;
  aarch64Error?: string;
  agentLog: string;
}

const WARMUP = 2;

/**
 * The `--v8-flags=…` of the `agent` task in deno.json, so the benchmark runs
 * the agent with the heap settings it ships with (the compile and bundle
 * scripts bake the same flag). `BENCH_AGENT_V8_FLAGS` overrides it, to
 * compare settings ("" for none).
 */
export function agentV8Flags(): string[] {
  const override = Deno.env.get("BENCH_AGENT_V8_FLAGS");
  if (override !== undefined) return override === "" ? [] : [`--v8-flags=${override}`];
  const config = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));
  const task: string = config?.tasks?.agent ?? "";
  return task.split(/\s+/).filter((arg) => arg.startsWith("--v8-flags="));
}

/**
 * `deno` arguments that run the agent (before `--config`): from source by default;
 * `BENCH_AGENT=bundle` runs `dist/drover-agent.bundle.js` (`deno task bundle`) with the
 * launcher's flags, as devices run it — no module graph, npm resolution or TypeScript emit at
 * run time, ≈ 9 MiB less RSS (bench/RESULTS.md). `BENCH_AGENT_CPU_PROF=DIR` adds `--cpu-prof`.
 */
export function agentRunArgs(): string[] {
  // A V8 CPU profile of each agent process (its .cpuprofile files) into this directory.
  const profDir = Deno.env.get("BENCH_AGENT_CPU_PROF");
  const prof = profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : [];
  if (Deno.env.get("BENCH_AGENT") === "bundle") {
    const bundle = new URL("../dist/drover-agent.bundle.js", import.meta.url).pathname;
    return [
      "run",
      ...NOTHING_FETCHED_FLAGS,
      ...prof,
      "--unstable-net",
      "-A",
      ...agentV8Flags(),
      bundle,
    ];
  }
  return ["run", "-A", ...prof, ...agentV8Flags(), "agent/main.ts"];
}

/** Runs the latency and footprint benchmarks on one real device stack. */
export async function runDeviceBench(options: DeviceBenchOptions): Promise<DeviceBenchResult> {
  const { progress } = options;
  progress("device: starting nats-server and an isolated podman service");
  await using stack = await openDeviceStack();
  const { nats, podman, desired, status } = stack;
  {
    const configPath = await writeAgentConfig(options.workDir, nats.url, podman.socket);
    const agentLog = `${options.workDir}/agent-latency.log`;

    await using agent = await LoggedProcess.spawn(
      Deno.execPath(),
      [...agentRunArgs(), "--config", configPath],
      agentLog,
    );
    await waitForStatus(status, (s) => s.status === "ready", 60_000);
    await using events = await EventWatch.open(podman.socket);
    using client = new PodmanClient({ socketPath: podman.socket });

    const listMs: number[] = [];
    const imageExistsMs: number[] = [];
    const samples = {
      floor: { deploy: [] as number[], update: [] as number[], delete: [] as number[] },
      floorRest: { deploy: [] as number[], update: [] as number[], delete: [] as number[] },
      drover: { deploy: [] as number[], update: [] as number[], delete: [] as number[] },
    };
    const total = WARMUP + options.iterations;
    // The agent's idle rate (heartbeats, timers), subtracted from its CPU over the iterations:
    // after start-up has settled (compiling, the first pass), over 5 s.
    await new Promise((r) => setTimeout(r, 5_000));
    const idle0 = await sampleProcess(agent.pid);
    await new Promise((r) => setTimeout(r, 5_000));
    const idle1 = await sampleProcess(agent.pid);
    const idleMsPerMs = idle0 && idle1 ? (idle1.cpuMs - idle0.cpuMs) / (idle1.at - idle0.at) : 0;
    let agentCpuMs = 0;
    progress(`device: ${options.iterations} measured iterations (+${WARMUP} warm-up), alternating`);
    for (let i = 0; i < total; i++) {
      const keep = i >= WARMUP;
      const floor = await floorIteration(client, events, i);
      const cpu0 = await sampleProcess(agent.pid);
      const drover = await droverIteration(desired, status, events, i);
      const cpu1 = await sampleProcess(agent.pid);
      if (!keep) continue;
      agentCpuMs += (cpu1?.cpuMs ?? NaN) - (cpu0?.cpuMs ?? NaN) -
        idleMsPerMs * ((cpu1?.at ?? NaN) - (cpu0?.at ?? NaN));
      listMs.push(floor.list);
      imageExistsMs.push(floor.imageExists);
      for (const op of ["deploy", "update", "delete"] as const) {
        samples.floor[op].push(floor.event[op]);
        samples.floorRest[op].push(floor.rest[op]);
        samples.drover[op].push(drover[op]);
      }
    }
    await agent.stop();

    const floorCalls = {
      deploy: "network create + create + start",
      update: "remove (force) + create + start",
      delete: "remove (force)",
    };
    const latency: LatencyRow[] = (["deploy", "update", "delete"] as const).map((op) => {
      const floor = summarise(samples.floor[op]);
      const drover = summarise(samples.drover[op]);
      return {
        operation: op,
        floorCalls: floorCalls[op],
        floor: rounded(floor),
        floorRest: rounded(summarise(samples.floorRest[op])),
        drover: rounded(drover),
        ratioP50: Math.round((drover.p50 / floor.p50) * 100) / 100,
        ratioP95: Math.round((drover.p95 / floor.p95) * 100) / 100,
      };
    });

    progress(
      `device: footprint, ${options.footprintDeployments} deployments, ${options.idleSeconds} s idle`,
    );
    const n = options.footprintDeployments;
    await putIdleDeployments(desired, n);
    const footprint = await measureFootprint(
      status,
      [Deno.execPath(), ...agentRunArgs(), "--config", configPath],
      `${options.workDir}/agent-footprint.log`,
      n,
      options.idleSeconds,
      120_000,
    );
    let aarch64: FootprintResult | undefined;
    let aarch64Error: string | undefined;
    if (options.aarch64) {
      progress("device: the aarch64 bundle under qemu-aarch64-static (emulated)");
      try {
        aarch64 = await measureFootprint(
          status,
          [...options.aarch64, "--config", configPath],
          `${options.workDir}/agent-aarch64.log`,
          n,
          Math.min(options.idleSeconds, options.aarch64IdleSeconds ?? Infinity),
          300_000,
        );
      } catch (e) {
        aarch64Error = (e as Error).message;
      }
    }
    return {
      iterations: options.iterations,
      warmup: WARMUP,
      latency,
      roundTrips: {
        listManaged: rounded(summarise(listMs)),
        imageExists: rounded(summarise(imageExistsMs)),
      },
      footprint,
      agentCpuMsPerChange: Math.round((agentCpuMs / (3 * options.iterations)) * 100) / 100,
      ...(aarch64 ? { aarch64 } : {}),
      ...(aarch64Error ? { aarch64Error } : {}),
      agentLog,
    };
  }
}

/** What one device's benchmarks run against: a real nats-server, an isolated podman, buckets. */
export interface DeviceStack extends AsyncDisposable {
  nats: Awaited<ReturnType<typeof startNats>>;
  podman: Awaited<ReturnType<typeof startPodman>>;
  desired: KV;
  status: KV;
}

/**
 * Starts nats-server and an isolated podman service with the bench image, creates the buckets
 * and answers the agent's snapshot requests (`operator serve`'s snapshot service alone);
 * disposing stops them in reverse.
 */
export async function openDeviceStack(): Promise<DeviceStack> {
  const stack = new AsyncDisposableStack();
  try {
    const nats = stack.use(await startNats());
    const podman = stack.use(await startPodman());
    await buildBusyboxImage(podman, BENCH_IMAGE);
    const nc = await connect({ servers: nats.url });
    stack.defer(() => nc.close());
    const kvm = new Kvm(nc);
    const desired = await kvm.create(BUCKET_DESIRED_STATE, { history: 5 });
    const status = await kvm.create(BUCKET_AGENT_STATUS, { history: 1 });
    await kvm.create(BUCKET_DEPLOYMENTS, { history: 5 });
    const snapshots = stack.use(new DesiredSnapshotService(nc, desired));
    await snapshots.start();
    const owned = stack.move();
    return {
      nats,
      podman,
      desired,
      status,
      [Symbol.asyncDispose]: () => owned.disposeAsync(),
    };
  } catch (e) {
    await stack.disposeAsync();
    throw e;
  }
}

export async function writeAgentConfig(
  dir: string,
  natsUrl: string,
  socket: string,
): Promise<string> {
  const path = `${dir}/agent.toml`;
  await Deno.writeTextFile(
    path,
    [
      "[agent]",
      `device_id = "${DEVICE}"`,
      `state_dir = ${JSON.stringify(`${dir}/agent-state`)}`,
      "heartbeat_seconds = 10",
      'log_level = "info"',
      'labels = { bench = "latency" }',
      "[nats]",
      `servers = [${JSON.stringify(natsUrl)}]`,
      "[podman]",
      `socket = ${JSON.stringify(socket)}`,
      "",
    ].join("\n"),
  );
  return path;
}

function service(revision: number): PodmanService {
  return {
    name: "app",
    image: BENCH_IMAGE,
    command: COMMAND,
    env: { BENCH_REVISION: String(revision) },
    restart: "always",
  };
}

function desiredValue(deployment: string, revision: number): string {
  const value: DesiredState = {
    deployment,
    score: { type: "PodmanV0", services: [service(revision)] },
  };
  return JSON.stringify(value);
}

interface FloorSample {
  /** One `GET containers/json` filtered by the managed label, ms. */
  list: number;
  /** One `GET images/{name}/exists`, ms. */
  imageExists: number;
  event: Record<"deploy" | "update" | "delete", number>;
  rest: Record<"deploy" | "update" | "delete", number>;
}

/**
 * The same calls the agent's plan needs, straight to podman: the spec is
 * built by the agent's own functions, with the managed label changed so the
 * running agent leaves these containers alone.
 */
async function floorIteration(
  client: PodmanClient,
  events: EventWatch,
  i: number,
): Promise<FloorSample> {
  const spec = (revision: number) => {
    const s = toLibpodSpec(toContainerSpec(`floor-${i}`, revision, service(revision), "floor"));
    s.labels = { ...s.labels, [LABELS.managed]: "bench-floor" };
    return s;
  };
  const first = spec(1);
  const started = events.next((e) => e.action === "start" && e.name === first.name);
  let t0 = epochMs();
  // A new deployment's first container needs the deployment's network (with DNS), which the
  // agent creates before it: podman's floor for the same deploy includes that call.
  const network = Object.keys(first.Networks ?? {})[0];
  if (network !== undefined) await client.createNetwork(network, {});
  const { id } = await client.createContainer(first);
  await client.startContainer(id);
  const deployRest = epochMs() - t0;
  const deploy = (await started).atMs - t0;

  const second = spec(2);
  const restarted = events.next((e) =>
    e.action === "start" && e.name === second.name && e.id !== id
  );
  t0 = epochMs();
  await client.removeContainer(id, { force: true, timeoutSeconds: 10, volumes: true });
  const { id: id2 } = await client.createContainer(second);
  await client.startContainer(id2);
  const updateRest = epochMs() - t0;
  const update = (await restarted).atMs - t0;

  // The one observation the agent makes before acting: list managed containers.
  let t = epochMs();
  await client.listContainers({ all: true, labels: { [LABELS.managed]: "true" } });
  const list = epochMs() - t;

  const removed = events.next((e) => e.action === "remove" && e.id === id2);
  t0 = epochMs();
  await client.removeContainer(id2, { force: true, timeoutSeconds: 10, volumes: true });
  const deleteRest = epochMs() - t0;
  const del = (await removed).atMs - t0;
  t = epochMs();
  await client.imageExists(BENCH_IMAGE);
  const imageExists = epochMs() - t;
  if (network !== undefined) await client.removeNetwork(network);
  return {
    list,
    imageExists,
    event: { deploy, update, delete: del },
    rest: { deploy: deployRest, update: updateRest, delete: deleteRest },
  };
}

async function droverIteration(
  desired: KV,
  status: KV,
  events: EventWatch,
  i: number,
): Promise<Record<"deploy" | "update" | "delete", number>> {
  const deployment = `lat-${i}`;
  const name = `${deployment}_app`;
  const key = desiredStateKey(DEVICE, deployment);

  const started = events.next((e) => e.action === "start" && e.name === name);
  let t0 = epochMs();
  const rev1 = await desired.put(key, desiredValue(deployment, 1));
  const first: ObservedEvent = await started;
  const deploy = first.atMs - t0;
  await waitForStatus(status, (s) =>
    s.deployments[deployment]?.revision === rev1 &&
    s.deployments[deployment]?.phase === "running");

  const restarted = events.next((e) =>
    e.action === "start" && e.name === name && e.id !== first.id
  );
  t0 = epochMs();
  const rev2 = await desired.put(key, desiredValue(deployment, 2));
  const second = await restarted;
  const update = second.atMs - t0;
  await waitForStatus(status, (s) =>
    s.deployments[deployment]?.revision === rev2 &&
    s.deployments[deployment]?.phase === "running");

  const removed = events.next((e) => e.action === "remove" && e.id === second.id);
  t0 = epochMs();
  await desired.delete(key);
  const del = (await removed).atMs - t0;
  await waitForStatus(status, (s) => s.deployments[deployment] === undefined);
  return { deploy, update, delete: del };
}

/** Polls the device's status until `ok` holds; returns when (epoch ms) it was first seen. */
function waitForStatus(
  status: KV,
  ok: (s: AgentStatus) => boolean,
  timeoutMs = 30_000,
): Promise<number> {
  return waitFor(async () => {
    const entry = await status.get(statusKey(DEVICE));
    if (entry?.operation !== "PUT" || entry.value.length === 0) return undefined;
    return ok(entry.json<AgentStatus>()) ? epochMs() : undefined;
  }, { timeoutMs, intervalMs: 10, message: "the agent's status" });
}

/** Puts the idle deployments the footprint runs with. */
export async function putIdleDeployments(desired: KV, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await desired.put(desiredStateKey(DEVICE, `idle-${i}`), desiredValue(`idle-${i}`, 1));
  }
}

/**
 * Starts a fresh agent process with `command` (its containers already run
 * or get created), times its first status and its first all-running
 * status, then samples CPU and RSS while it idles.
 */
export async function measureFootprint(
  status: KV,
  command: string[],
  logPath: string,
  n: number,
  idleSeconds: number,
  timeoutMs: number,
): Promise<FootprintResult> {
  // Forget the previous process's status, so "first status" is this one's.
  // A delete marker, not a purge: agent-status refuses rollups (docs/security.md).
  await status.delete(statusKey(DEVICE));
  const t0 = epochMs();
  const [program, ...programArgs] = command;
  if (program === undefined) throw new Error("Cannot start the agent: its command line is empty");
  await using agent = await LoggedProcess.spawn(program, programArgs, logPath);
  const first = await waitForStatus(status, () => true, timeoutMs);
  const ready = await waitForStatus(
    status,
    (s) =>
      s.status === "ready" &&
      Array.from({ length: n }, (_, i) => s.deployments[`idle-${i}`]?.phase)
        .every((p) => p === "running"),
    timeoutMs,
  );
  // Let start-up work (first pass, cache write, JIT) settle before sampling idle.
  await new Promise((r) => setTimeout(r, 3_000));
  const start = await sampleProcess(agent.pid);
  let max = start?.rssMiB ?? NaN;
  let last = start;
  const until = performance.now() + idleSeconds * 1000;
  while (performance.now() < until) {
    await new Promise((r) => setTimeout(r, 1_000));
    const s = await sampleProcess(agent.pid);
    if (s === undefined) break;
    max = Math.max(max, s.rssMiB);
    last = s;
  }
  const rssSplitMiB = await rssSplit(agent.pid);
  await agent.stop();
  return {
    deployments: n,
    startToFirstStatusMs: Math.round(first - t0),
    startToReadyMs: Math.round(ready - t0),
    idleSeconds,
    idleCpuPercent: start && last ? Math.round(cpuPercent(start, last) * 100) / 100 : NaN,
    rssMiB: {
      start: Math.round((start?.rssMiB ?? NaN) * 10) / 10,
      end: Math.round((last?.rssMiB ?? NaN) * 10) / 10,
      max: Math.round(max * 10) / 10,
    },
    ...(rssSplitMiB ? { rssSplitMiB } : {}),
  };
}

/** Anonymous (heaps, malloc) and file-backed (the deno executable's pages) RSS of `pid`, MiB. */
async function rssSplit(pid: number): Promise<{ anon: number; file: number } | undefined> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`);
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(text)?.[1]);
    const mib = (k: number) => Math.round((k / 1024) * 10) / 10;
    return { anon: mib(kb("Anonymous")), file: mib(kb("Rss") - kb("Anonymous")) };
  } catch {
    return undefined;
  }
}
