/**
 * Runs one chaos experiment: a 3-node NATS cluster, two `operator serve`, a
 * few real agents (each with its own podman service and its state directory
 * on a small tmpfs, in its own network namespace where the host allows), N
 * hollow devices; the workload driver and the nemesis carry out their seeded
 * plans (workload.ts, nemesis_plan.ts) while the observer (observer.ts) and
 * the samplers record; then every fault is healed, the settle step applied,
 * the fleet given `boundSeconds` to converge, the final views taken, and the
 * checker (checker.ts) judges the history.
 *
 * Everything goes through processes and CLIs (the operator's `serve`, `apply`,
 * `rollout undo`, `delete`, `history`, `device label`; the agent's binary;
 * `scripts/hollow.ts`), never their internals. Every loop is bounded in count
 * and time; everything started is stopped in `finally`, and the run's
 * directory is owned (tests/support/_owned_dir.ts), so a run killed hard is
 * cleaned up (processes, mounts, namespaces) by the next one.
 *
 * @module
 */

import { abortableSleep } from "@drover/common";
import { LABELS } from "@drover/contracts";
import {
  buildBusyboxImage,
  ManagedProcess,
  type NatsCluster,
  podmanFetch,
  type PodmanService,
  startNatsCluster,
  startPodman,
} from "../../tests/support/mod.ts";
import { AGENT_MAIN, agentToml } from "../../tests/support/agent_process.ts";
import { operatorTaskArgs } from "../../tests/support/operator_process.ts";
import { runCommand } from "../../tests/support/_exec.ts";
import { killAll, processesReferencing, unmountAllUnder } from "../../tests/support/_host.ts";
import { createOwnedDir, sweepAbandonedDirs } from "../../tests/support/_owned_dir.ts";
import { freePort } from "../../tests/support/ports.ts";
import { sampleProcess } from "../machine.ts";
import { REPO_ROOT } from "../process.ts";
import { check, type CheckResult } from "./checker.ts";
import type {
  ChaosHistory,
  ContainerSample,
  DeploymentView,
  DeviceView,
  FaultRecord,
  HistoryListing,
  OperatorLogRecord,
  OpRecord,
  RssSample,
} from "./history.ts";
import { parseOperatorLog } from "./history.ts";
import { FAULT_KINDS, type FaultKind, planFaults, type PlannedFault } from "./nemesis_plan.ts";
import { Observer } from "./observer.ts";
import { serveRelay } from "./relay.ts";
import {
  CHAOS_IMAGE,
  DEPLOYMENTS,
  FLEET_LABELS,
  manifestFor,
  type PlannedOp,
  planWorkload,
} from "./workload.ts";

/** What a run is asked to do. */
export interface ChaosOptions {
  minutes: number;
  seed: number;
  /** Hollow devices (FAKE in-memory runtime). */
  devices: number;
  /** Real agents, each with its own podman service. */
  agents: number;
  /** Time the fleet gets to converge after the last fault and the settle step. */
  boundSeconds: number;
  heartbeatSeconds: number;
  /** Fault kinds to leave out (besides those the host cannot do). */
  without?: FaultKind[];
  progress: (line: string) => void;
  /** Aborting heals every fault at once, skips the rest and cleans up (Ctrl-C). */
  signal?: AbortSignal;
}

/** What a run produced. */
export interface ChaosRun {
  history: ChaosHistory;
  result: CheckResult;
  planned: PlannedFault[];
  kinds: FaultKind[];
  /** Where the logs and history.json are (removed unless kept). */
  dir: string;
}

const NATS_NODES = 3;
/** Size of each agent's state tmpfs: room for its cache, and quickly filled. */
const STATE_TMPFS = "4m";
/** A staged rollout still going is waited for this long before the next change to it. */
const ROLLOUT_WAIT_MS = 40_000;
/** One operator CLI call may take this long. */
const CLI_TIMEOUT_MS = 60_000;
const CLI_ATTEMPTS = 3;
const CONTAINER_SAMPLE_MS = 3_000;
const RSS_SAMPLE_MS = 10_000;
/** The chaos window's first seconds have no fault (the fleet is up; the workload starts). */
const WARMUP_MS = 15_000;

/**
 * Notes a child whose command line does not name the run's directory (the operators, the
 * hollow processes) in `DIR/pids`, so that a run killed hard can still be cleaned up: the
 * sweep kills such a pid only while its command line is still exactly the one noted.
 */
async function notePid(dir: string, process: ManagedProcess): Promise<void> {
  const cmdline = await Deno.readTextFile(`/proc/${process.pid}/cmdline`).catch(() => "");
  await Deno.writeTextFile(
    `${dir}/pids`,
    JSON.stringify({ pid: process.pid, cmdline }) + "\n",
    { append: true },
  );
}

/** Removes what a chaos run killed hard left behind: processes, mounts, namespaces. */
async function cleanUpAbandoned(dir: string): Promise<void> {
  killAll((await processesReferencing(dir)).map((p) => p.pid));
  const noted = await Deno.readTextFile(`${dir}/pids`).catch(() => "");
  for (const line of noted.split("\n").filter((l) => l)) {
    const { pid, cmdline } = JSON.parse(line) as { pid: number; cmdline: string };
    const now = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => undefined);
    if (cmdline !== "" && now === cmdline) killAll([pid]);
  }
  await unmountAllUnder(dir);
  const names = await Deno.readTextFile(`${dir}/netns`).catch(() => "");
  for (const name of names.split("\n").filter((n) => n)) {
    await runCommand("ip", ["netns", "del", name]);
  }
}

/** What this host can do: per optional fault kind, undefined or why not. */
async function probeHost(dir: string): Promise<{ netns?: string; tmpfs?: string }> {
  const out: { netns?: string; tmpfs?: string } = {};
  const probe = `${dir}/probe-tmpfs`;
  await Deno.mkdir(probe);
  const mount = await runCommand("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe]);
  if (mount.code === 0) await runCommand("umount", [probe]);
  else out.tmpfs = `cannot mount a tmpfs (${mount.stderr.trim()})`;
  await Deno.remove(probe);
  const name = `drover-chaos-probe-${crypto.randomUUID().slice(0, 8)}`;
  const add = await runCommand("ip", ["netns", "add", name]);
  if (add.code !== 0) {
    out.netns = `no network namespaces (${add.stderr.trim()})`;
  } else {
    const ipt = await runCommand("ip", ["netns", "exec", name, "iptables", "-w", "-L", "INPUT"]);
    if (ipt.code !== 0) out.netns = `no iptables in a namespace (${ipt.stderr.trim()})`;
    await runCommand("ip", ["netns", "del", name]);
  }
  return out;
}

/** One `operator serve`: restartable; each start is an incarnation with its own log. */
class OperatorSlot {
  process: ManagedProcess | undefined;
  incarnation = 0;
  readonly incarnations: { pid: number; logPath: string; name: string }[] = [];

  constructor(
    readonly name: string,
    readonly port: number,
    readonly dir: string,
    readonly urls: string[],
  ) {}

  get api(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.process?.running ?? false;
  }

  /** Starts it and waits (bounded) for /healthz; a slow start is noted, not fatal. */
  async start(waitMs = 60_000): Promise<boolean> {
    this.incarnation++;
    const logPath = `${this.dir}/${this.name}.${this.incarnation}.log`;
    this.process = ManagedProcess.spawn({
      command: Deno.execPath(),
      args: [
        ...await operatorTaskArgs(),
        "serve",
        "--listen",
        `127.0.0.1:${this.port}`,
        "--replicas",
        String(NATS_NODES),
      ],
      env: {
        NATS_URL: this.urls.join(","),
        DROVER_LOG_FORMAT: "json",
        DROVER_LOG_LEVEL: "info",
        INIT_CWD: REPO_ROOT,
      },
      cwd: REPO_ROOT,
      logPath,
    });
    await notePid(this.dir, this.process);
    this.incarnations.push({
      pid: this.process.pid,
      logPath,
      name: `${this.name}#${this.incarnation}`,
    });
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && this.running) {
      const ok = await fetch(`${this.api}/healthz`).then(async (r) => {
        await r.body?.cancel();
        return r.ok;
      }).catch(() => false);
      if (ok) return true;
      await abortableSleep(250);
    }
    return false;
  }

  async kill(): Promise<void> {
    await this.process?.kill();
  }

  async stop(): Promise<void> {
    await this.process?.stop(10_000);
  }
}

/** One real agent with its podman service, state tmpfs and (maybe) network namespace. */
class AgentSlot {
  process: ManagedProcess | undefined;
  incarnation = 0;
  paused = false;
  partitioned = false;
  filled = false;

  constructor(
    readonly id: string,
    readonly dir: string,
    readonly podman: PodmanService,
    readonly stateDir: string,
    readonly configPath: string,
    readonly netns: string | undefined,
  ) {}

  get running(): boolean {
    return this.process?.running ?? false;
  }

  get name(): string {
    return `${this.id}#${this.incarnation}`;
  }

  start(): void {
    this.incarnation++;
    const agent = [Deno.execPath(), "run", "-A", AGENT_MAIN, "--config", this.configPath];
    // `ip netns exec` execs the agent in place: the pid is the agent's.
    const [command, ...args] = this.netns === undefined
      ? agent
      : ["ip", "netns", "exec", this.netns, ...agent];
    this.process = ManagedProcess.spawn({
      command: command!,
      args,
      env: { DROVER_LOG_LEVEL: "info", NO_COLOR: "1" },
      cwd: REPO_ROOT,
      logPath: `${this.dir}/agent.log`,
    });
    this.paused = false;
  }

  signal(signal: Deno.Signal): void {
    const pid = this.process?.pid;
    if (pid === undefined || !this.running) return;
    try {
      Deno.kill(pid, signal);
    } catch {
      // It exited meanwhile.
    }
  }

  async kill(): Promise<void> {
    await this.process?.kill();
    this.paused = false;
  }

  async stop(): Promise<void> {
    if (this.paused) this.signal("SIGCONT");
    this.paused = false;
    await this.process?.stop(15_000);
  }

  /** Drops every packet in the agent's namespace (both ways, connections stay open). */
  async partition(on: boolean): Promise<void> {
    if (this.netns === undefined || on === this.partitioned) return;
    const r = await runCommand("ip", [
      "netns",
      "exec",
      this.netns,
      "iptables",
      "-w",
      on ? "-I" : "-D",
      "INPUT",
      "-j",
      "DROP",
    ]);
    if (r.code !== 0) throw new Error(`iptables in ${this.netns}: ${r.stderr.trim()}`);
    this.partitioned = on;
  }

  /** Fills the state directory's file system until it is full (or frees it). */
  async fill(on: boolean): Promise<void> {
    const path = `${this.stateDir}/chaos-fill`;
    if (!on) {
      await Deno.remove(path).catch(() => {});
      this.filled = false;
      return;
    }
    // Only ever a tmpfs of its own: filling the host's disk is not the experiment.
    const mounts = await Deno.readTextFile("/proc/self/mounts");
    if (!mounts.split("\n").some((l) => l.split(" ")[1] === this.stateDir)) {
      throw new Error(`${this.stateDir} is not a mount point of its own`);
    }
    this.filled = true;
    const file = await Deno.open(path, { create: true, write: true });
    const chunk = new Uint8Array(64 * 1024);
    try {
      // Bounded: a 4 MiB tmpfs is full long before 1 GiB.
      for (let written = 0; written < 1024 ** 3;) written += await file.write(chunk);
    } catch {
      // ENOSPC: full, as intended.
    } finally {
      file.close();
    }
  }
}

/** The containers of one real device, as podman lists them; undefined while podman is away. */
async function listContainers(slot: AgentSlot): Promise<ContainerSample | undefined> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`${LABELS.device}=${slot.id}`] }));
  try {
    const res = await podmanFetch(
      slot.podman.socket,
      `/v4.0.0/libpod/containers/json?all=true&filters=${filters}`,
      { signal: AbortSignal.timeout(5_000) },
    );
    if (!res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    const list = await res.json() as {
      Id: string;
      State: string;
      Created?: string | number;
      Labels?: Record<string, string>;
    }[];
    return {
      t: Date.now(),
      device: slot.id,
      containers: list.map((c) => ({
        id: c.Id,
        deployment: c.Labels?.[LABELS.deployment] ?? "?",
        service: c.Labels?.[LABELS.service] ?? "?",
        state: c.State,
        ...createdAt(c.Created),
      })),
    };
  } catch {
    return undefined;
  }
}

/** Podman's `Created` (RFC 3339, or seconds since the epoch) as epoch ms. */
function createdAt(created: string | number | undefined): { created?: number } {
  const ms = typeof created === "number" ? created * 1000 : Date.parse(created ?? "");
  return Number.isFinite(ms) ? { created: ms } : {};
}

/** Runs the operator CLI (bounded in time and attempts: a user retries a failed command). */
async function operatorCli(
  urls: string[],
  args: string[],
  attempts = CLI_ATTEMPTS,
): Promise<{ code: number; output: string; stdout: string; attempts: number }> {
  let last = { code: -1, output: "", stdout: "" };
  const failures: string[] = [];
  for (let i = 1; i <= attempts; i++) {
    const r = await runCommand(Deno.execPath(), [...await operatorTaskArgs(), ...args], {
      env: { NATS_URL: urls.join(","), INIT_CWD: REPO_ROOT, NO_COLOR: "1" },
      cwd: REPO_ROOT,
      signal: AbortSignal.timeout(CLI_TIMEOUT_MS),
    }).catch((e) => ({ code: -1, stdout: "", stderr: (e as Error).message }));
    last = {
      code: r.code,
      output: `${r.stdout}${r.stderr}`.trim().slice(0, 2_000),
      stdout: r.stdout,
    };
    const earlier = failures.length > 0 ? `${failures.join("\n")}\n` : "";
    if (r.code === 0 || r.code === 2 || r.code === 3) {
      return { ...last, output: `${earlier}${last.output}`, attempts: i };
    }
    failures.push(`attempt ${i} (exit ${r.code}): ${last.output.slice(0, 500)}`);
    await abortableSleep(2_000);
  }
  return { ...last, output: failures.join("\n"), attempts };
}

/** Load average now, for the report's honesty about noise. */
async function loadAverage(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg").catch(() => "?")).split(" ").slice(0, 3)
    .join(" ");
}

/** The registry labels of real agent `i` (the first is the canary). */
function realLabels(i: number): Record<string, string> {
  return { ...FLEET_LABELS, kind: "real", group: "g1", ...(i === 0 ? { role: "canary" } : {}) };
}

/** Runs one chaos experiment; see the module doc. */
export async function runChaos(options: ChaosOptions, keepDir = false): Promise<ChaosRun> {
  const { progress } = options;
  const signal = options.signal ?? new AbortController().signal;
  await sweepAbandonedDirs("chaos", cleanUpAbandoned);
  const owned = await createOwnedDir("chaos");
  const dir = owned.path;
  await using stack = new AsyncDisposableStack();
  stack.defer(async () => {
    await cleanUpAbandoned(dir).catch(() => {});
    if (!keepDir) await owned.remove();
  });
  const host = await probeHost(dir);
  const without = new Set<FaultKind>(options.without ?? []);
  const notes: string[] = [`load average at start: ${await loadAverage()}`];
  if (host.netns) {
    without.add("partition");
    notes.push(`partition not injected: ${host.netns}`);
  }
  if (host.tmpfs) {
    without.add("disk-full");
    notes.push(`disk-full not injected: ${host.tmpfs}`);
  }
  const kinds = FAULT_KINDS.filter((k) => !without.has(k));
  const windowMs = Math.round(options.minutes * 60_000);
  const planned = planFaults({
    seed: options.seed,
    windowMs,
    warmupMs: WARMUP_MS,
    agents: options.agents,
    natsNodes: NATS_NODES,
    kinds,
    heartbeatSeconds: options.heartbeatSeconds,
  });
  const ops = planWorkload({ seed: options.seed, windowMs });
  progress(
    `chaos seed ${options.seed}: ${options.minutes} min, ${planned.length} faults planned ` +
      `(${kinds.join(", ")}), ${ops.length} workload ops; work dir ${dir}`,
  );

  // NATS.
  const cluster: NatsCluster = await startNatsCluster(NATS_NODES);
  stack.defer(() => cluster[Symbol.asyncDispose]());
  const urls = cluster.urls;
  progress(`NATS cluster up: ${urls.join(" ")}`);

  // Two operators.
  const operators = [
    new OperatorSlot("operator-a", await freePort(), dir, urls),
    new OperatorSlot("operator-b", await freePort(), dir, urls),
  ];
  stack.defer(async () => {
    for (const o of operators) await o.stop().catch(() => {});
  });
  for (const o of operators) {
    if (!(await o.start(120_000))) throw new Error(`${o.name} did not become healthy`);
  }
  progress("two operators up");

  // Real agents.
  const slots: AgentSlot[] = [];
  const relays: Deno.Listener[] = [];
  stack.defer(async () => {
    for (const r of relays) {
      try {
        r.close();
      } catch { /* closed */ }
    }
    for (const s of slots) {
      await runCommand("umount", [s.stateDir]).catch(() => {});
      if (s.netns) await runCommand("ip", ["netns", "del", s.netns]);
    }
  });
  for (let i = 0; i < options.agents; i++) {
    const id = `chaos-agent-${i}`;
    const agentDir = `${dir}/${id}`;
    const stateDir = `${agentDir}/state`;
    await Deno.mkdir(stateDir, { recursive: true });
    if (!host.tmpfs) {
      const mount = await runCommand("mount", [
        "-t",
        "tmpfs",
        "-o",
        `size=${STATE_TMPFS}`,
        "tmpfs",
        stateDir,
      ]);
      if (mount.code !== 0) throw new Error(`cannot mount ${stateDir}: ${mount.stderr.trim()}`);
    }
    const podman = await startPodman();
    stack.defer(() => podman[Symbol.asyncDispose]());
    await buildBusyboxImage(podman, CHAOS_IMAGE);
    let netns: string | undefined;
    let agentUrls = urls;
    if (!host.netns) {
      netns = `drover-chaos-${crypto.randomUUID().slice(0, 8)}-${i}`;
      await Deno.writeTextFile(`${dir}/netns`, `${netns}\n`, { append: true });
      progress(`${id} runs in network namespace ${netns}`);
      await runCommand("ip", ["netns", "add", netns]);
      await runCommand("ip", ["-n", netns, "link", "set", "lo", "up"]);
      // Inside: 127.0.0.1:4222+j → a unix socket here → the node's port outside.
      const pairs: string[] = [];
      agentUrls = cluster.nodes.map((node, j) => {
        const path = `${agentDir}/nats-${j}.sock`;
        const listener = Deno.listen({ transport: "unix", path });
        relays.push(listener);
        serveRelay(listener, () => Deno.connect({ hostname: "127.0.0.1", port: node.port }));
        pairs.push(`${4222 + j}=${path}`);
        return `nats://127.0.0.1:${4222 + j}`;
      });
      const relay = ManagedProcess.spawn({
        command: "ip",
        args: [
          "netns",
          "exec",
          netns,
          Deno.execPath(),
          "run",
          "-A",
          new URL("./relay.ts", import.meta.url).pathname,
          ...pairs,
        ],
        logPath: `${agentDir}/relay.log`,
      });
      stack.defer(async () => void await relay.stop(2_000));
    }
    const configPath = `${agentDir}/agent.toml`;
    await Deno.writeTextFile(
      configPath,
      agentToml({
        deviceId: id,
        natsUrl: agentUrls,
        podmanSocket: podman.socket,
        stateDir,
        heartbeatSeconds: options.heartbeatSeconds,
        labels: { kind: "real" },
      }),
    );
    const labels = realLabels(i);
    const label = await operatorCli(urls, [
      "device",
      "label",
      id,
      ...Object.entries(labels).map(([k, v]) => `${k}=${v}`),
    ]);
    if (label.code !== 0) throw new Error(`device label ${id}: ${label.output}`);
    slots.push(new AgentSlot(id, agentDir, podman, stateDir, configPath, netns));
  }

  // The observer starts before any device or change, so it sees everything.
  const hollowIds = (prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(5, "0")}`);
  const hollowA = Math.ceil(options.devices / 2);
  const hollowB = options.devices - hollowA;
  const devices = [
    ...slots.map((s) => ({ id: s.id, real: true })),
    ...hollowIds("chaos-ha", hollowA).map((id) => ({ id, real: false })),
    ...hollowIds("chaos-hb", hollowB).map((id) => ({ id, real: false })),
  ];
  const observer = new Observer(new Set(slots.map((s) => s.id)));
  await observer.start(urls);
  stack.defer(() => observer.close());
  // Disposed before the podman services (registered after them): no agent is left to
  // recreate a container while its podman is cleaned up.
  stack.defer(async () => {
    for (const s of slots) await s.stop().catch(() => {});
  });
  for (const s of slots) s.start();
  const hollow: { name: string; process: ManagedProcess }[] = [];
  stack.defer(async () => {
    for (const h of hollow) await h.process.stop(15_000);
  });
  const hollowGroups = [
    { prefix: "chaos-ha", n: hollowA, labels: { ...FLEET_LABELS, group: "g1" } },
    { prefix: "chaos-hb", n: hollowB, labels: { ...FLEET_LABELS } },
  ];
  for (const { prefix, n, labels } of hollowGroups.filter((g) => g.n > 0)) {
    const process = ManagedProcess.spawn({
      command: Deno.execPath(),
      args: [
        "run",
        "-A",
        `${REPO_ROOT}/scripts/hollow.ts`,
        "--devices",
        String(n),
        "--prefix",
        prefix,
        "--heartbeat",
        String(options.heartbeatSeconds),
        ...Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
        ...urls.flatMap((u) => ["--nats", u]),
      ],
      cwd: REPO_ROOT,
      logPath: `${dir}/${prefix}.log`,
    });
    await notePid(dir, process);
    hollow.push({ name: prefix, process });
  }
  const allIds = devices.map((d) => d.id);
  const deviceLabels: Record<string, Record<string, string>> = {};
  slots.forEach((s, i) => deviceLabels[s.id] = realLabels(i));
  for (const { prefix, n, labels } of hollowGroups) {
    for (const id of hollowIds(prefix, n)) deviceLabels[id] = labels;
  }

  // Samplers.
  const containers: ContainerSample[] = [];
  const rss: RssSample[] = [];
  const sampling = new AbortController();
  stack.defer(() => sampling.abort());
  const sampleLoop = async (everyMs: number, body: () => Promise<void>) => {
    while (!sampling.signal.aborted) {
      await body().catch(() => {});
      await abortableSleep(everyMs, sampling.signal);
    }
  };
  const samplers = [
    sampleLoop(CONTAINER_SAMPLE_MS, async () => {
      for (const s of slots) {
        const sample = await listContainers(s);
        if (sample) containers.push(sample);
      }
    }),
    sampleLoop(RSS_SAMPLE_MS, async () => {
      const procs = [
        ...operators.filter((o) => o.running).map((o) => ({
          name: `${o.name}#${o.incarnation}`,
          pid: o.process!.pid,
        })),
        ...slots.filter((s) => s.running).map((s) => ({ name: s.name, pid: s.process!.pid })),
        ...hollow.filter((h) => h.process.running).map((h) => ({
          name: `${h.name} (hollow process)`,
          pid: h.process.pid,
        })),
      ];
      for (const p of procs) {
        const sample = await sampleProcess(p.pid);
        if (sample) rss.push({ t: Date.now(), process: p.name, rssMiB: sample.rssMiB });
      }
    }),
  ];
  stack.defer(async () => void await Promise.allSettled(samplers));

  // Initial deployments, and a converged fleet before the first fault.
  const opRecords: OpRecord[] = [];
  const runOp = async (op: PlannedOp) => {
    const deployment = DEPLOYMENTS.find((d) => d.name === op.deployment)!;
    let args: string[];
    if (op.kind === "delete") args = ["delete", op.deployment];
    else if (op.kind === "undo") args = ["rollout", "undo", op.deployment];
    else {
      const file = `${dir}/manifests/${op.seq}-${op.deployment}.json`;
      await Deno.mkdir(`${dir}/manifests`, { recursive: true });
      await Deno.writeTextFile(file, JSON.stringify(manifestFor(deployment, op), null, 2));
      args = ["apply", "-f", file];
    }
    const startedAt = Date.now();
    const r = await operatorCli(urls, args);
    const record: OpRecord = {
      seq: op.seq,
      deployment: op.deployment,
      kind: op.kind,
      ...(op.version !== undefined ? { version: op.version } : {}),
      ...(op.settle ? { settle: true } : {}),
      startedAt,
      endedAt: Date.now(),
      code: r.code,
      attempts: r.attempts,
      output: r.output,
    };
    opRecords.push(record);
    progress(
      `op ${op.seq}: ${op.kind} ${op.deployment}${op.version ? ` v${op.version}` : ""} → ` +
        `exit ${r.code}${r.attempts > 1 ? ` after ${r.attempts} attempts` : ""}`,
    );
  };
  /** What the operators' APIs say is not ready (targeted ≠ ready); [] when all is. */
  const viewProblems = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const o of operators) {
      try {
        const res = await fetch(`${o.api}/api/deployments`, {
          signal: AbortSignal.timeout(5_000),
        });
        const deps = await res.json() as { name: string; targeted: number; ready: number }[];
        for (const d of deps) {
          if (d.ready !== d.targeted) {
            out.push(`${o.name}: ${d.name} ${d.ready}/${d.targeted} ready`);
          }
        }
      } catch (e) {
        out.push(`${o.name}: ${(e as Error).message}`);
      }
    }
    return out;
  };
  /**
   * Waits (bounded) until every manifest's latest revision completed, every device reports
   * it running, and both operators' APIs agree — for 3 s in a row, so a snapshot taken
   * between a write and its echo does not count.
   */
  const untilConverged = async (timeoutMs: number): Promise<string[]> => {
    const deadline = Date.now() + timeoutMs;
    let problems: string[] = ["not looked yet"];
    let since: number | undefined;
    while (Date.now() < deadline && !signal.aborted) {
      problems = [
        ...observer.settleProblems(),
        ...observer.syncProblems(allIds, true),
        ...await viewProblems(),
      ];
      if (problems.length > 0) since = undefined;
      else if (since === undefined) since = Date.now();
      else if (Date.now() - since >= 3_000) return [];
      await abortableSleep(500, signal);
    }
    return problems;
  };
  for (const op of ops.filter((o) => o.atMs === 0)) await runOp(op);
  const setupProblems = await untilConverged(180_000);
  if (setupProblems.length > 0) {
    throw new Error(`the fleet did not converge before the chaos: ${setupProblems.slice(0, 5)}`);
  }
  progress(`fleet of ${allIds.length} devices converged; chaos window starts`);

  // The chaos window: the driver and the nemesis, side by side.
  const windowStart = Date.now();
  const windowEnd = windowStart + windowMs;
  const faults: FaultRecord[] = [];
  const driver = (async () => {
    for (const op of ops.filter((o) => o.atMs > 0 && !o.settle)) {
      const due = windowStart + op.atMs;
      if (due > windowEnd) break;
      await abortableSleep(Math.max(0, due - Date.now()), signal);
      if (Date.now() > windowEnd || signal.aborted) break;
      // A user waits for a staged rollout before changing that deployment again (bounded).
      const waitUntil = Math.min(Date.now() + ROLLOUT_WAIT_MS, windowEnd);
      while (
        observer.rollouts.get(op.deployment)?.state === "progressing" && Date.now() < waitUntil
      ) await abortableSleep(500, signal);
      if (Date.now() > windowEnd || signal.aborted) break;
      await runOp(op);
    }
  })();
  const inject = async (f: PlannedFault): Promise<void> => {
    await abortableSleep(Math.max(0, windowStart + f.atMs - Date.now()), signal);
    if (signal.aborted) return;
    const record: FaultRecord = { id: f.id, kind: f.kind, target: "?", startedAt: Date.now() };
    faults.push(record);
    const heal = async (healAt: number, action: () => Promise<void>) => {
      // Aborted: heal at once.
      await abortableSleep(Math.max(0, healAt - Date.now()), signal);
      await action();
      record.healedAt = Date.now();
    };
    const healAt = record.startedAt + f.durationMs;
    try {
      switch (f.kind) {
        case "nats-kill": {
          const node = cluster.nodes[f.target]!;
          record.target = `n${f.target + 1}`;
          await node.kill();
          await heal(healAt, async () => {
            for (let i = 0; i < 3; i++) {
              try {
                await node.restart();
                return;
              } catch (e) {
                progress(`restart of ${record.target} failed: ${(e as Error).message}`);
              }
            }
          });
          break;
        }
        case "operator-kill": {
          const holder = observer.leaseHolder ?? "";
          const victim = operators.find((o) =>
            o.running && holder.includes(`-${o.process!.pid}-`)
          ) ??
            operators.find((o) => o.running);
          if (victim === undefined) {
            record.skipped = "no operator running";
            break;
          }
          record.target = victim.name;
          await victim.kill();
          await heal(healAt, async () => void await victim.start());
          break;
        }
        default: {
          const slot = slots[f.target]!;
          record.target = slot.id;
          if (!slot.running) {
            record.skipped = "agent not running";
            break;
          }
          if (f.kind === "agent-kill") {
            await slot.kill();
            await heal(healAt, () => Promise.resolve(slot.start()));
          } else if (f.kind === "podman-stop") {
            await slot.podman.stop();
            await heal(healAt, () => slot.podman.start());
          } else if (f.kind === "agent-pause") {
            slot.signal("SIGSTOP");
            slot.paused = true;
            await heal(healAt, () => {
              slot.signal("SIGCONT");
              slot.paused = false;
              return Promise.resolve();
            });
          } else if (f.kind === "partition") {
            await slot.partition(true);
            await heal(healAt, () => slot.partition(false));
          } else if (f.kind === "disk-full") {
            await slot.fill(true);
            await heal(healAt, () => slot.fill(false));
          }
        }
      }
    } catch (e) {
      record.skipped = `failed: ${(e as Error).message}`;
    }
    progress(
      `fault ${f.id}: ${f.kind} ${record.target} ` +
        (record.skipped
          ? `skipped (${record.skipped})`
          : `for ${((record.healedAt ?? Date.now()) - record.startedAt) / 1000} s`),
    );
  };
  await Promise.all([driver, ...planned.map(inject)]);
  // Whatever a failed heal left behind, heal now (the settle point is after this).
  for (const s of slots) {
    if (s.paused) s.signal("SIGCONT");
    s.paused = false;
    await s.partition(false).catch(() => {});
    if (s.filled) await s.fill(false);
    if (!s.running) s.start();
    if (!s.podman.running) await s.podman.start().catch(() => {});
  }
  for (const node of cluster.nodes) if (!node.running) await node.restart().catch(() => {});
  for (const o of operators) if (!o.running) await o.start();
  if (signal.aborted) throw new Error("interrupted");
  progress(`chaos window over (load average ${await loadAverage()}); settling`);

  // Settle and converge.
  for (const op of ops.filter((o) => o.settle)) await runOp(op);
  const boundMs = options.boundSeconds * 1000;
  const left = await untilConverged(boundMs + 30_000);
  if (left.length > 0) progress(`not converged: ${left.slice(0, 5).join("; ")}`);
  else progress("converged");
  const finalContainers: ContainerSample[] = [];
  for (const s of slots) {
    const sample = await listContainers(s);
    if (sample) finalContainers.push(sample);
  }
  const deploymentViews: DeploymentView[] = [];
  const deviceViews: DeviceView[] = [];
  for (const o of operators) {
    try {
      const deps = await (await fetch(`${o.api}/api/deployments`)).json() as {
        name: string;
        targeted: number;
        ready: number;
      }[];
      for (const d of deps) {
        deploymentViews.push({
          source: o.name,
          deployment: d.name,
          targeted: d.targeted,
          ready: d.ready,
        });
      }
      const devs = await (await fetch(`${o.api}/api/devices`)).json() as {
        device_id: string;
        online: boolean;
      }[];
      for (const d of devs) {
        deviceViews.push({ source: o.name, device: d.device_id, online: d.online });
      }
    } catch (e) {
      notes.push(`${o.name}'s API did not answer at the end: ${(e as Error).message}`);
    }
  }
  const historyListings: HistoryListing[] = [];
  for (const d of DEPLOYMENTS) {
    if (!observer.kv.some((r) => r.bucket === "deployments" && r.key === d.name)) continue;
    const r = await operatorCli(urls, ["history", d.name, "-o", "json"], 1);
    if (r.code !== 0) {
      const deleted = observer.kv.filter((x) => x.bucket === "deployments" && x.key === d.name)
        .at(-1)?.op !== "PUT";
      if (!deleted) historyListings.push({ deployment: d.name, revisions: [], error: r.output });
      continue;
    }
    try {
      const rows = JSON.parse(r.stdout) as { revision: number }[];
      historyListings.push({ deployment: d.name, revisions: rows.map((x) => x.revision) });
    } catch {
      historyListings.push({
        deployment: d.name,
        revisions: [],
        error: `not JSON: ${r.output.slice(0, 200)}`,
      });
    }
  }
  sampling.abort();
  await Promise.allSettled(samplers);
  const operatorLog: OperatorLogRecord[] = [];
  for (const o of operators) {
    for (const inc of o.incarnations) {
      operatorLog.push(
        ...parseOperatorLog(await Deno.readTextFile(inc.logPath).catch(() => ""), inc.pid),
      );
    }
  }
  notes.push(`load average at the end: ${await loadAverage()}`);
  notes.push(
    `validated on the wire: ${observer.validated.statuses} statuses, ` +
      `${observer.validated.heartbeats} heartbeats`,
  );
  const history: ChaosHistory = {
    seed: options.seed,
    minutes: options.minutes,
    windowStart,
    windowEnd,
    endedAt: Date.now(),
    devices,
    services: Object.fromEntries(
      DEPLOYMENTS.map((d) => [
        d.name,
        d.name === "steady" ? ["keep"] : ["web", ...d.constantServices],
      ]),
    ),
    selectors: Object.fromEntries(DEPLOYMENTS.map((d) => [d.name, d.selector])),
    deviceLabels,
    constantServices: DEPLOYMENTS.flatMap((d) =>
      d.constantServices.map((service) => ({ deployment: d.name, service }))
    ),
    kv: observer.kv,
    heartbeats: observer.heartbeats,
    ops: opRecords,
    faults: faults.sort((a, b) => a.id - b.id),
    containers,
    finalContainers,
    rss,
    schemaFailures: observer.schemaFailures,
    operatorLog,
    deploymentViews,
    deviceViews,
    historyListings,
    notes,
  };
  const result = check(history, { boundMs });
  await Deno.writeTextFile(`${dir}/history.json`, JSON.stringify(history));
  return { history, result, planned, kinds, dir };
}
