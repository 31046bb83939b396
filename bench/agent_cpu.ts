/**
 * `deno run -A bench/agent_cpu.ts [--devices N] [--changes K] [--label NAME]`:
 * what one desired-state change costs the agent in CPU time — hint, direct
 * get, validation, plan, act (FAKE in-memory runtime), status put — measured
 * on N hollow devices (agent/hollow.ts: the real agent code) in one process
 * taken through K updates by the real operator (`serve` + `apply`).
 *
 * CPU time, not wall time: utime + stime (/proc) of the process's threads but
 * the profiler's over the updates, minus its idle rate over as long (the mean
 * of 5 s before and 5 s after), divided by N × K. It depends less on what else
 * runs than wall time, but the idle rate varies between runs (deferred work
 * such as the runtime calls' 120 s timeouts lands in it): alternate before and
 * after runs, and read the allocations (`--heap-profile`) beside it.
 * The hollow process runs with `--cpu-prof`; the samples that fall in the
 * update window are summed per function (self time) and per area of the code.
 *
 * `--heap-profile` also samples every allocation over the same window through
 * the inspector (`HeapProfiler.startSampling`, garbage included): bytes
 * allocated per change, per function and per area — what the garbage
 * collector's share of the CPU comes from. The inspector slows the process, so
 * such a run's CPU figures are not compared with others.
 *
 * `--v8-flags F` replaces the agent task's V8 flags (to see what one costs).
 * `--agent-root DIR` runs the hollow devices from another checkout (e.g. the
 * commit before a change, `git archive HEAD | tar -x -C DIR`), so a before /
 * after pair can be taken in one sitting, under the same load.
 *
 * Results go to bench/results-agent-cpu.json (one entry per `--label`, the
 * newest wins) and the `agent-cpu` section of bench/RESULTS.md; `--section NAME`
 * keeps a round's runs apart: bench/results-NAME.json and section NAME.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { round } from "./stats.ts";
import {
  cli,
  registerFleet,
  startBenchOperator,
  startServers,
  StatusRecorder,
  until,
  writeManifest,
} from "./fleet.ts";
import { PREFIX } from "./fleet.ts";
import { LoggedProcess, REPO_ROOT, run } from "./process.ts";
import { machineInfo } from "./machine.ts";
import { sectionMarkers, withSection } from "./sections.ts";
import { freePort } from "../tests/support/ports.ts";

const SECTION = "agent-cpu";

/** The parts of a V8 `.cpuprofile` used here. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  /** Microseconds, V8's monotonic clock. */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Self time of one function or area. */
export interface SelfTime {
  name: string;
  /**
   * Sampled ms (in {@linkcode selfTimes}), or CPU µs per change (in a result:
   * the measured CPU per change split by the profile's shares). A sample counts
   * the wall time since the previous one, so under load its ms are not CPU ms;
   * the shares are what the profile tells.
   */
  ms: number;
  /** Share of all non-idle samples in the window, %. */
  percent: number;
}

/** Where a frame's code lives, in words a reader of this repo knows. Pure. */
export function areaOf(url: string, functionName: string): string {
  if (url === "") {
    if (functionName === "(garbage collector)") return "garbage collector";
    if (functionName === "(program)") return "runtime (native, not JS)";
    return `V8 builtin / native`;
  }
  const npm = /\/npm\/registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (npm) return `npm:${npm[1]}`;
  const repo = /\/(contracts|common|agent|operator)\/(.+)$/.exec(url);
  if (repo) {
    const dir = repo[2]!.includes("/") ? repo[2]!.slice(0, repo[2]!.lastIndexOf("/")) : "";
    return `${repo[1]}/${dir === "" ? repo[2] : `${dir}/`}`;
  }
  if (url.startsWith("ext:") || url.startsWith("node:")) {
    return url.split("/")[0] + " (deno runtime)";
  }
  return url;
}

/**
 * Self time per function and per area over the samples taken between
 * `fromUs` and `toUs` (the profile's clock). Pure.
 */
export function selfTimes(
  profile: CpuProfile,
  fromUs: number,
  toUs: number,
): { total: number; idle: number; functions: SelfTime[]; areas: SelfTime[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const fn = new Map<string, number>();
  const area = new Map<string, number>();
  let t = profile.startTime;
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (t < fromUs || t > toUs) continue;
    const frame = byId.get(profile.samples[i]!);
    if (frame === undefined) continue;
    // A sample stands for the time since the previous one.
    const ms = dt / 1000;
    if (frame.functionName === "(idle)") {
      idle += ms;
      continue;
    }
    total += ms;
    const where = frame.url === ""
      ? ""
      : ` ${frame.url.replace(/^.*\/(?=[^/]+\/[^/]+$)/, "")}:${frame.lineNumber + 1}`;
    const key = `${frame.functionName || "(anonymous)"}${where}`;
    fn.set(key, (fn.get(key) ?? 0) + ms);
    const a = areaOf(frame.url, frame.functionName);
    area.set(a, (area.get(a) ?? 0) + ms);
  }
  const list = (m: Map<string, number>) =>
    [...m].map(([name, ms]) => ({ name, ms: round(ms), percent: round((ms / total) * 100) }))
      .sort((a, b) => b.ms - a.ms);
  return { total: round(total), idle: round(idle), functions: list(fn), areas: list(area) };
}

/** The parts of a V8 sampling heap profile (`HeapProfiler.stopSampling`) used here. */
export interface HeapProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  /** Bytes sampled in this frame itself. */
  selfSize: number;
  children: HeapProfileNode[];
}

/**
 * Bytes allocated per function and per area, over the whole sampled window. A
 * V8 builtin or native frame (an iterator's `next`, `new Map`, …) counts for
 * the nearest JavaScript frame that called it: that is the code to change.
 * Pure.
 */
export function allocations(
  head: HeapProfileNode,
): { total: number; functions: SelfTime[]; areas: SelfTime[] } {
  const fn = new Map<string, number>();
  const area = new Map<string, number>();
  let total = 0;
  const visit = (node: HeapProfileNode, caller: { name: string; area: string }) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const native = url === "" || url.startsWith("ext:") || url.startsWith("node:");
    const where = url === ""
      ? ""
      : ` ${url.replace(/^.*\/(?=[^/]+\/[^/]+$)/, "")}:${lineNumber + 1}`;
    const own = `${functionName || "(anonymous)"}${where}`;
    const self = native && caller.name !== ""
      ? caller
      : { name: own, area: areaOf(url, functionName) };
    if (node.selfSize > 0) {
      total += node.selfSize;
      const key = native && caller.name !== "" ? `${own} ← ${caller.name}` : own;
      fn.set(key, (fn.get(key) ?? 0) + node.selfSize);
      area.set(self.area, (area.get(self.area) ?? 0) + node.selfSize);
    }
    for (const child of node.children) visit(child, self);
  };
  visit(head, { name: "", area: "" });
  const list = (m: Map<string, number>) =>
    [...m].map(([name, bytes]) => ({ name, ms: bytes, percent: round((bytes / total) * 100) }))
      .sort((a, b) => b.ms - a.ms);
  return { total, functions: list(fn), areas: list(area) };
}

/** A minimal Chrome DevTools protocol client over the inspector's WebSocket. */
class Inspector {
  readonly #ws: WebSocket;
  #next = 1;
  readonly #waiting = new Map<number, (reply: { result?: unknown; error?: unknown }) => void>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const reply = JSON.parse(String(e.data)) as {
        id?: number;
        result?: unknown;
        error?: unknown;
      };
      if (reply.id !== undefined) this.#waiting.get(reply.id)?.(reply);
    };
  }

  /** Connects to the first target of the inspector on `port`. */
  static async open(port: number): Promise<Inspector> {
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as {
      webSocketDebuggerUrl: string;
    }[];
    const url = targets[0]?.webSocketDebuggerUrl;
    if (url === undefined) throw new Error(`no inspector target on port ${port}`);
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    return new Inspector(ws);
  }

  async send<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.#next++;
    const reply = await new Promise<{ result?: unknown; error?: unknown }>((resolve) => {
      this.#waiting.set(id, resolve);
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
    this.#waiting.delete(id);
    if (reply.error !== undefined) {
      throw new Error(`${method} failed: ${JSON.stringify(reply.error)}`);
    }
    return reply.result as T;
  }

  close(): void {
    this.#ws.close();
  }
}

/** One measured run. */
export interface AgentCpuResult {
  label: string;
  date: string;
  devices: number;
  changes: number;
  /** Load average (1 min) at the start and at the end of the update window. */
  load: [number, number];
  /** Update window, wall seconds. */
  windowSeconds: number;
  /** Hollow process CPU over the window, ms (utime + stime of its threads but the profiler's). */
  cpuMs: number;
  /** Its idle CPU rate, ms per second: the mean of 5 s before and 5 s after the window. */
  idleMsPerSecond: number;
  /** The two idle rates, before and after (absent in older entries). */
  idleRates?: [number, number];
  /** (cpuMs − idle rate × window) / (devices × changes). */
  cpuMsPerChange: number;
  /** Full status puts stored per change (absent in older entries). */
  statusPutsPerChange?: number;
  /** From the profile: busy samples in the window per change, sampled (wall) ms. */
  profiledMsPerChange: number;
  /** Checkout the hollow devices ran from. */
  agentRoot: string;
  /** V8 flags of the hollow process. */
  v8Flags: string;
  functions: SelfTime[];
  areas: SelfTime[];
  /** With `--heap-profile`: bytes allocated per change, in all and per area / function. */
  allocated?: { bytesPerChange: number; areas: SelfTime[]; functions: SelfTime[] };
}

/** `x` to two decimals (per-change figures are around a millisecond). */
function hundredths(x: number): number {
  return Math.round(x * 100) / 100;
}

/** The V8 flags of the `agent` task in deno.json (what the bundle and executable run with). */
export function agentV8Flags(): string {
  const config = JSON.parse(Deno.readTextFileSync(`${REPO_ROOT}/deno.json`)) as {
    tasks: Record<string, string>;
  };
  const flags = /--v8-flags=(\S+)/.exec(config.tasks.agent ?? "")?.[1];
  if (flags === undefined) throw new Error("deno.json's agent task has no --v8-flags");
  return flags;
}

async function loadAverage(): Promise<number> {
  return Number((await Deno.readTextFile("/proc/loadavg")).split(" ")[0]);
}

/** CLOCK_MONOTONIC now, µs (V8's profile clock on Linux), from /proc/uptime's 10 ms ticks. */
async function monotonicUs(): Promise<number> {
  return Number((await Deno.readTextFile("/proc/uptime")).split(" ")[0]) * 1e6;
}

/** The thread of V8's CPU profiler (`--cpu-prof`): its work is the measurement's, not the agents'. */
const PROFILER_THREAD = "v8:ProfEvntProc";
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

/**
 * CPU time (utime + stime) of `pid`'s threads but the profiler's, ms; `at` in
 * performance.now() ms. The profiler's thread costs about 25 ms/s whatever the
 * agents do, and made a third of the idle rate subtracted from the window.
 */
async function agentsCpu(pid: number): Promise<{ at: number; cpuMs: number }> {
  const at = performance.now();
  let ticks = 0;
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    try {
      const comm = (await Deno.readTextFile(`/proc/${pid}/task/${task.name}/comm`)).trim();
      if (comm === PROFILER_THREAD) continue;
      const stat = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/stat`);
      // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // A thread that ended between the listing and the read.
    }
  }
  return { at, cpuMs: (ticks * 1000) / CLOCK_TICKS_PER_SECOND };
}

/** Runs the measurement. */
export async function runAgentCpuBench(
  options: {
    devices: number;
    changes: number;
    label: string;
    agentRoot: string;
    v8Flags: string;
    heapProfile?: boolean;
    progress: (s: string) => void;
  },
): Promise<AgentCpuResult> {
  const { devices: n, changes, progress } = options;
  const dir = await Deno.makeTempDir({ prefix: "drover-agent-cpu-" });
  const profDir = `${dir}/prof`;
  await using servers = await startServers({
    n,
    processes: 1,
    steadySeconds: 0,
    heartbeatSeconds: 3600,
    phaseTimeoutMs: 300_000,
    workDir: dir,
    progress,
  });
  await using operator = await startBenchOperator(dir, servers.urls.join(","));
  await registerFleet(servers.urls, n);
  const recorder = new StatusRecorder();
  await recorder.start(servers.urls);
  const inspectPort = options.heapProfile ? await freePort() : undefined;
  // Heartbeats and full refreshes an hour apart: the window holds changes, not timers.
  await using agents = await LoggedProcess.spawn(
    Deno.execPath(),
    [
      "run",
      "-A",
      // What a device runs with (the agent task's V8 flags): no optimising compiler.
      `--v8-flags=${options.v8Flags}`,
      `--cpu-prof`,
      `--cpu-prof-dir=${profDir}`,
      ...(inspectPort !== undefined ? [`--inspect=127.0.0.1:${inspectPort}`] : []),
      `${options.agentRoot}/scripts/hollow.ts`,
      "--worker",
      "--prefix",
      PREFIX,
      "--devices",
      String(n),
      "--heartbeat",
      "3600",
      "--status-refresh",
      "3600",
      "--label",
      "fleet=bench",
      ...servers.urls.flatMap((u) => ["--nats", u]),
    ],
    `${dir}/agents.log`,
  );
  const running = (revisionAbove: number) => {
    const latest = new Map<string, number>();
    for (const r of recorder.records) {
      if (r.event === "running" && r.revision !== undefined) latest.set(r.device, r.revision);
    }
    return [...latest.values()].filter((rev) => rev > revisionAbove).length;
  };
  const revisionNow = () => {
    let max = 0;
    for (const r of recorder.records) max = Math.max(max, r.revision ?? 0);
    return max;
  };
  try {
    // All connected first: a change is measured, not a connect.
    await until(
      async () => (await Promise.resolve(recorder.lastStored.size)) >= n,
      300_000,
      "every device reports",
    );
    const manifest = `${dir}/manifest.json`;
    await writeManifest(manifest, 0);
    progress(`agent-cpu: ${n} hollow devices, deploying`);
    await cli(["apply", "-f", manifest], operator.env);
    await until(async () => (await Promise.resolve(running(0))) >= n, 300_000, "deploy");
    // Idle rate: as long as the agents sit still.
    // Most of it is outside JavaScript (the profile hardly sees it), and it varies: it is
    // sampled before and after the window, and the mean subtracted.
    const idleRate = async () => {
      const i0 = await agentsCpu(agents.pid);
      await new Promise((r) => setTimeout(r, 5_000));
      const i1 = await agentsCpu(agents.pid);
      return (i1.cpuMs - i0.cpuMs) / ((i1.at - i0.at) / 1000);
    };
    const idleBefore = await idleRate();
    const inspector = inspectPort !== undefined ? await Inspector.open(inspectPort) : undefined;
    if (inspector !== undefined) {
      await inspector.send("HeapProfiler.enable");
      await inspector.send("HeapProfiler.startSampling", {
        samplingInterval: 16_384,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
    }
    const load0 = await loadAverage();
    const from = await monotonicUs();
    const c0 = await agentsCpu(agents.pid);
    const puts0 = recorder.puts;
    for (let k = 1; k <= changes; k++) {
      const before = revisionNow();
      await writeManifest(manifest, k);
      await cli(["apply", "-f", manifest], operator.env);
      await until(
        async () => (await Promise.resolve(running(before))) >= n,
        300_000,
        `update ${k}`,
      );
      progress(`agent-cpu: update ${k}/${changes} converged`);
    }
    const c1 = await agentsCpu(agents.pid);
    const puts = recorder.puts - puts0;
    const to = await monotonicUs();
    const load1 = await loadAverage();
    const windowSeconds = (c1.at - c0.at) / 1000;
    const cpuMs = c1.cpuMs - c0.cpuMs;
    let heap: ReturnType<typeof allocations> | undefined;
    if (inspector !== undefined) {
      const { profile } = await inspector.send<{ profile: { head: HeapProfileNode } }>(
        "HeapProfiler.stopSampling",
      );
      inspector.close();
      await Deno.writeTextFile(`${dir}/window.heapprofile`, JSON.stringify(profile));
      heap = allocations(profile.head);
    }
    const idleAfter = await idleRate();
    const idleMsPerSecond = (idleBefore + idleAfter) / 2;
    await agents.stop(60_000);
    const files = [...Deno.readDirSync(profDir)].filter((f) => f.name.endsWith(".cpuprofile"));
    if (files.length !== 1) {
      throw new Error(`expected one profile in ${profDir}, got ${files.length}`);
    }
    const profile = JSON.parse(
      await Deno.readTextFile(`${profDir}/${files[0]!.name}`),
    ) as CpuProfile;
    const times = selfTimes(profile, from, to);
    const perChange = n * changes;
    const cpuMsPerChange = (cpuMs - idleMsPerSecond * windowSeconds) / perChange;
    const cpuUs = (s: SelfTime) => ({ ...s, ms: round(s.percent * cpuMsPerChange * 10) });
    return {
      label: options.label,
      date: new Date().toISOString(),
      devices: n,
      changes,
      load: [load0, load1],
      windowSeconds: round(windowSeconds),
      cpuMs: round(cpuMs),
      idleMsPerSecond: round(idleMsPerSecond),
      idleRates: [round(idleBefore), round(idleAfter)],
      cpuMsPerChange: hundredths(cpuMsPerChange),
      statusPutsPerChange: hundredths(puts / perChange),
      profiledMsPerChange: round(times.total / perChange),
      agentRoot: options.agentRoot,
      v8Flags: options.v8Flags,
      functions: times.functions.slice(0, 25).map(cpuUs),
      areas: times.areas.slice(0, 15).map(cpuUs),
      ...(heap !== undefined
        ? {
          allocated: {
            bytesPerChange: Math.round(heap.total / perChange),
            areas: heap.areas.slice(0, 15).map((a) => ({ ...a, ms: Math.round(a.ms / perChange) })),
            functions: heap.functions.slice(0, 25)
              .map((f) => ({ ...f, ms: Math.round(f.ms / perChange) })),
          },
        }
        : {}),
    };
  } finally {
    await recorder.close();
    progress(`agent-cpu: logs and profile in ${dir}`);
  }
}

/** The RESULTS.md section for the stored runs. Pure. */
export function renderSection(
  entries: AgentCpuResult[],
  machine: string,
  section = SECTION,
): string {
  const { start, end } = sectionMarkers(section);
  const lines = [
    start,
    `## Agent CPU per desired-state change (bench/agent_cpu.ts${
      section === SECTION ? "" : ` --section ${section}`
    })`,
    "",
    `N hollow devices (real agent code, FAKE in-memory runtime) in one process (the agent task's V8 flags), K updates of one ` +
    "deployment through the real operator. CPU-ms per change = hollow process utime+stime over " +
    "the updates, minus its idle rate, / (N × K). CPU time depends less on the machine's load " +
    "than wall time, but not little: the idle rate subtracted varies between runs, and at load " +
    "averages of 2–18 on 2 cores one configuration gave figures ±40 % apart (round 4); compare " +
    "alternating runs and the load average beside each. Per-area and per-function figures " +
    "split that CPU time by the share of `--cpu-prof` samples (self time) in the same window: " +
    "µs of CPU per change. Samples count wall time, so on a loaded machine only their shares " +
    "are meaningful.",
    "",
    machine,
    "",
    "| run | date | N × K | load avg | CPU-ms / change | status puts / change | idle ms/s |",
    "| --- | ---- | ----- | -------- | --------------- | -------------------- | --------- |",
    ...entries.map((e) =>
      `| ${e.label} | ${e.date.slice(0, 16)} | ${e.devices} × ${e.changes} | ${e.load[0]}–${
        e.load[1]
      } | ${e.cpuMsPerChange} | ${e.statusPutsPerChange ?? "–"} | ${e.idleMsPerSecond} |`
    ),
  ];
  // The newest three profiles: the table above keeps every run's total.
  for (const e of entries.slice(-3)) {
    lines.push(
      "",
      `### ${e.label}: self time per change, by area`,
      "",
      "| area | µs | % |",
      "| ---- | -- | - |",
      ...e.areas.map((a) => `| ${a.name} | ${a.ms} | ${a.percent} |`),
      "",
      `### ${e.label}: top functions (self time per change)`,
      "",
      "| function | µs | % |",
      "| -------- | -- | - |",
      ...e.functions.slice(0, 15).map((f) =>
        `| \`${f.name.replaceAll("|", "\\|")}\` | ${f.ms} | ${f.percent} |`
      ),
    );
    if (e.allocated !== undefined) {
      lines.push(
        "",
        `### ${e.label}: bytes allocated per change (${e.allocated.bytesPerChange} in all), by area`,
        "",
        "| area | bytes | % |",
        "| ---- | ----- | - |",
        ...e.allocated.areas.map((a) => `| ${a.name} | ${a.ms} | ${a.percent} |`),
        "",
        `### ${e.label}: top allocating functions (bytes per change)`,
        "",
        "| function | bytes | % |",
        "| -------- | ----- | - |",
        ...e.allocated.functions.slice(0, 15).map((f) =>
          `| \`${f.name.replaceAll("|", "\\|")}\` | ${f.ms} | ${f.percent} |`
        ),
      );
    }
  }
  lines.push(end);
  return lines.join("\n") + "\n";
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      devices: { type: "string", default: "200" },
      changes: { type: "string", default: "10" },
      label: { type: "string", default: "current" },
      "agent-root": { type: "string", default: REPO_ROOT },
      "v8-flags": { type: "string" },
      "heap-profile": { type: "boolean", default: false },
      section: { type: "string", default: SECTION },
    },
  });
  const result = await runAgentCpuBench({
    devices: Number(values.devices),
    changes: Number(values.changes),
    label: values.label!,
    agentRoot: values["agent-root"]!,
    v8Flags: values["v8-flags"] ?? agentV8Flags(),
    heapProfile: values["heap-profile"],
    progress: (s) => console.error(s),
  });
  console.error(
    `agent-cpu ${result.label}: ${result.cpuMsPerChange} CPU-ms per change ` +
      `(profiled ${result.profiledMsPerChange}), load ${result.load.join("–")}`,
  );
  const section = values.section!;
  const RESULTS = `${REPO_ROOT}/bench/results-${section}.json`;
  const stored = JSON.parse(await Deno.readTextFile(RESULTS).catch(() => "[]")) as AgentCpuResult[];
  const entries = [...stored.filter((e) => e.label !== result.label), result];
  await Deno.writeTextFile(RESULTS, JSON.stringify(entries, null, 2) + "\n");
  const m = await machineInfo();
  const machine =
    `Machine: ${m.cpuModel}, ${m.nproc} cores shared with other sessions; deno ${m.versions.deno}, ${m.versions.natsServer}.`;
  const path = `${REPO_ROOT}/bench/RESULTS.md`;
  await Deno.writeTextFile(
    path,
    withSection(await Deno.readTextFile(path), section, renderSection(entries, machine, section)),
  );
  await run(Deno.execPath(), ["fmt", "bench/RESULTS.md", RESULTS]);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
