/**
 * `deno task chaos`, short: two minutes of faults (seed 27) during rollouts on
 * a 3-node cluster with two operators, two real agents and four hollow
 * devices, and the checker finds nothing lost. The tool runs as a subprocess
 * (as CI runs it); disposing the test stops it with SIGTERM, which heals every
 * fault and removes everything it started. Afterwards nothing of the run is
 * left: its directory, its processes, its mounts, its network namespaces.
 */
import { processesReferencing } from "../support/_host.ts";
import { runCommand } from "../support/_exec.ts";
import { collectOutput } from "../support/operator_process.ts";
import { assert, assertEquals } from "../support/assert.ts";
import type { ChaosReport } from "../../bench/chaos/report.ts";

const MAIN = new URL("../../bench/chaos/main.ts", import.meta.url).pathname;
const SEED = 27;

Deno.test("chaos: two minutes of faults during rollouts (seed 27), zero violations, nothing left behind", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "--minutes",
      "2",
      "--seed",
      String(SEED),
      "--devices",
      "4",
      "--agents",
      "2",
      "--no-results",
      "--json",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = collectOutput(child);
  await using _stop = {
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* exited */ }
      await child.status;
      await output.done;
    },
  };
  const status = await child.status;
  await output.done;
  const text = output.text();
  const log = text.split("\n").filter((l) => !l.startsWith("{")).join("\n");
  const reportLine = text.split("\n").find((l) => l.startsWith("{"));
  assert(reportLine !== undefined, `no JSON report; the run said:\n${log.slice(-4_000)}`);
  const report = JSON.parse(reportLine) as ChaosReport;
  const violations = report.violations.map((v) => `${v.invariant}: ${v.message}`).join("\n");
  assertEquals(report.violationCount, 0, `reproduce with --seed ${SEED}:\n${violations}`);
  assertEquals(status.code, 0, log.slice(-4_000));
  // It did what it claims: faults of several kinds, every workload kind, rollouts that ended.
  const injected = Object.values(report.faults).reduce((s, f) => s + f.injected, 0);
  assert(injected >= 5, `faults injected: ${JSON.stringify(report.faults)}`);
  assert(Object.keys(report.ops).length >= 3, `workload kinds: ${JSON.stringify(report.ops)}`);
  assert(report.rollouts.complete > 0, `rollouts: ${JSON.stringify(report.rollouts)}`);
  assert(report.writes.kv > 0 && report.writes.logged > 0, JSON.stringify(report.writes));
  assert(report.convergenceSeconds !== null, "converged");

  // Nothing left behind: the run's directory, processes, mounts and namespaces are gone.
  const dir = /work dir (\S+)/.exec(log)?.[1];
  assert(dir !== undefined, "the run names its directory");
  assertEquals(await Deno.stat(dir).then(() => true, () => false), false, `${dir} removed`);
  assertEquals(await processesReferencing(dir), [], "no process of the run is left");
  const mounts = await Deno.readTextFile("/proc/self/mounts");
  assert(!mounts.includes(dir), "no mount of the run is left");
  const namespaces = [...log.matchAll(/network namespace (\S+)/g)].map((m) => m[1]!);
  const list = (await runCommand("ip", ["netns", "list"])).stdout;
  for (const ns of namespaces) assert(!list.includes(ns), `namespace ${ns} deleted`);
});
