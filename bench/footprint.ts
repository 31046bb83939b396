/**
 * `deno run -A bench/footprint.ts [--runs N] [--idle S] [BUNDLE…]`: the idle footprint of the
 * agent as devices run it, for the footprint breakdown in bench/RESULTS.md — each bundle (default
 * `dist/drover-agent.bundle.js`, from `deno task bundle`) runs with the launcher's flags and the
 * agent task's V8 flags against a real nats-server and an isolated podman service with 10
 * deployments, started fresh N times; the bundles alternate within each round, so the machine's
 * drift hits all alike. Prints RSS (and its anonymous / file-backed split) per run and the median.
 * A BUNDLE argument may start with environment settings and extra `deno run` flags, shell-like:
 * `"MALLOC_ARENA_MAX=1 --no-code-cache b.js"`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  agentV8Flags,
  type FootprintResult,
  measureFootprint,
  openDeviceStack,
  putIdleDeployments,
  writeAgentConfig,
} from "./device.ts";
import { NOTHING_FETCHED_FLAGS } from "../scripts/bundle.ts";
import { REPO_ROOT } from "./process.ts";

const DEPLOYMENTS = 10;

const args = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "3" }, idle: { type: "string", default: "10" } },
  allowPositionals: true,
});
const runs = Number(args.values.runs);
const idleSeconds = Number(args.values.idle);
const bundles = args.positionals.length > 0
  ? args.positionals
  : [`${REPO_ROOT}/dist/drover-agent.bundle.js`];

const workDir = await Deno.makeTempDir({ prefix: "drover-footprint-" });
try {
  await using stack = await openDeviceStack();
  const { nats, podman, desired, status } = stack;
  {
    const config = await writeAgentConfig(workDir, nats.url, podman.socket);
    await putIdleDeployments(desired, DEPLOYMENTS);
    const results = new Map<string, FootprintResult[]>(bundles.map((b) => [b, []]));
    // Round 0 is a warm-up, not counted: the first start creates the containers and writes
    // Deno's code cache of each bundle.
    for (let round = 0; round <= runs; round++) {
      for (const bundle of bundles) {
        const words = bundle.trim().split(/\s+/);
        const env = words.filter((w) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(w));
        const flags = words.filter((w) => w.startsWith("--"));
        const command = [
          ...(env.length > 0 ? ["env", ...env] : []),
          Deno.execPath(),
          "run",
          ...NOTHING_FETCHED_FLAGS,
          "--unstable-net",
          "-A",
          ...agentV8Flags(),
          ...flags,
          words.at(-1)!,
          "--config",
          config,
        ];
        const r = await measureFootprint(
          status,
          command,
          `${workDir}/agent.log`,
          DEPLOYMENTS,
          idleSeconds,
          120_000,
        );
        if (round > 0) results.get(bundle)!.push(r);
        // A bundle may print its own heap figures (an investigation copy); show the last.
        const heap = (await Deno.readTextFile(`${workDir}/agent.log`)).match(/^HEAP .*$/gm)?.at(-1);
        const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
        console.log(
          `${
            round === 0 ? "warm-up" : `round ${round}`
          } ${bundle}: RSS end ${r.rssMiB.end} MiB (anon ${r.rssSplitMiB?.anon}, ` +
            `file ${r.rssSplitMiB?.file}), max ${r.rssMiB.max}, first status ` +
            `${r.startToFirstStatusMs} ms, all running ${r.startToReadyMs} ms, load ${load}` +
            (heap ? `\n  ${heap}` : ""),
        );
      }
    }
    for (const [bundle, rows] of results) {
      const ends = rows.map((r) => r.rssMiB.end).sort((a, b) => a - b);
      console.log(
        `${bundle}: RSS end median ${ends[Math.floor(ends.length / 2)]} MiB (${ends.join(", ")})`,
      );
    }
  }
} finally {
  await Deno.remove(workDir, { recursive: true });
}
