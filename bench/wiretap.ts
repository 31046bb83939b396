/**
 * A wiretap for the fleet benchmark: one extra connection subscribed to `>`
 * notes when each message of one device's change passes the server — the
 * operator's desired-state put and its acknowledgement, the device's snapshot
 * request and its answer, its direct get and the answer, its status put and
 * the acknowledgement — so a slow device's time can be split into steps
 * without touching the agent. Requests whose answer never came are counted:
 * a lost answer costs the requester its whole request timeout.
 *
 * Times are this process's clock when the message reached it (the same
 * machine's clock as the server's store times). The tap costs the server one
 * more delivery per message, so traced runs are for the breakdown, not for
 * the headline figures.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { round, summarise, type Summary } from "./stats.ts";

/** One message seen: when, on what subject, and where its answer goes. */
interface Seen {
  at: number;
  subject: string;
  reply: string | undefined;
}

/** The kinds of request a change involves. */
export type StepKind = "desiredPut" | "snapshot" | "get" | "statusPut";

/** One request of one device, with its answer if one came. */
export interface TracedRequest {
  kind: StepKind;
  device: string;
  at: number;
  answeredAt: number | undefined;
}

/** Per-device steps of one phase, ms from the phase's start unless said otherwise. */
export interface DeviceTimeline {
  device: string;
  /** The operator's put (or delete) of the device's desired-state key passed the server. */
  keyPublished: number | undefined;
  keyAcked: number | undefined;
  /** First snapshot request after the key, and its answer. */
  snapshotAsked: number | undefined;
  snapshotAnswered: number | undefined;
  /** First direct get after the key, and its answer. */
  getAsked: number | undefined;
  getAnswered: number | undefined;
  /** First status put after the get's answer, and its acknowledgement. */
  statusPut: number | undefined;
  statusAcked: number | undefined;
  /** The recorder's time of the status showing the change (bench/fleet.ts), if known. */
  converged?: number;
  /** Every traced request of the device in the phase: kind, asked, answered (ms from start). */
  events: [StepKind, number, number | null][];
  /** Requests of this device in the phase, by kind, and how many never got an answer. */
  requests: Record<StepKind, number>;
  unanswered: Record<StepKind, number>;
}

/** Step durations over a phase's devices, ms. */
export interface PhaseTrace {
  devices: number;
  /** Requests in the phase and those never answered, by kind. */
  requests: Record<StepKind, number>;
  unanswered: Record<StepKind, number>;
  steps: Record<string, Summary>;
  /** The slowest devices' timelines (by convergence); left out of results-scale.json. */
  slowest?: DeviceTimeline[];
}

const KINDS: StepKind[] = ["desiredPut", "snapshot", "get", "statusPut"];

/** What a subject is, for the tap: the request kind and its device, or nothing. Pure. */
export function classify(
  subject: string,
): { kind: StepKind; device: string } | undefined {
  let m = /^\$KV\.desired-state\.([^.]+)\.[^.]+$/.exec(subject);
  if (m) return { kind: "desiredPut", device: m[1]! };
  m = /^drover\.desired\.snapshot\.([^.]+)$/.exec(subject);
  if (m) return { kind: "snapshot", device: m[1]! };
  m = /^\$JS\.API\.DIRECT\.GET\.KV_desired-state\.\$KV\.desired-state\.([^.]+)\.[^.]+$/.exec(
    subject,
  );
  if (m) return { kind: "get", device: m[1]! };
  m = /^\$KV\.agent-status\.([^.]+)$/.exec(subject);
  if (m) return { kind: "statusPut", device: m[1]! };
  return undefined;
}

/** Listens to everything on the servers and keeps the requests of a change. */
export class WireTap {
  readonly #requests: TracedRequest[] = [];
  /** Reply subject → the request awaiting it. */
  readonly #awaiting = new Map<string, TracedRequest>();
  #nc: NatsConnection | undefined;
  #other = 0;

  async start(servers: string[]): Promise<void> {
    this.#nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    this.#nc.subscribe(">", {
      callback: (error, msg) => {
        // A push consumer's delivery carries the stored message's subject: not a request.
        if (error !== null || msg.reply?.startsWith("$JS.ACK.")) return;
        this.#note({ at: Date.now(), subject: msg.subject, reply: msg.reply || undefined });
      },
    });
    await this.#nc.flush();
  }

  #note(seen: Seen): void {
    const waiting = this.#awaiting.get(seen.subject);
    if (waiting !== undefined) {
      this.#awaiting.delete(seen.subject);
      waiting.answeredAt = seen.at;
      return;
    }
    const what = classify(seen.subject);
    if (what === undefined) {
      this.#other++;
      return;
    }
    const request: TracedRequest = { ...what, at: seen.at, answeredAt: undefined };
    this.#requests.push(request);
    if (seen.reply !== undefined) this.#awaiting.set(seen.reply, request);
  }

  /** Messages seen that were none of the traced requests or answers. */
  get other(): number {
    return this.#other;
  }

  /** The timelines of the phase that ran from `t0` to `t1` (epoch ms). */
  phase(
    t0: number,
    t1: number,
    converged: ReadonlyMap<string, number> = new Map(),
  ): { timelines: DeviceTimeline[]; trace: PhaseTrace } {
    const byDevice = new Map<string, TracedRequest[]>();
    for (const r of this.#requests) {
      if (r.at < t0 || r.at > t1) continue;
      let list = byDevice.get(r.device);
      if (list === undefined) byDevice.set(r.device, list = []);
      list.push(r);
    }
    const timelines: DeviceTimeline[] = [];
    for (const [device, list] of byDevice) {
      const key = list.find((r) => r.kind === "desiredPut");
      if (key === undefined) continue;
      const after = (kind: StepKind, from: number) =>
        list.find((r) => r.kind === kind && r.at >= from);
      const snap = after("snapshot", key.at);
      const get = after("get", key.at);
      const status = get?.answeredAt !== undefined ? after("statusPut", get.answeredAt) : undefined;
      const rel = (x: number | undefined) => x === undefined ? undefined : x - t0;
      const requests = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<StepKind, number>;
      const unanswered = { ...requests };
      for (const r of list) {
        requests[r.kind]++;
        if (r.answeredAt === undefined) unanswered[r.kind]++;
      }
      timelines.push({
        device,
        keyPublished: rel(key.at),
        keyAcked: rel(key.answeredAt),
        snapshotAsked: rel(snap?.at),
        snapshotAnswered: rel(snap?.answeredAt),
        getAsked: rel(get?.at),
        getAnswered: rel(get?.answeredAt),
        statusPut: rel(status?.at),
        statusAcked: rel(status?.answeredAt),
        ...(converged.has(device) ? { converged: converged.get(device)! - t0 } : {}),
        events: list.map((
          r,
        ) => [r.kind, r.at - t0, r.answeredAt === undefined ? null : r.answeredAt - t0]),
        requests,
        unanswered,
      });
    }
    return { timelines, trace: summariseTimelines(timelines) };
  }

  async close(): Promise<void> {
    await this.#nc?.close();
  }
}

/** Step durations over timelines. Pure. */
export function summariseTimelines(timelines: DeviceTimeline[]): PhaseTrace {
  const requests = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<StepKind, number>;
  const unanswered = { ...requests };
  for (const t of timelines) {
    for (const k of KINDS) {
      requests[k] += t.requests[k];
      unanswered[k] += t.unanswered[k];
    }
  }
  const step = (from: keyof DeviceTimeline, to: keyof DeviceTimeline) => {
    const xs: number[] = [];
    for (const t of timelines) {
      const a = t[from];
      const b = t[to];
      if (typeof a === "number" && typeof b === "number") xs.push(b - a);
    }
    const s = summarise(xs);
    return { ...s, p50: round(s.p50), p99: round(s.p99), max: round(s.max), mean: round(s.mean) };
  };
  const steps: Record<string, Summary> = {
    "key published": summariseAbsolute(timelines.map((t) => t.keyPublished)),
    "key published → acked": step("keyPublished", "keyAcked"),
    "key published → snapshot asked": step("keyPublished", "snapshotAsked"),
    "snapshot asked → answered": step("snapshotAsked", "snapshotAnswered"),
    "key published → get asked": step("keyPublished", "getAsked"),
    "get asked → answered": step("getAsked", "getAnswered"),
    "get answered → status put": step("getAnswered", "statusPut"),
    "status put → acked": step("statusPut", "statusAcked"),
    "key published → status acked": step("keyPublished", "statusAcked"),
    "status acked": summariseAbsolute(timelines.map((t) => t.statusAcked)),
    "first status acked → converged status": step("statusAcked", "converged"),
    converged: summariseAbsolute(timelines.map((t) => t.converged)),
  };
  const slowest = [...timelines]
    .sort((a, b) => (b.converged ?? Infinity) - (a.converged ?? Infinity))
    .slice(0, 10);
  return { devices: timelines.length, requests, unanswered, steps, slowest };
}

function summariseAbsolute(xs: (number | undefined)[]): Summary {
  return summarise(xs.filter((x): x is number => x !== undefined));
}

/** Garbage-collector pauses of one process within a window (from `--trace-gc` lines). */
export interface GcPauses {
  /** Collections by kind (Scavenge, Mark-Compact, …) in the window. */
  count: Record<string, number>;
  /** Sum of their pauses, ms. */
  totalMs: number;
  /** The longest pause, ms, and when (ms from the window's start). */
  maxMs: number;
  maxAt: number;
}

/**
 * GC pauses in `text` (a process's `--trace-gc` output) between `t0` and `t1`
 * (epoch ms), the isolate having started at `startedAt` (epoch ms: its lines
 * count ms from then). Pure.
 */
export function gcPauses(text: string, startedAt: number, t0: number, t1: number): GcPauses {
  const out: GcPauses = { count: {}, totalMs: 0, maxMs: 0, maxAt: NaN };
  const line =
    /^\[\d+:0x[0-9a-f]+\]\s+(\d+) ms: ([A-Za-z -]+?) [\d.]+ \([\d.]+\) -> .*?, ([\d.]+) \/ [\d.]+ ms/gm;
  for (const m of text.matchAll(line)) {
    const at = startedAt + Number(m[1]);
    if (at < t0 || at > t1) continue;
    const kind = m[2]!.trim();
    const ms = Number(m[3]);
    out.count[kind] = (out.count[kind] ?? 0) + 1;
    out.totalMs += ms;
    if (ms > out.maxMs) {
      out.maxMs = ms;
      out.maxAt = at - t0;
    }
  }
  out.totalMs = Math.round(out.totalMs);
  return out;
}

/**
 * The longest event-loop lag a hollow worker reported (its `loopLagMs` progress lines,
 * scripts/hollow.ts) between `t0` and `t1` (epoch ms), and when (ms from `t0`). Pure.
 */
export function loopLag(text: string, t0: number, t1: number): { maxMs: number; at: number } {
  let out = { maxMs: 0, at: NaN };
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    let p: { loopLagMs?: number; at?: number };
    try {
      p = JSON.parse(line);
    } catch {
      continue;
    }
    if (p.at === undefined || p.loopLagMs === undefined || p.at < t0 || p.at > t1 + 1000) continue;
    if (p.loopLagMs > out.maxMs) out = { maxMs: p.loopLagMs, at: p.at - t0 };
  }
  return out;
}

/**
 * Scheduler time of a process over all its threads (/proc/PID/task/TID/schedstat): ms on a
 * CPU and ms runnable but waiting for one. Waiting time is what a shared machine takes away.
 */
export async function schedTimes(pid: number): Promise<{ runMs: number; waitMs: number }> {
  let runNs = 0;
  let waitNs = 0;
  try {
    for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
      const text = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/schedstat`)
        .catch(() => "");
      const [run = "0", wait = "0"] = text.trim().split(/\s+/);
      runNs += Number(run);
      waitNs += Number(wait);
    }
  } catch {
    // The process is gone.
  }
  return { runMs: runNs / 1e6, waitMs: waitNs / 1e6 };
}
