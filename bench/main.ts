/**
 * `deno task bench [--quick] [--only device|fleet] [--fleet-sizes 100,1000,5000]`
 *
 * Runs Drover's benchmarks and writes `bench/RESULTS.md` and
 * `bench/results.json`:
 * 1. reconcile latency of one real agent against podman's own floor,
 * 2. fleet fan-out through the real operator to N agents (fake runtime),
 * 3. the agent's footprint (idle CPU/RSS, start to first status, artifact
 *    sizes; aarch64 under qemu when the bundle and arm64 Deno exist).
 *
 * Benchmarks report numbers; nothing here asserts a target. `--quick` keeps
 * the whole run under about two minutes.
 *
 * @module
 */

import { parseArgs as parseCommandLine } from "node:util";
import { machineInfo } from "./machine.ts";
import { type DeviceBenchResult, runDeviceBench } from "./device.ts";
import { type FleetResult, runFleetBench } from "./fleet.ts";
import { artifactSizes, DIST } from "./artifacts.ts";
import { type BenchResults, renderMarkdown } from "./report.ts";
import { REPO_ROOT, run } from "./process.ts";
import { round } from "./stats.ts";
import { type ProbeCase, runKvProbe } from "./kv_probe.ts";
import { sectionOf, withSection } from "./dashboard.ts";
import { sectionOf as scaleSectionOf, withSection as withScaleSection } from "./scale.ts";
import { sectionNames, sectionOf as keptSection } from "./sections.ts";
import { exists } from "../tests/support/files.ts";
import { NOTHING_FETCHED_FLAGS } from "../scripts/bundle.ts";

/** What a run does, by mode. */
export interface BenchPlan {
  mode: "quick" | "full";
  iterations: number;
  idleSeconds: number;
  fleetSizes: number[];
  steadySeconds: number;
  /** Consumer counts of the desired-state put-cost probe. */
  probeConsumers: (number | ProbeCase)[];
  only?: "device" | "fleet";
}

/** Parses the command line. Pure. */
export function parseArgs(args: string[]): BenchPlan {
  const { values } = parseCommandLine({
    args,
    options: {
      quick: { type: "boolean" },
      only: { type: "string" },
      "fleet-sizes": { type: "string" },
      iterations: { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  const quick = values.quick === true;
  const plan: BenchPlan = quick
    ? {
      mode: "quick",
      iterations: 8,
      idleSeconds: 15,
      fleetSizes: [100],
      steadySeconds: 10,
      probeConsumers: [0, 1000, { consumers: 1000, target: "unwatched" }],
    }
    : {
      mode: "full",
      iterations: 30,
      idleSeconds: 60,
      fleetSizes: [100, 1000, 5000],
      steadySeconds: 20,
      probeConsumers: [
        0,
        1000,
        5000,
        { consumers: 5000, target: "unwatched" },
        { consumers: 1000, extraKeys: 4000 },
      ],
    };
  const only = values.only;
  if (only !== undefined) {
    if (only !== "device" && only !== "fleet") {
      throw new Error(`--only takes device or fleet, not ${only}`);
    }
    plan.only = only;
  }
  if (values["fleet-sizes"] !== undefined) {
    plan.fleetSizes = values["fleet-sizes"].split(",").map(Number);
    if (plan.fleetSizes.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new Error(
        `--fleet-sizes takes whole numbers separated by commas, not ${values["fleet-sizes"]}`,
      );
    }
  }
  if (values.iterations !== undefined) plan.iterations = Number(values.iterations);
  return plan;
}

/** Agent processes for N fleet agents on this machine (one per core, one for small fleets). */
export function fleetProcesses(n: number, cores: number): number {
  return n <= 200 ? 1 : Math.max(1, Math.min(cores, Math.ceil(n / 1000)));
}

/** How to run the aarch64 bundle under qemu, or why it cannot be. */
async function aarch64Command(): Promise<string[] | string> {
  const qemu = "/usr/bin/qemu-aarch64-static";
  if (!(await exists(qemu))) return "qemu-aarch64-static is not installed";
  for (const path of [DIST.bundle, DIST.arm64Deno]) {
    if (!(await exists(`${REPO_ROOT}/${path}`))) return `${path} does not exist (deno task bundle)`;
  }
  // The launcher's run flags (scripts/bundle.ts): nothing fetched at run time.
  return [
    qemu,
    `${REPO_ROOT}/${DIST.arm64Deno}`,
    "run",
    ...NOTHING_FETCHED_FLAGS,
    "--unstable-net",
    "-A",
    `${REPO_ROOT}/${DIST.bundle}`,
  ];
}

async function main(args: string[]): Promise<number> {
  const plan = parseArgs(args);
  const started = performance.now();
  const progress = (line: string) =>
    console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  const workDir = await Deno.makeTempDir({ prefix: "drover-bench-" });
  progress(`bench (${plan.mode}), work dir ${workDir}`);
  const machine = await machineInfo();
  const notes: string[] = [];
  const results: BenchResults = {
    mode: plan.mode,
    machine,
    durationSeconds: 0,
    fleet: [],
    fleetErrors: [],
    notes,
  };

  if (plan.only !== "fleet") {
    const artifacts = await artifactSizes(REPO_ROOT, progress);
    results.artifacts = artifacts;
    notes.push(...artifacts.notes);
    const aarch64 = await aarch64Command();
    let device: DeviceBenchResult | undefined;
    try {
      device = await runDeviceBench({
        iterations: plan.iterations,
        idleSeconds: plan.idleSeconds,
        footprintDeployments: 10,
        aarch64IdleSeconds: plan.mode === "quick" ? 5 : 30,
        workDir,
        progress,
        ...(typeof aarch64 !== "string" ? { aarch64 } : {}),
      });
      results.device = device;
      for (const row of device.latency) {
        progress(
          `latency ${row.operation}: floor p50 ${row.floor.p50} ms, Drover p50 ${row.drover.p50} ms, ` +
            `ratio ${row.ratioP50} (p95 ratio ${row.ratioP95})`,
        );
      }
    } catch (e) {
      results.deviceError = (e as Error).stack ?? String(e);
      progress(`device benchmark failed: ${(e as Error).message}`);
    }
    if (typeof aarch64 === "string") {
      results.aarch64 = { summary: `skipped: ${aarch64}` };
    } else if (device?.aarch64) {
      const a = device.aarch64;
      results.aarch64 = {
        summary:
          `start → first status ${a.startToFirstStatusMs} ms, start → all ${a.deployments} ` +
          `running ${a.startToReadyMs} ms, idle CPU ${a.idleCpuPercent} % (of one host core, ` +
          `emulation included), RSS ${a.rssMiB.max} MiB (qemu process)`,
        startToFirstStatusMs: a.startToFirstStatusMs,
        startToReadyMs: a.startToReadyMs,
        idleCpuPercent: a.idleCpuPercent,
        rssMiB: a.rssMiB.max,
      };
    } else if (device?.aarch64Error) {
      results.aarch64 = { summary: `failed: ${device.aarch64Error}` };
    }
  }

  if (plan.only !== "device") {
    for (const n of plan.fleetSizes) {
      let r: FleetResult | undefined;
      try {
        r = await runFleetBench({
          n,
          processes: fleetProcesses(n, machine.nproc),
          steadySeconds: plan.steadySeconds,
          heartbeatSeconds: 10,
          phaseTimeoutMs: Math.max(60_000, n * 40),
          workDir,
          progress,
        });
        results.fleet.push(r);
        if (r.error) results.fleetErrors.push(`N=${n}: ${r.error}`);
      } catch (e) {
        results.fleetErrors.push(`N=${n}: ${(e as Error).message}`);
        progress(`fleet N=${n} failed: ${(e as Error).message}`);
      }
    }
  }

  if (plan.only !== "device") {
    try {
      results.kvProbe = await runKvProbe(plan.probeConsumers, 3000, progress);
    } catch (e) {
      results.fleetErrors.push(`desired-state put probe: ${(e as Error).message}`);
    }
  }

  results.durationSeconds = round((performance.now() - started) / 1000);
  await Deno.writeTextFile(
    `${REPO_ROOT}/bench/results.json`,
    JSON.stringify(results, null, 2) + "\n",
  );
  // The dashboard's figures come from bench/dashboard.ts, the fleet-scale ones from
  // bench/scale.ts: keep their sections.
  const previous = await Deno.readTextFile(`${REPO_ROOT}/bench/RESULTS.md`).catch(() => "");
  const dashboard = sectionOf(previous);
  let markdown = dashboard === ""
    ? renderMarkdown(results)
    : withSection(renderMarkdown(results), dashboard);
  const scale = scaleSectionOf(previous);
  if (scale !== "") markdown = withScaleSection(markdown, scale);
  // Every other marked section (each benchmark or hand measurement that writes its own: the
  // footprint breakdown, rollouts, sealing, agent CPU, V8 flags, chaos…) is kept, in its order.
  for (const name of sectionNames(previous)) {
    if (sectionNames(markdown).includes(name)) continue;
    markdown = `${markdown.trimEnd()}\n\n${keptSection(previous, name)}`;
  }
  await Deno.writeTextFile(`${REPO_ROOT}/bench/RESULTS.md`, markdown);
  // Keep `deno fmt --check` (CI) clean for the generated file.
  await run(Deno.execPath(), ["fmt", "bench/RESULTS.md"]);
  progress(`wrote bench/RESULTS.md and bench/results.json (${results.durationSeconds} s)`);
  progress(`logs (agents, operator) are in ${workDir}`);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
