/**
 * `deno task hollow`: runs N hollow devices — the real agent code with a FAKE
 * in-memory container runtime (agent/hollow.ts) — each with its own NATS
 * connection, until SIGINT/SIGTERM, and prints how many are connected and
 * reporting. A capacity-planning tool: point it at your NATS server or
 * cluster and `operator serve`, and see what a fleet of that size costs them.
 * The fleet benchmark (bench/fleet.ts) runs it too.
 *
 * @module
 */

import { parseArgs as parseFlags } from "node:util";
import { abortableSleep, tolerateTransportResets, untilAborted, withinMs } from "@drover/common";
import { BUCKET_DEVICES, labelPairs, parseLabels } from "@drover/contracts";
import { fleetCounts, HollowDevice, hollowDeviceId } from "../agent/hollow.ts";
import { setupLogging } from "../agent/log.ts";
import { connectNats } from "../operator/nats/connection.ts";
import { forEachBounded, openBucket } from "../operator/nats/kv.ts";
import { registerDevice } from "../operator/fleet/registry.ts";

/** The usage text. */
export const USAGE =
  `deno task hollow: run N hollow devices against a NATS server and operator serve.

Each device is the real agent (NATS session, desired-state follower, validation,
planner, reconciler, status and heartbeats) with a FAKE in-memory container
runtime: nothing is pulled or started, containers only exist in memory. Every
device has its own NATS connection. Runs until Ctrl-C (SIGINT) or SIGTERM.

Usage:
  deno task hollow --devices N [options]

Options:
  --devices N           how many devices (required)
  --processes P         spread them over P processes (default 1; one per core is plenty)
  --prefix NAME         device ids are NAME-00000, NAME-00001, ... (default hollow)
  --first I             index of the first device (default 0), to split a fleet over machines
  --label k=v           label of every device (repeatable); registered in the operator's
                        device registry too, so label selectors target the hollow fleet
  --nats URL            NATS server URL, repeatable or comma-separated (default
                        nats://127.0.0.1:4222); give every node of a cluster
  --creds-dir DIR       device ID uses DIR/ID.creds (from \`operator device add ID --dir DIR\`)
  --operator-creds FILE creds of the operator, used only to register --label labels
                        (default: NATS_CREDS, else none)
  --heartbeat S         heartbeat_seconds of every device (default 10)
  --status-refresh S    seconds between full status puts while nothing changes (default
                        6 heartbeats); = --heartbeat puts the full status every heartbeat, as
                        agents did before core-NATS heartbeats (to compare the cost)
  --json                progress as JSON lines on stdout (for scripts)
  -h, --help            this text
`;

/** What the command line asks for. */
export interface HollowArgs {
  devices: number;
  processes: number;
  prefix: string;
  first: number;
  labels: Record<string, string>;
  servers: string[];
  credsDir?: string;
  operatorCreds?: string;
  heartbeatSeconds: number;
  statusRefreshSeconds?: number;
  json: boolean;
  /** Internal: a child of a multi-process run (no registration, JSON progress). */
  worker: boolean;
}

/** Thrown for a bad command line; the message names the option and the value. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Parses the command line. Pure apart from reading nothing. */
export function parseHollowArgs(
  args: string[],
  env: (name: string) => string | undefined = () => undefined,
): HollowArgs | "help" {
  let parsed;
  try {
    parsed = parseFlags({
      args,
      strict: true,
      options: {
        devices: { type: "string" },
        processes: { type: "string", default: "1" },
        prefix: { type: "string", default: "hollow" },
        first: { type: "string", default: "0" },
        label: { type: "string", multiple: true, default: [] },
        nats: { type: "string", multiple: true, default: [] },
        "creds-dir": { type: "string" },
        "operator-creds": { type: "string" },
        heartbeat: { type: "string", default: "10" },
        "status-refresh": { type: "string" },
        json: { type: "boolean", default: false },
        worker: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return "help";
  const whole = (name: string, text: string | undefined, min: number) => {
    const n = Number(text);
    if (text === undefined || !Number.isInteger(n) || n < min) {
      throw new UsageError(
        `--${name} must be a whole number ≥ ${min}, not ${JSON.stringify(text)}`,
      );
    }
    return n;
  };
  if (v.devices === undefined) throw new UsageError("--devices N is required");
  const devices = whole("devices", v.devices, 1);
  const first = whole("first", v.first, 0);
  if (first + devices > 100_000) {
    throw new UsageError(
      `--first + --devices must stay ≤ 100000 (5-digit ids), not ${first + devices}`,
    );
  }
  if (!/^[a-z0-9]([a-z0-9-]{0,55}[a-z0-9])?$/.test(v.prefix!)) {
    throw new UsageError(
      `--prefix must be 1-57 of a-z 0-9 - starting and ending with a letter or digit, not ${
        JSON.stringify(v.prefix)
      }`,
    );
  }
  const labelArgs = parseLabels(v.label!);
  if (!labelArgs.ok) throw new UsageError(`--label: ${labelArgs.problem}`);
  const labels = labelArgs.labels;
  const heartbeatSeconds = Number(v.heartbeat);
  if (!(heartbeatSeconds > 0 && heartbeatSeconds <= 3600)) {
    throw new UsageError(
      `--heartbeat must be seconds in (0, 3600], not ${JSON.stringify(v.heartbeat)}`,
    );
  }
  const refresh = v["status-refresh"] === undefined ? undefined : Number(v["status-refresh"]);
  if (refresh !== undefined && !(refresh > 0)) {
    throw new UsageError(
      `--status-refresh must be seconds > 0, not ${JSON.stringify(v["status-refresh"])}`,
    );
  }
  const servers = v.nats!.flatMap((s) => s.split(",")).map((s) => s.trim()).filter((s) => s);
  const operatorCreds = v["operator-creds"] ?? env("NATS_CREDS");
  return {
    devices,
    processes: Math.min(whole("processes", v.processes, 1), devices),
    prefix: v.prefix!,
    first,
    labels,
    servers: servers.length > 0 ? servers : ["nats://127.0.0.1:4222"],
    ...(v["creds-dir"] !== undefined ? { credsDir: v["creds-dir"] } : {}),
    ...(operatorCreds ? { operatorCreds } : {}),
    heartbeatSeconds,
    ...(refresh !== undefined ? { statusRefreshSeconds: refresh } : {}),
    json: v.json! || v.worker!,
    worker: v.worker!,
  };
}

/** Splits `devices` starting at `first` into `processes` contiguous ranges. Pure. */
export function splitRanges(
  first: number,
  devices: number,
  processes: number,
): { first: number; count: number }[] {
  const out: { first: number; count: number }[] = [];
  const per = Math.ceil(devices / processes);
  for (let from = 0; from < devices; from += per) {
    out.push({ first: first + from, count: Math.min(per, devices - from) });
  }
  return out;
}

/** One progress line. */
export interface HollowProgress {
  devices: number;
  started: number;
  connected: number;
  reporting: number;
  statuses: number;
  heartbeats: number;
  /**
   * A worker's event loop: the longest a 50 ms timer fired late since the last line, ms
   * (thousands of devices share one loop: when it lags, so does every device's request), and
   * when the line was written (epoch ms).
   */
  loopLagMs?: number;
  at?: number;
}

/** How often a worker's event-loop lag probe ticks. */
const LAG_PROBE_MS = 50;

/** The human progress line. Pure. */
export function progressLine(p: HollowProgress, seconds: number): string {
  const all = p.reporting === p.devices;
  return `hollow: ${p.connected}/${p.devices} connected, ${p.reporting} reporting` +
    (p.started < p.devices ? ` (${p.started} started)` : "") +
    ` — ${p.statuses} status puts, ${p.heartbeats} heartbeats, ${seconds.toFixed(1)} s` +
    (all ? " (FAKE in-memory container runtime; Ctrl-C stops them)" : "");
}

/** Registers every device's labels in the operator's registry, as `operator device register` would. */
async function registerLabels(args: HollowArgs): Promise<void> {
  const nc = await connectNats({
    servers: args.servers,
    ...(args.operatorCreds !== undefined ? { creds: args.operatorCreds } : {}),
  }, { name: "drover-hollow-registry" });
  try {
    const kv = await openBucket(nc, BUCKET_DEVICES);
    if (kv === undefined) {
      throw new Error(`bucket ${BUCKET_DEVICES} does not exist: start \`operator serve\` first`);
    }
    const ids = Array.from(
      { length: args.devices },
      (_, i) => hollowDeviceId(args.prefix, args.first + i),
    );
    const failures = await forEachBounded(ids, 64, async (id) => {
      await registerDevice(kv, id, args.labels);
    });
    if (failures.length > 0) {
      throw new Error(
        `${failures.length} device(s) not registered: ${
          (failures[0]?.error as Error | undefined)?.message
        }`,
      );
    }
  } finally {
    await nc.close();
  }
}

/** Runs `count` devices in this process until `signal` aborts, reporting progress. */
async function runDevices(
  args: HollowArgs,
  signal: AbortSignal,
  report: (p: HollowProgress) => void,
): Promise<void> {
  const devices: HollowDevice[] = [];
  const runs: Promise<void>[] = [];
  const progress = (): HollowProgress => {
    const c = fleetCounts(devices);
    let statuses = 0;
    let heartbeats = 0;
    for (const d of devices) {
      const s = d.sent;
      statuses += s.statuses;
      heartbeats += s.heartbeats;
    }
    return {
      devices: args.devices,
      started: c.devices,
      connected: c.connected,
      reporting: c.reporting,
      statuses,
      heartbeats,
    };
  };
  let lagMax = 0;
  let lagExpected = performance.now() + LAG_PROBE_MS;
  const lagProbe = setInterval(() => {
    const now = performance.now();
    lagMax = Math.max(lagMax, now - lagExpected);
    lagExpected = now + LAG_PROBE_MS;
  }, LAG_PROBE_MS);
  const ticker = setInterval(() => {
    report({ ...progress(), loopLagMs: Math.round(lagMax), at: Date.now() });
    lagMax = 0;
  }, 1_000);
  try {
    const fleet = {
      servers: args.servers,
      labels: args.labels,
      heartbeatSeconds: args.heartbeatSeconds,
      ...(args.statusRefreshSeconds !== undefined
        ? { statusRefreshSeconds: args.statusRefreshSeconds }
        : {}),
      ...(args.credsDir !== undefined ? { credsDir: args.credsDir } : {}),
    };
    for (let i = 0; i < args.devices && !signal.aborted; i++) {
      const device = new HollowDevice(hollowDeviceId(args.prefix, args.first + i));
      devices.push(device);
      runs.push(device.run(fleet, signal));
      // Spread connection set-up so the event loop (and the server) keep breathing.
      if (i % 50 === 49) await abortableSleep(5, signal);
    }
    await untilAborted(signal);
    // Each device publishes a last `stopped` status, as a real agent does.
    await withinMs(Promise.allSettled(runs), 10_000);
  } finally {
    clearInterval(ticker);
    clearInterval(lagProbe);
    report(progress());
  }
}

/** Runs the children of a multi-process run and sums their progress lines. */
async function runWorkers(
  args: HollowArgs,
  signal: AbortSignal,
  report: (p: HollowProgress) => void,
): Promise<void> {
  const script = new URL(import.meta.url).pathname;
  const latest: HollowProgress[] = [];
  const children = splitRanges(args.first, args.devices, args.processes).map((range, i) => {
    latest[i] = {
      devices: range.count,
      started: 0,
      connected: 0,
      reporting: 0,
      statuses: 0,
      heartbeats: 0,
    };
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--v8-flags=--max-old-space-size=4096",
        script,
        "--worker",
        "--devices",
        String(range.count),
        "--first",
        String(range.first),
        "--prefix",
        args.prefix,
        "--heartbeat",
        String(args.heartbeatSeconds),
        ...args.servers.flatMap((s) => ["--nats", s]),
        ...labelPairs(args.labels).flatMap((pair) => ["--label", pair]),
        ...(args.credsDir !== undefined ? ["--creds-dir", args.credsDir] : []),
        ...(args.statusRefreshSeconds !== undefined
          ? ["--status-refresh", String(args.statusRefreshSeconds)]
          : []),
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = (async () => {
      let buffer = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buffer += chunk;
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          try {
            latest[i] = JSON.parse(line);
          } catch { /* not a progress line */ }
        }
      }
    })();
    return { child, lines };
  });
  const sum = (): HollowProgress => {
    const total = {
      devices: args.devices,
      started: 0,
      connected: 0,
      reporting: 0,
      statuses: 0,
      heartbeats: 0,
    };
    for (const p of latest) {
      total.started += p.started;
      total.connected += p.connected;
      total.reporting += p.reporting;
      total.statuses += p.statuses;
      total.heartbeats += p.heartbeats;
    }
    return total;
  };
  const ticker = setInterval(() => report(sum()), 1_000);
  const stop = () => {
    for (const { child } of children) {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
    }
  };
  signal.addEventListener("abort", stop, { once: true });
  try {
    const statuses = await Promise.all(children.map(({ child }) => child.status));
    await Promise.all(children.map(({ lines }) => lines));
    const failed = statuses.filter((s) => !s.success && !signal.aborted);
    if (failed.length > 0) throw new Error(`${failed.length} hollow process(es) exited early`);
  } finally {
    clearInterval(ticker);
    signal.removeEventListener("abort", stop);
    report(sum());
  }
}

/** Entry point: returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let args: HollowArgs | "help";
  try {
    args = parseHollowArgs(argv, (n) => Deno.env.get(n));
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`hollow: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (args === "help") {
    console.log(USAGE);
    return 0;
  }
  await setupLogging({ level: "warning", format: "text" });
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  for (const s of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(s, onSignal);

  const t0 = performance.now();
  let last = "";
  let allSaid = false;
  const report = (p: HollowProgress) => {
    if (args.json) {
      console.log(JSON.stringify(p));
      return;
    }
    const seconds = (performance.now() - t0) / 1000;
    const all = p.reporting === p.devices;
    // While connecting: every second. Afterwards: only when the counts change.
    const key = `${p.connected}/${p.reporting}`;
    if (all && allSaid && key === last) return;
    if (all) allSaid = true;
    last = key;
    console.log(progressLine(p, seconds));
  };

  if (!args.worker && Object.keys(args.labels).length > 0) {
    try {
      await registerLabels(args);
      if (!args.json) {
        console.log(
          `hollow: registered ${args.devices} device(s) with labels ${JSON.stringify(args.labels)}`,
        );
      }
    } catch (e) {
      console.error(
        `hollow: cannot register the labels in the device registry (${(e as Error).message}); ` +
          `label selectors will not target these devices until you run ` +
          `\`operator device register ID k=v\` for each (or pass --operator-creds FILE)`,
      );
    }
  }
  try {
    if (args.processes > 1) await runWorkers(args, stop.signal, report);
    else await runDevices(args, stop.signal, report);
    if (!args.json) {
      console.log(`hollow: stopped ${args.devices} device(s); each put a last "stopped" status`);
    }
    return 0;
  } catch (e) {
    console.error(`hollow: ${(e as Error).message}`);
    return 1;
  } finally {
    for (const s of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(s, onSignal);
  }
}

if (import.meta.main) {
  // Servers that close connections (auth errors, restarts) must not end the process.
  tolerateTransportResets();
  Deno.exit(await main(Deno.args));
}
