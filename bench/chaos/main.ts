/**
 * `deno task chaos [--minutes M] [--seed S] [--devices N]`: faults during
 * rollouts, and a checker that says whether anything was lost (run.ts,
 * checker.ts). Writes the run's section of bench/RESULTS.md and
 * bench/results-chaos.json unless `--no-results`; exits 1 when an invariant
 * was violated, so a CI step fails on it.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { FAULT_KINDS, type FaultKind } from "./nemesis_plan.ts";
import { type ChaosOptions, runChaos } from "./run.ts";
import { CHAOS_SECTION, type ChaosReport, renderChaosSection, summariseRun } from "./report.ts";
import { REPO_ROOT, run } from "../process.ts";
import { withSection } from "../sections.ts";

/** The usage text. */
export const USAGE = `deno task chaos: faults during rollouts, and an invariant checker.

Starts a 3-node NATS cluster, two \`operator serve\`, real agents (each with its own
podman service) and N hollow devices; a seeded workload keeps changing deployments
while a seeded nemesis injects faults; then checks the recorded history.

Usage:
  deno task chaos [options]

Options:
  --minutes M        length of the chaos window (default 30; decimals allowed)
  --seed S           seed of the workload and the faults (default: random, printed);
                     the same seed gives the same plan again
  --devices N        hollow devices (default 20)
  --agents K         real agents, each with its own podman service (default 3)
  --bound S          seconds the fleet gets to converge after the last fault (default 60)
  --heartbeat S      heartbeat_seconds of every device (default 2)
  --without KIND     leave a fault kind out (repeatable): ${FAULT_KINDS.join(", ")}
  --no-results       do not write bench/RESULTS.md and bench/results-chaos.json
  --keep             keep the run's directory (logs, history.json) after the run
  --json             print the run's summary as JSON on stdout at the end
  -h, --help         this text

Exit status: 0 no violation, 1 violations (or the run could not be set up), 2 usage.
`;

/** The parsed command line: the run's options, and what to do with its results. */
export interface ChaosArgs extends Omit<ChaosOptions, "progress" | "signal" | "without"> {
  without: FaultKind[];
  results: boolean;
  keep: boolean;
  json: boolean;
}

/** Parses the command line; throws an Error naming the option for bad input. Pure apart from the default seed. */
export function parseChaosArgs(argv: string[], randomSeed: () => number): ChaosArgs | "help" {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      minutes: { type: "string", default: "30" },
      seed: { type: "string" },
      devices: { type: "string", default: "20" },
      agents: { type: "string", default: "3" },
      bound: { type: "string", default: "60" },
      heartbeat: { type: "string", default: "2" },
      without: { type: "string", multiple: true, default: [] },
      "no-results": { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) return "help";
  const number = (name: string, text: string | undefined, min: number, whole: boolean) => {
    const n = Number(text);
    if (text === undefined || !(n >= min) || (whole && !Number.isInteger(n))) {
      throw new Error(
        `--${name} must be a ${whole ? "whole " : ""}number ≥ ${min}, not ${JSON.stringify(text)}`,
      );
    }
    return n;
  };
  const without = v.without!.map((k) => {
    if (!(FAULT_KINDS as readonly string[]).includes(k)) {
      throw new Error(
        `--without: unknown fault kind ${JSON.stringify(k)} (${FAULT_KINDS.join(", ")})`,
      );
    }
    return k as FaultKind;
  });
  return {
    minutes: number("minutes", v.minutes, 0.5, false),
    seed: v.seed === undefined ? randomSeed() : number("seed", v.seed, 0, true),
    devices: number("devices", v.devices, 0, true),
    agents: number("agents", v.agents, 1, true),
    boundSeconds: number("bound", v.bound, 1, false),
    heartbeatSeconds: number("heartbeat", v.heartbeat, 1, false),
    without,
    results: !v["no-results"],
    keep: v.keep!,
    json: v.json!,
  };
}

const RESULTS_JSON = `${REPO_ROOT}/bench/results-chaos.json`;
/** Runs kept in results-chaos.json (the newest last). */
const KEEP_RUNS = 6;

async function main(argv: string[]): Promise<number> {
  let args: ChaosArgs | "help";
  try {
    args = parseChaosArgs(argv, () => Math.floor(Math.random() * 1_000_000));
  } catch (e) {
    console.error(`chaos: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args === "help") {
    console.log(USAGE);
    return 0;
  }
  const started = performance.now();
  const progress = (line: string) =>
    console.error(`[${((performance.now() - started) / 1000).toFixed(1).padStart(7)} s] ${line}`);
  const stop = new AbortController();
  const onSignal = () => {
    progress("interrupted: healing every fault and stopping everything");
    stop.abort();
  };
  for (const s of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(s, onSignal);
  try {
    const { history, result, planned, kinds, dir } = await runChaos({
      ...args,
      progress,
      signal: stop.signal,
    }, args.keep);
    const report = summariseRun(
      history,
      result,
      planned,
      kinds,
      new Date().toISOString().slice(0, 16),
    );
    for (const v of result.violations) {
      progress(`VIOLATION ${v.invariant}: ${v.message}`);
    }
    progress(
      `${result.violations.length} violation(s); ${history.faults.length} faults; recovery ` +
        `p50 ${report.recovery.p50} s, p99 ${report.recovery.p99} s, max ${report.recovery.max} s; ` +
        `converged ${report.convergenceSeconds ?? "never"} s after the last fault ` +
        `(seed ${args.seed}${args.keep ? `; logs and history.json in ${dir}` : ""})`,
    );
    if (args.results) {
      const entries: ChaosReport[] = JSON.parse(
        await Deno.readTextFile(RESULTS_JSON).catch(() => "[]"),
      );
      entries.push(report);
      const kept = entries.slice(-KEEP_RUNS);
      await Deno.writeTextFile(RESULTS_JSON, JSON.stringify(kept, null, 2) + "\n");
      const md = await Deno.readTextFile(`${REPO_ROOT}/bench/RESULTS.md`).catch(() => "");
      await Deno.writeTextFile(
        `${REPO_ROOT}/bench/RESULTS.md`,
        withSection(md, CHAOS_SECTION, renderChaosSection(kept)),
      );
      await run(Deno.execPath(), ["fmt", "bench/RESULTS.md", "bench/results-chaos.json"]);
      progress("written to bench/RESULTS.md and bench/results-chaos.json");
    }
    if (args.json) console.log(JSON.stringify(report));
    return result.violations.length === 0 ? 0 : 1;
  } catch (e) {
    progress(`chaos run failed (seed ${args.seed}): ${(e as Error).stack ?? e}`);
    return 1;
  } finally {
    for (const s of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(s, onSignal);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
