/**
 * `deno run -A bench/agent_flags.ts [--iterations N] [--idle S] [--flags F]… [--label L]`:
 * the V8-flag matrix of the agent as one device runs it — for each flag set,
 * the device benchmark (bench/device.ts: one real agent, real podman, real
 * NATS) with `BENCH_AGENT_V8_FLAGS` set to it, giving
 *
 * - CPU-ms per change: the agent process's CPU time over the measured
 *   deploy / update / delete iterations, divided by the changes;
 * - idle RSS with 10 deployments (start, end, max of the idle window).
 *
 * `BENCH_AGENT=bundle` runs `dist/drover-agent.bundle.js` (`deno task bundle`)
 * as devices do; otherwise the agent runs from source. The hollow-fleet CPU per
 * change of the same flag sets comes from `bench/agent_cpu.ts --v8-flags`.
 *
 * Results go to bench/results-agent-flags.json (one entry per label + agent +
 * flags, the newest wins) and the `agent-flags` section of bench/RESULTS.md.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runDeviceBench } from "./device.ts";
import { REPO_ROOT, run } from "./process.ts";
import { machineInfo } from "./machine.ts";
import { sectionMarkers, withSection } from "./sections.ts";

const SECTION = "agent-flags";
const RESULTS = `${REPO_ROOT}/bench/results-agent-flags.json`;

/** One flag set measured on one real device. */
export interface AgentFlagsResult {
  label: string;
  date: string;
  /** `bundle` or `source`. */
  agent: string;
  v8Flags: string;
  /** Load average (1 min) before and after. */
  load: [number, number];
  iterations: number;
  cpuMsPerChange: number;
  /** Deploy / update p50 against podman's floor. */
  ratioP50: { deploy: number; update: number };
  idleRssMiB: { start: number; end: number; max: number };
  idleCpuPercent: number;
  startToReadyMs: number;
}

async function loadAverage(): Promise<number> {
  return Number((await Deno.readTextFile("/proc/loadavg")).split(" ")[0]);
}

/** Measures one flag set. */
export async function measureFlags(
  flags: string,
  options: { iterations: number; idleSeconds: number; label: string },
): Promise<AgentFlagsResult> {
  const workDir = await Deno.makeTempDir({ prefix: "drover-agent-flags-" });
  Deno.env.set("BENCH_AGENT_V8_FLAGS", flags);
  const load0 = await loadAverage();
  const result = await runDeviceBench({
    iterations: options.iterations,
    idleSeconds: options.idleSeconds,
    footprintDeployments: 10,
    workDir,
    progress: (s) => console.error(`[${flags}] ${s}`),
  });
  const load1 = await loadAverage();
  const ratio = (op: string) => result.latency.find((r) => r.operation === op)?.ratioP50 ?? NaN;
  return {
    label: options.label,
    date: new Date().toISOString(),
    agent: Deno.env.get("BENCH_AGENT") === "bundle" ? "bundle" : "source",
    v8Flags: flags,
    load: [load0, load1],
    iterations: options.iterations,
    cpuMsPerChange: result.agentCpuMsPerChange,
    ratioP50: { deploy: ratio("deploy"), update: ratio("update") },
    idleRssMiB: result.footprint.rssMiB,
    idleCpuPercent: result.footprint.idleCpuPercent,
    startToReadyMs: result.footprint.startToReadyMs,
  };
}

/** The RESULTS.md section for the stored runs. Pure. */
export function renderSection(entries: AgentFlagsResult[], machine: string): string {
  const { start, end } = sectionMarkers(SECTION);
  return [
    start,
    "## Agent V8 flags: CPU per change and idle RSS on one real device (bench/agent_flags.ts)",
    "",
    "One real agent, real podman, real NATS (bench/device.ts) per flag set. CPU-ms per change: " +
    "the agent process's utime+stime over the measured deploy / update / delete iterations " +
    "(real podman REST calls, status puts, and its idle work meanwhile) / the changes. Idle " +
    "RSS: a fresh agent with 10 running deployments, sampled every second while idle.",
    "",
    machine,
    "",
    "| run | agent | V8 flags | date | load avg | CPU-ms / change | idle RSS MiB (start / end / max) | deploy / update p50 ratio | start → ready ms |",
    "| --- | ----- | -------- | ---- | -------- | --------------- | -------------------------------- | ------------------------- | ---------------- |",
    ...entries.map((e) =>
      `| ${e.label} | ${e.agent} | \`${e.v8Flags}\` | ${e.date.slice(0, 16)} | ${e.load[0]}–${
        e.load[1]
      } | ${e.cpuMsPerChange} | ${e.idleRssMiB.start} / ${e.idleRssMiB.end} / ${e.idleRssMiB.max} | ${e.ratioP50.deploy} / ${e.ratioP50.update} | ${e.startToReadyMs} |`
    ),
    end,
  ].join("\n") + "\n";
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      iterations: { type: "string", default: "8" },
      idle: { type: "string", default: "20" },
      flags: { type: "string", multiple: true },
      label: { type: "string", default: "current" },
    },
  });
  const flagSets = values.flags ?? ["--max-semi-space-size=1,--lite-mode"];
  for (const flags of flagSets) {
    const result = await measureFlags(flags, {
      iterations: Number(values.iterations),
      idleSeconds: Number(values.idle),
      label: values.label!,
    });
    console.error(
      `agent-flags ${result.agent} ${flags}: ${result.cpuMsPerChange} CPU-ms per change, idle RSS ${result.idleRssMiB.end} MiB, load ${
        result.load.join("–")
      }`,
    );
    const stored = JSON.parse(
      await Deno.readTextFile(RESULTS).catch(() => "[]"),
    ) as AgentFlagsResult[];
    const same = (e: AgentFlagsResult) =>
      e.label === result.label && e.agent === result.agent && e.v8Flags === result.v8Flags;
    const entries = [...stored.filter((e) => !same(e)), result];
    await Deno.writeTextFile(RESULTS, JSON.stringify(entries, null, 2) + "\n");
    const m = await machineInfo();
    const machine =
      `Machine: ${m.cpuModel}, ${m.nproc} cores shared with other sessions; deno ${m.versions.deno}.`;
    const path = `${REPO_ROOT}/bench/RESULTS.md`;
    await Deno.writeTextFile(
      path,
      withSection(await Deno.readTextFile(path), SECTION, renderSection(entries, machine)),
    );
    await run(Deno.execPath(), ["fmt", "bench/RESULTS.md", RESULTS]);
  }
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
