/**
 * `deno run -A bench/rollout.ts [--devices N]`: a staged rollout across N
 * hollow devices (default 5 000; scripts/hollow.ts: real agent code, FAKE
 * in-memory runtime) with the real `operator serve`.
 *
 * Revision 1 goes everywhere at once (timed); revision 2 then rolls out in
 * batches of 1 %, 10 %, 50 % and the implicit rest, success threshold 100 %,
 * `min_ready` 1 s. The batches come from a watch of the `rollouts` bucket
 * (each state's `batch`, `batch_devices`, `batch_started_at`), each device's
 * new revision running from a watch of `agent-status` (server store time).
 *
 * Results accumulate in bench/results-rollout.json (one entry per N, the
 * newest wins) and render as their own section of bench/RESULTS.md. Numbers,
 * not assertions.
 *
 * @module
 */

import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { BUCKET_ROLLOUTS } from "@drover/contracts";
import { RolloutState } from "../operator/rollout/state.ts";
import {
  cli,
  DEPLOYMENT,
  FLEET_IMAGE,
  getJson,
  LABELS,
  registerFleet,
  spawnHollowDevices,
  startBenchOperator,
  startServers,
  StatusRecorder,
  until,
} from "./fleet.ts";
import { fleetProcesses } from "./main.ts";
import { machineInfo } from "./machine.ts";
import { REPO_ROOT, run } from "./process.ts";
import { sectionMarkers, withSection } from "./sections.ts";
import { epochMs, round } from "./stats.ts";

const SECTION_NAME = "rollout-bench";
const RESULTS = `${REPO_ROOT}/bench/results-rollout.json`;
/** The batches of revision 2 (an implicit last batch takes the rest). */
const BATCHES = [{ limit: "1%" }, { limit: "10%" }, { limit: "50%" }];

/** One batch as measured. Seconds count from the `apply` of revision 2. */
export interface BatchResult {
  batch: number;
  devices: number;
  /** The operator started the batch (its `batch_started_at`). */
  startedSeconds: number;
  /** Batch start → every device of the batch stored a status with the new revision running. */
  convergeSeconds: number | null;
  /** Last device of this batch running → the next batch started (or the rollout complete). */
  gapSeconds: number | null;
}

/** One run. */
export interface RolloutResult {
  n: number;
  processes: number;
  server: string;
  /** Agents started → the operator's API lists all N ready. */
  connectSeconds: number;
  /** `apply` of revision 1 (no rollout section) → the API reports all N ready. */
  deploySeconds: number | null;
  batches: BatchResult[];
  /** `apply` of revision 2 → the rollout's state `complete` stored. */
  rolloutSeconds: number | null;
  error?: string;
}

/** One stored run. */
export interface RolloutEntry {
  date: string;
  result: RolloutResult;
}

/** A rollout state as seen by the watch, at its store time (epoch ms). */
interface Seen {
  at: number;
  state: RolloutState;
}

/**
 * The per-batch figures from the rollout states seen and each device's time
 * (epoch ms) of running the new revision. Pure.
 */
export function batchesOf(
  seen: Seen[],
  runningAt: Map<string, number>,
  t0: number,
): { batches: BatchResult[]; completeAt: number | undefined } {
  const starts = new Map<number, { at: number; devices: string[] }>();
  let completeAt: number | undefined;
  for (const { at, state } of seen) {
    if (!starts.has(state.batch)) {
      starts.set(state.batch, {
        at: Date.parse(state.batch_started_at),
        devices: state.batch_devices,
      });
    }
    if (state.state === "complete" && completeAt === undefined) completeAt = at;
  }
  const order = [...starts.keys()].sort((a, b) => a - b);
  const s = (ms: number) => round(ms / 1000);
  const batches = order.map((batch, i): BatchResult => {
    // order holds the keys of starts.
    const { at, devices } = starts.get(batch)!;
    const times = devices.map((d) => runningAt.get(d));
    const all = times.every((x) => x !== undefined) ? Math.max(...(times as number[])) : undefined;
    const nextKey = order[i + 1];
    const next = nextKey === undefined ? completeAt : starts.get(nextKey)?.at;
    return {
      batch: batch + 1,
      devices: devices.length,
      startedSeconds: s(at - t0),
      convergeSeconds: all === undefined ? null : s(all - at),
      gapSeconds: all === undefined || next === undefined ? null : s(next - all),
    };
  });
  return { batches, completeAt };
}

function manifest(version: number, rollout: boolean): string {
  return JSON.stringify({
    name: DEPLOYMENT,
    selector: { labels: LABELS },
    score: {
      type: "PodmanV0",
      services: [{ name: "app", image: FLEET_IMAGE, env: { BENCH_VERSION: String(version) } }],
    },
    ...(rollout
      ? {
        rollout: {
          batches: BATCHES,
          success_threshold: "100%",
          batch_timeout: "10m",
          min_ready: "1s",
          on_failure: "pause",
        },
      }
      : {}),
  });
}

interface ApiDeployment {
  targeted: number;
  ready: number;
}

/** Runs the scenario for N devices. */
export async function runRolloutBench(
  n: number,
  workDir: string,
  progress: (line: string) => void,
): Promise<RolloutResult> {
  const machine = await machineInfo();
  const dir = `${workDir}/rollout-${n}`;
  await Deno.mkdir(dir, { recursive: true });
  const timeoutMs = Math.max(120_000, n * 60);
  await using servers = await startServers({
    n,
    processes: 1,
    steadySeconds: 0,
    heartbeatSeconds: 10,
    phaseTimeoutMs: timeoutMs,
    workDir,
    progress,
  });
  const natsUrl = servers.urls.join(",");
  await using operator = await startBenchOperator(dir, natsUrl);
  const api = operator.api;
  // The CLI runs against the same servers as the operator.
  const opEnv = operator.env;
  await registerFleet(servers.urls, n);
  const recorder = new StatusRecorder();
  await recorder.start(servers.urls);
  const processes = fleetProcesses(n, machine.nproc);
  progress(`rollout N=${n}: starting ${n} hollow devices in ${processes} process(es)`);
  const tConnect = epochMs();
  const agents = await spawnHollowDevices(n, processes, servers.urls, dir);
  const nc = await connect({ servers: servers.urls, maxReconnectAttempts: -1 });
  const seen: Seen[] = [];
  const result: RolloutResult = {
    n,
    processes,
    server: "",
    connectSeconds: NaN,
    deploySeconds: null,
    batches: [],
    rolloutSeconds: null,
  };
  try {
    const rollouts = await new Kvm(nc).open(BUCKET_ROLLOUTS);
    const watch = await rollouts.watch({ key: DEPLOYMENT, include: "updates" });
    void (async () => {
      for await (const e of watch) {
        if (e.operation !== "PUT") continue;
        const parsed = RolloutState.safeParse(e.json());
        if (parsed.success) seen.push({ at: e.created.getTime(), state: parsed.data });
      }
    })();
    const ready = async (check: (d: ApiDeployment) => boolean) => {
      const d = await getJson<ApiDeployment>(`${api}/api/deployments/${DEPLOYMENT}`)
        .catch(() => undefined);
      return d !== undefined && check(d);
    };
    await until(
      async () =>
        (await getJson<{ status: string }[]>(`${api}/api/devices`))
          .filter((d) => d.status === "ready").length >= n,
      timeoutMs,
      `all ${n} agents report ready`,
      500,
    );
    result.connectSeconds = round((epochMs() - tConnect) / 1000);
    progress(`rollout N=${n}: all connected in ${result.connectSeconds} s`);

    // Revision 1, everywhere at once.
    const file = `${dir}/manifest.json`;
    await Deno.writeTextFile(file, manifest(1, false));
    const t1 = epochMs();
    await cli(["apply", "-f", file], opEnv);
    await until(() => ready((d) => d.targeted === n && d.ready === n), timeoutMs, "rev 1", 250);
    result.deploySeconds = round((epochMs() - t1) / 1000);
    progress(`rollout N=${n}: revision 1 on all devices in ${result.deploySeconds} s`);
    // The operator stores a one-batch rollout state for an unstaged revision too: wait for it so
    // that revision 2's states are told apart by their revision.
    await until(
      () => Promise.resolve(seen.some((x) => x.state.state === "complete")),
      30_000,
      "revision 1's rollout state",
      100,
    ).catch(() => {});
    const baseline = Math.max(0, ...seen.map((x) => x.state.revision));
    const staged = () => seen.filter((x) => x.state.revision > baseline);
    const before = new Map<string, number>();
    for (const r of recorder.records) {
      if (r.event === "running") {
        before.set(r.device, Math.max(before.get(r.device) ?? 0, r.revision ?? 0));
      }
    }

    // Revision 2, staged.
    await Deno.writeTextFile(file, manifest(2, true));
    const t2 = epochMs();
    await cli(["apply", "-f", file], opEnv);
    let last = "";
    await until(
      () => {
        const state = staged().at(-1)?.state;
        const line = state ? `${state.state} batch ${state.batch + 1}/${state.batches}` : "";
        if (line !== last) progress(`rollout N=${n}: ${(last = line)}`);
        if (state && ["paused", "rolled_back", "failed"].includes(state.state)) {
          throw new Error(`rollout ${state.state}: ${state.message}`);
        }
        return Promise.resolve(state?.state === "complete" && state.started_at !== undefined);
      },
      timeoutMs,
      "rollout complete",
      250,
    ).catch((e) => {
      result.error = (e as Error).message;
    });
    // Let the last statuses arrive at this process's watch.
    await new Promise((r) => setTimeout(r, 2_000));
    const runningAt = new Map<string, number>();
    for (const r of recorder.records) {
      if (
        r.at >= t2 && r.event === "running" && (r.revision ?? 0) > (before.get(r.device) ?? 0) &&
        !runningAt.has(r.device)
      ) runningAt.set(r.device, r.at);
    }
    const { batches, completeAt } = batchesOf(staged(), runningAt, t2);
    result.batches = batches;
    result.rolloutSeconds = completeAt === undefined ? null : round((completeAt - t2) / 1000);
    progress(`rollout N=${n}: ${JSON.stringify(result.batches)}; total ${result.rolloutSeconds} s`);
    watch.stop();
  } catch (e) {
    result.error = (e as Error).message;
    progress(`rollout N=${n}: ${result.error}`);
  } finally {
    await nc.close();
    await Promise.all(agents.map((a) => a.stop(15_000)));
    await recorder.close();
  }
  const v = await run("nats-server", ["--version"]);
  result.server = v.stdout.trim();
  return result;
}

const f = (x: number | null) => x === null || Number.isNaN(x) ? "–" : String(x);

/** The RESULTS.md section. Pure. */
export function renderSection(entries: RolloutEntry[]): string {
  const { start, end } = sectionMarkers(SECTION_NAME);
  const runs = entries.map(({ date, result: r }) => {
    const rows = r.batches.map((b) =>
      `| ${b.batch} | ${b.devices} | ${f(b.startedSeconds)} | ${f(b.convergeSeconds)} | ${
        f(b.gapSeconds)
      } |`
    );
    return `### ${r.n} devices (${date}, ${r.server}, ${r.processes} hollow process(es))

All connected in ${f(r.connectSeconds)} s; revision 1 everywhere at once (no \`rollout\`) in ${
      f(r.deploySeconds)
    } s; revision 2 staged, \`apply\` → state \`complete\` in **${f(r.rolloutSeconds)} s**.${
      r.error ? ` Not complete: ${r.error}.` : ""
    }

| batch | devices | started (s after apply) | seconds to converge | seconds to the next batch |
|---|---|---|---|---|
${rows.join("\n")}`;
  });
  return `${start}
## Staged rollout (\`deno run -A bench/rollout.ts --devices N\`, issue 13)

Hollow devices (real agent code, FAKE in-memory runtime) and the real \`operator serve\` on this
shared 2-core machine. Revision 1 goes to every device at once; revision 2 then rolls out with

\`\`\`yaml
rollout:
  batches: [{ limit: "1%" }, { limit: "10%" }, { limit: "50%" }] # an implicit 4th takes the rest
  success_threshold: "100%"
  min_ready: "1s"
\`\`\`

A batch starts at its
\`batch_started_at\` (rollouts bucket); it has converged when the last of its devices stored a
status with the new revision running (agent-status, server time). "To the next batch" is from
then to the next batch's start (or, for the last, to \`complete\` being stored): \`min_ready\`
(1 s) plus the operator noticing.

${runs.join("\n\n")}
${end}
`;
}

async function main(args: string[]): Promise<number> {
  const at = args.indexOf("--devices");
  const n = at >= 0 ? Number(args[at + 1]) : 5000;
  if (!Number.isInteger(n) || n < 4) {
    console.error(`--devices must be an integer of at least 4, not ${args[at + 1]}`);
    return 2;
  }
  const started = performance.now();
  const progress = (line: string) =>
    console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  const workDir = await Deno.makeTempDir({ prefix: "drover-rollout-" });
  const result = await runRolloutBench(n, workDir, progress);
  const entries: RolloutEntry[] = JSON.parse(await Deno.readTextFile(RESULTS).catch(() => "[]"));
  const entry = { date: new Date().toISOString().slice(0, 16), result };
  const i = entries.findIndex((e) => e.result.n === n);
  if (i >= 0) entries[i] = entry;
  else entries.push(entry);
  entries.sort((a, b) => a.result.n - b.result.n);
  await Deno.writeTextFile(RESULTS, JSON.stringify(entries, null, 2) + "\n");
  const md = await Deno.readTextFile(`${REPO_ROOT}/bench/RESULTS.md`).catch(() => "");
  await Deno.writeTextFile(
    `${REPO_ROOT}/bench/RESULTS.md`,
    withSection(md, SECTION_NAME, renderSection(entries)),
  );
  await run(Deno.execPath(), ["fmt", "bench/RESULTS.md", "bench/results-rollout.json"]);
  progress(`written to bench/results-rollout.json and bench/RESULTS.md; logs in ${workDir}`);
  return result.error ? 1 : 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
