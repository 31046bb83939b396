/**
 * The chaos checker: judges a recorded {@linkcode ChaosHistory} against
 * Drover's invariants and measures how fast the fleet came back after each
 * fault. Pure: the same history always gives the same verdict.
 *
 * Invariants (each violation names one):
 * - `convergence`: after the last fault and the settle step, every device's
 *   status reports the desired-state revision of every key it is given,
 *   running, with nothing extra, within `boundMs`; every device is online.
 * - `operator-view`: each operator's API agrees (targeted = ready = keys).
 * - `duplicate-container`: never two containers for one service on a device.
 * - `stray-container`: after convergence no container of a deployment the
 *   device is not given, and (positive control) one per service of each it is.
 * - `container-replaced`: a service whose spec never changes keeps its
 *   container id, unless its deployment left the device in between.
 * - `rollout`: no rollout changes state after `complete`/`rolled_back`; every
 *   revision stored in `deployments` reaches complete, rolled_back or paused
 *   (or is superseded by a newer one or a delete first); the final
 *   `history` lists every revision of a deployment since it was last created.
 * - `single-writer`: a new lease holder never takes over while the previous
 *   one could still act; every desired-state write falls inside a holder's
 *   term; every pass an operator logged as writing falls inside its own term.
 * - `schema`: no status or heartbeat on the wire failed its schema.
 * - `rss`: no process incarnation that ran `rssMinMs` or longer grew by more
 *   than half (and 30 MiB) from its first quarter to its last.
 *
 * @module
 */

import type { ChaosHistory, ContainerSample, KvRecord } from "./history.ts";
import { holderPid } from "./history.ts";

/** Which invariant a violation breaks. */
export type Invariant =
  | "convergence"
  | "operator-view"
  | "duplicate-container"
  | "stray-container"
  | "container-replaced"
  | "rollout"
  | "single-writer"
  | "schema"
  | "rss";

/** One broken invariant, with when (epoch ms) and what. */
export interface Violation {
  invariant: Invariant;
  t: number;
  message: string;
}

/** Bounds of {@linkcode check}. */
export interface CheckOptions {
  /** Time allowed from the last fault (and settle op) to convergence. */
  boundMs: number;
  /** Slack for comparing this process's, the operators' and the servers' clocks (one host). */
  clockSlackMs?: number;
  /** Incarnations shorter than this are not judged for memory growth. */
  rssMinMs?: number;
}

/** How the fleet came back after one fault. */
export interface Recovery {
  faultId: number;
  kind: string;
  /** ms from the heal to the fleet in sync again; null when it never was before the end. */
  ms: number | null;
}

/** One process incarnation's memory. */
export interface RssTrend {
  process: string;
  samples: number;
  firstMiB: number;
  lastMiB: number;
  maxMiB: number;
  minutes: number;
  /** Long enough to be judged; and if so, whether it grew past the bound. */
  judged: boolean;
  grew?: boolean;
}

/** How rollouts ended, by outcome. */
export type RolloutOutcomes = Record<
  "complete" | "rolled_back" | "paused" | "superseded" | "deleted" | "unfinished",
  number
>;

/** The checker's verdict and measurements. */
export interface CheckResult {
  violations: Violation[];
  recoveries: Recovery[];
  /** ms from the settle point (last heal or settle op) to the final converged state; null if never. */
  convergenceMs: number | null;
  settleAt: number;
  rollouts: RolloutOutcomes;
  rss: RssTrend[];
  /**
   * Desired-state writes in KV, those the operators' logs account for, and how many times the
   * lease changed hands.
   */
  writes: { kv: number; logged: number; handovers: number };
}

const TERMINAL = new Set(["complete", "rolled_back"]);
const ENDED = new Set(["complete", "rolled_back", "paused"]);

/** Judges a history. Pure. */
export function check(history: ChaosHistory, options: CheckOptions): CheckResult {
  const slack = options.clockSlackMs ?? 500;
  const violations: Violation[] = [];
  const kv = [...history.kv].sort((a, b) => a.t - b.t || a.revision - b.revision);
  const sync = replaySync(history, kv);

  // Convergence after the last fault and the settle step.
  const lastHeal = Math.max(
    history.windowStart,
    ...history.faults.map((f) => f.healedAt ?? f.startedAt),
  );
  const lastSettle = Math.max(history.windowStart, ...history.ops.map((o) => o.endedAt));
  const settleAt = Math.max(lastHeal, lastSettle);
  let convergenceMs: number | null = null;
  if (!sync.finalStrict) {
    violations.push({
      invariant: "convergence",
      t: history.endedAt,
      message: `not converged at the end: ${sync.finalProblems.slice(0, 5).join("; ")}`,
    });
  } else {
    convergenceMs = Math.max(0, sync.strictSince - settleAt);
    if (convergenceMs > options.boundMs) {
      violations.push({
        invariant: "convergence",
        t: sync.strictSince,
        message: `converged ${Math.round(convergenceMs)} ms after the last fault/settle op ` +
          `(bound ${options.boundMs} ms)`,
      });
    }
  }
  for (const d of history.deviceViews) {
    if (!d.online) {
      violations.push({
        invariant: "convergence",
        t: history.endedAt,
        message: `${d.source} lists ${d.device} offline after every fault healed`,
      });
    }
  }

  // Every device a live deployment selects (by the labels the run gave it) holds its key, and
  // no other device does.
  const live = new Map<string, boolean>();
  for (const r of kv) if (r.bucket === "deployments") live.set(r.key, r.op === "PUT");
  for (const [deployment, selector] of Object.entries(history.selectors ?? {})) {
    if (!live.has(deployment)) continue;
    for (const d of history.devices) {
      const labels = history.deviceLabels?.[d.id] ?? {};
      const selected = live.get(deployment)! &&
        Object.entries(selector).every(([k, v]) => labels[k] === v);
      const holds = sync.desired.has(`${d.id}.${deployment}`);
      if (selected !== holds) {
        violations.push({
          invariant: "convergence",
          t: history.endedAt,
          message: `${d.id} ${selected ? "is selected by" : "is not selected by"} ${deployment} ` +
            `but ${holds ? "holds" : "lacks"} its desired-state key at the end`,
        });
      }
    }
  }

  // The operators' views.
  const finalKeys = new Map<string, number>();
  for (const key of sync.desired.keys()) {
    const dep = key.slice(key.indexOf(".") + 1);
    finalKeys.set(dep, (finalKeys.get(dep) ?? 0) + 1);
  }
  for (const v of history.deploymentViews) {
    const keys = finalKeys.get(v.deployment) ?? 0;
    if (v.targeted !== keys || v.ready !== keys) {
      violations.push({
        invariant: "operator-view",
        t: history.endedAt,
        message: `${v.source}: ${v.deployment} targeted ${v.targeted}, ready ${v.ready}; ` +
          `desired-state holds ${keys} key(s)`,
      });
    }
  }

  violations.push(...containerViolations(history, kv));
  const rollouts = rolloutViolations(history, kv, violations);
  const writes = writerViolations(history, kv, slack, violations);

  for (const s of history.schemaFailures) {
    violations.push({ invariant: "schema", t: s.t, message: `${s.subject}: ${s.error}` });
  }
  const rss = rssTrends(history, options.rssMinMs ?? 10 * 60_000, violations);

  // Recovery after each fault: the first moment its device (a device fault) or every device
  // no other fault holds down (a NATS or operator fault) was in sync again.
  const deviceIds = new Set(history.devices.map((d) => d.id));
  const underFault = (t: number) =>
    new Set(
      history.faults.filter((f) =>
        deviceIds.has(f.target) && !f.skipped && f.startedAt <= t && t < (f.healedAt ?? Infinity)
      ).map((f) => f.target),
    );
  const recoveries = history.faults.filter((f) => f.healedAt !== undefined && !f.skipped).map(
    (f) => {
      const device = deviceIds.has(f.target) ? f.target : undefined;
      const at = sync.firstLooseSyncAfter(f.healedAt!, device, underFault);
      return { faultId: f.id, kind: f.kind, ms: at === undefined ? null : at - f.healedAt! };
    },
  );
  violations.sort((a, b) => a.t - b.t);
  return { violations, recoveries, convergenceMs, settleAt, rollouts, rss, writes };
}

/** Replays desired-state and agent-status in time order. */
function replaySync(history: ChaosHistory, kv: KvRecord[]) {
  const desired = new Map<string, number>(); // "<device>.<deployment>" → KV revision
  const status = new Map<string, Record<string, { revision: number; phase: string }>>();
  const devices = history.devices.map((d) => d.id);
  const known = new Map(history.devices.map((d, i) => [d.id, i]));
  const keysOf = (device: string) =>
    [...desired.keys()].filter((k) => k.startsWith(`${device}.`)).map((k) =>
      k.slice(device.length + 1)
    );
  const problems = (device: string, strict: boolean): string[] => {
    const out: string[] = [];
    const reported = status.get(device) ?? {};
    for (const dep of keysOf(device)) {
      const want = desired.get(`${device}.${dep}`)!;
      const got = reported[dep];
      if (got === undefined) out.push(`${device} does not report ${dep}`);
      else if (got.revision !== want) {
        out.push(`${device} reports ${dep} at ${got.revision}, desired ${want}`);
      } else if (strict && got.phase !== "running") out.push(`${device} ${dep} is ${got.phase}`);
    }
    for (const dep of Object.keys(reported)) {
      if (!desired.has(`${device}.${dep}`)) out.push(`${device} still reports ${dep}`);
    }
    return out;
  };
  let strictSince = NaN;
  let strictNow = false;
  const out = new Set<string>();
  const strictOut = new Set<string>();
  const update = (device: string) => {
    if (!known.has(device)) return;
    if (problems(device, false).length > 0) out.add(device);
    else out.delete(device);
    if (problems(device, true).length > 0) strictOut.add(device);
    else strictOut.delete(device);
  };
  for (const d of devices) update(d);
  /** After each event: its time and the devices out of (loose) sync then. */
  const seen: { t: number; out: ReadonlySet<string> }[] = [];
  let outNow: ReadonlySet<string> = new Set();
  for (const r of kv) {
    if (r.bucket === "desired-state") {
      const device = r.key.slice(0, r.key.indexOf("."));
      if (r.op === "PUT") desired.set(r.key, r.revision);
      else desired.delete(r.key);
      update(device);
    } else if (r.bucket === "agent-status" && r.op === "PUT" && r.value?.kind === "status") {
      status.set(r.key, r.value.deployments);
      update(r.key);
    } else continue;
    if (out.size !== outNow.size || [...out].some((d) => !outNow.has(d))) outNow = new Set(out);
    seen.push({ t: r.t, out: outNow });
    const strict = strictOut.size === 0;
    if (strict && !strictNow) strictSince = r.t;
    strictNow = strict;
  }
  const finalProblems = devices.flatMap((d) => problems(d, true));
  /** Whether `device` was heard (status or heartbeat) at or after `t`. */
  const heardAfter = (device: string, t: number): number | undefined => {
    const s = kv.find((r) => r.bucket === "agent-status" && r.key === device && r.t >= t)?.t;
    const h = history.heartbeats.find((x) => x.device === device && x.t >= t)?.t;
    const all = [s, h].filter((x): x is number => x !== undefined);
    return all.length === 0 ? undefined : Math.min(...all);
  };
  return {
    desired,
    finalStrict: strictNow && finalProblems.length === 0,
    strictSince: Number.isNaN(strictSince) ? history.windowStart : strictSince,
    finalProblems,
    /**
     * The first moment at or after `t` when `device` (heard from since `t`) is in sync, or,
     * without a device, every device `excluded` does not name at that moment.
     */
    firstLooseSyncAfter(
      t: number,
      device: string | undefined,
      excluded: (t: number) => ReadonlySet<string>,
    ): number | undefined {
      let from = t;
      if (device !== undefined) {
        const heard = heardAfter(device, t);
        if (heard === undefined) return undefined;
        from = heard;
      }
      const inSync = (at: number, out: ReadonlySet<string>) => {
        if (device !== undefined) return !out.has(device);
        const skip = excluded(at);
        return [...out].every((d) => skip.has(d));
      };
      // The state at `from` is the one left by the last event before it.
      let state: ReadonlySet<string> = new Set();
      let i = 0;
      for (; i < seen.length && seen[i]!.t <= from; i++) state = seen[i]!.out;
      if (inSync(from, state)) return from;
      for (; i < seen.length; i++) {
        if (inSync(seen[i]!.t, seen[i]!.out)) return seen[i]!.t;
      }
      return undefined;
    },
  };
}

function containerViolations(history: ChaosHistory, kv: KvRecord[]) {
  const violations: Violation[] = [];
  const reported = new Set<string>();
  const once = (key: string, v: Violation) => {
    if (reported.has(key)) return;
    reported.add(key);
    violations.push(v);
  };
  const samples = [...history.containers, ...history.finalContainers].sort((a, b) => a.t - b.t);
  // Never two containers for one service.
  for (const s of samples) {
    const count = new Map<string, string[]>();
    for (const c of s.containers) {
      const key = `${c.deployment}/${c.service}`;
      count.set(key, [...(count.get(key) ?? []), c.id.slice(0, 12)]);
    }
    for (const [key, ids] of count) {
      if (ids.length > 1) {
        once(`dup ${s.device} ${key}`, {
          invariant: "duplicate-container",
          t: s.t,
          message: `${s.device}: ${ids.length} containers for ${key} (${ids.join(", ")})`,
        });
      }
    }
  }
  // Constant services keep their container unless their deployment left the device.
  const left = (device: string, deployment: string, from: number, to: number) =>
    kv.some((r) =>
      r.bucket === "desired-state" && r.key === `${device}.${deployment}` && r.op !== "PUT" &&
      r.t >= from - 1_000 && r.t <= to
    );
  const constant = new Set(history.constantServices.map((c) => `${c.deployment}/${c.service}`));
  const last = new Map<string, { id: string; t: number; created: number | undefined }>();
  for (const s of samples) {
    for (const c of s.containers) {
      const key = `${c.deployment}/${c.service}`;
      // Two at once is a duplicate (reported above), not a replacement.
      const same = s.containers.filter((x) =>
        x.deployment === c.deployment && x.service === c.service
      );
      if (!constant.has(key) || same.length > 1) continue;
      const k = `${s.device} ${key}`;
      const prev = last.get(k);
      // The deployment may have left the device any time after the old container was made.
      if (
        prev && prev.id !== c.id && !left(s.device, c.deployment, prev.created ?? prev.t, s.t)
      ) {
        once(`replaced ${k} ${c.id}`, {
          invariant: "container-replaced",
          t: s.t,
          message: `${s.device}: ${key} (spec unchanged) went from container ` +
            `${prev.id.slice(0, 12)} (seen ${new Date(prev.t).toISOString()}) to ` +
            `${c.id.slice(0, 12)} (seen ${new Date(s.t).toISOString()}) while its ` +
            `desired-state key stayed`,
        });
      }
      if (prev?.id !== c.id) last.set(k, { id: c.id, t: s.t, created: c.created });
      else prev.t = s.t;
    }
  }
  // After convergence: nothing untargeted, and one container per service of each deployment.
  const desiredAtEnd = new Set<string>();
  for (const r of kv) {
    if (r.bucket !== "desired-state") continue;
    if (r.op === "PUT") desiredAtEnd.add(r.key);
    else desiredAtEnd.delete(r.key);
  }
  const finalByDevice = new Map<string, ContainerSample>();
  for (const s of history.finalContainers) finalByDevice.set(s.device, s);
  for (const device of history.devices.filter((d) => d.real).map((d) => d.id)) {
    const s = finalByDevice.get(device);
    if (s === undefined) {
      violations.push({
        invariant: "stray-container",
        t: history.endedAt,
        message: `${device}: no container listing after convergence`,
      });
      continue;
    }
    for (const c of s.containers) {
      if (!desiredAtEnd.has(`${device}.${c.deployment}`)) {
        once(`stray ${device} ${c.id}`, {
          invariant: "stray-container",
          t: s.t,
          message: `${device}: container ${c.id.slice(0, 12)} of ${c.deployment}/${c.service}, ` +
            `which the device is not given`,
        });
      }
    }
    for (const key of desiredAtEnd) {
      if (!key.startsWith(`${device}.`)) continue;
      const dep = key.slice(device.length + 1);
      for (const service of history.services[dep] ?? []) {
        const running = s.containers.filter((c) =>
          c.deployment === dep && c.service === service && c.state === "running"
        );
        if (running.length !== 1) {
          violations.push({
            invariant: "stray-container",
            t: s.t,
            message: `${device}: ${running.length} running container(s) of ${dep}/${service} ` +
              `after convergence, expected 1`,
          });
        }
      }
    }
  }
  return violations;
}

function rolloutViolations(
  history: ChaosHistory,
  kv: KvRecord[],
  violations: Violation[],
): RolloutOutcomes {
  const outcomes: RolloutOutcomes = {
    complete: 0,
    rolled_back: 0,
    paused: 0,
    superseded: 0,
    deleted: 0,
    unfinished: 0,
  };
  // States per deployment and revision, in order.
  const states = new Map<string, { t: number; state: string }[]>();
  for (const r of kv) {
    if (r.bucket !== "rollouts" || r.op !== "PUT" || r.value?.kind !== "rollout") continue;
    const key = `${r.key}@${r.value.revision}`;
    const list = states.get(key) ?? [];
    const prev = list.at(-1);
    if (prev && TERMINAL.has(prev.state) && prev.state !== r.value.state) {
      violations.push({
        invariant: "rollout",
        t: r.t,
        message: `${r.key} revision ${r.value.revision} went from ${prev.state} to ` +
          `${r.value.state}` + (r.value.state === "complete" ? " (completed twice)" : ""),
      });
    }
    if (prev?.state !== r.value.state) list.push({ t: r.t, state: r.value.state });
    states.set(key, list);
  }
  // Every stored revision ends, or a newer one or a delete came first.
  const deploymentChanges = kv.filter((r) => r.bucket === "deployments");
  const sinceCreation = new Map<string, number[]>();
  for (const r of deploymentChanges) {
    if (r.op !== "PUT") {
      sinceCreation.set(r.key, []);
      continue;
    }
    sinceCreation.set(r.key, [...(sinceCreation.get(r.key) ?? []), r.revision]);
    const list = states.get(`${r.key}@${r.revision}`) ?? [];
    const ended = list.find((s) => ENDED.has(s.state));
    const next = deploymentChanges.find((x) =>
      x.key === r.key && x.t >= r.t && x !== r &&
      x.revision > r.revision
    );
    if (ended && (next === undefined || ended.t <= next.t + 1_000)) {
      outcomes[ended.state as "complete" | "rolled_back" | "paused"]++;
    } else if (next !== undefined) {
      outcomes[next.op === "PUT" ? "superseded" : "deleted"]++;
    } else {
      outcomes.unfinished++;
      violations.push({
        invariant: "rollout",
        t: r.t,
        message: `${r.key} revision ${r.revision} never ended (last state: ${
          list.at(-1)?.state ?? "none"
        })`,
      });
    }
  }
  for (const listing of history.historyListings) {
    if (listing.error !== undefined) {
      violations.push({
        invariant: "rollout",
        t: history.endedAt,
        message: `history ${listing.deployment}: ${listing.error}`,
      });
      continue;
    }
    const missing = (sinceCreation.get(listing.deployment) ?? []).filter((r) =>
      !listing.revisions.includes(r)
    );
    if (missing.length > 0) {
      violations.push({
        invariant: "rollout",
        t: history.endedAt,
        message: `history ${listing.deployment} lacks revision(s) ${missing.join(", ")}`,
      });
    }
  }
  return outcomes;
}

/** A lease holder's term: from its first write to its last renewal plus 3/4 of the ttl. */
interface Term {
  holder: string;
  pid: number | undefined;
  from: number;
  to: number;
}

function writerViolations(
  history: ChaosHistory,
  kv: KvRecord[],
  slack: number,
  violations: Violation[],
): { kv: number; logged: number; handovers: number } {
  const terms: Term[] = [];
  let current: (Term & { last: number; ttl: number }) | undefined;
  const close = (at: number) => {
    if (!current) return;
    terms.push({
      holder: current.holder,
      pid: current.pid,
      from: current.from,
      to: Math.min(at, current.last + current.ttl * 0.75),
    });
    current = undefined;
  };
  for (const r of kv) {
    if (r.bucket !== "operator-leases") continue;
    if (r.op !== "PUT" || r.value?.kind !== "lease") {
      close(r.t);
      continue;
    }
    const { holder, ttlMs } = r.value;
    if (current?.holder === holder) {
      current.last = r.t;
      current.ttl = ttlMs;
      continue;
    }
    if (current && r.t < current.last + current.ttl * 0.75 - slack) {
      violations.push({
        invariant: "single-writer",
        t: r.t,
        message: `${holder} took the lease ${current.last + current.ttl * 0.75 - r.t} ms ` +
          `before ${current.holder} stopped acting`,
      });
    }
    close(r.t);
    current = { holder, pid: holderPid(holder), from: r.t, to: Infinity, last: r.t, ttl: ttlMs };
  }
  if (current) terms.push({ ...current, to: current.last + current.ttl * 0.75 });
  const within = (t: number, term: Term) => t >= term.from - slack && t <= term.to + slack;
  const writes = kv.filter((r) => r.bucket === "desired-state");
  for (const w of writes) {
    if (!terms.some((term) => within(w.t, term))) {
      violations.push({
        invariant: "single-writer",
        t: w.t,
        message: `desired-state ${w.key} written (${w.op}) while no operator held the lease`,
      });
    }
  }
  const passes = history.operatorLog.filter((r) =>
    r.kind === "pass" && (r.put ?? 0) + (r.deleted ?? 0) > 0
  );
  for (const p of passes) {
    const start = p.t - (p.ms ?? 0);
    const own = terms.filter((term) => term.pid === p.pid);
    if (!own.some((term) => within(start, term) && within(p.t, term))) {
      violations.push({
        invariant: "single-writer",
        t: p.t,
        message: `operator pid ${p.pid} wrote desired state (${p.put} put, ${p.deleted} ` +
          `deleted) while it did not hold the lease`,
      });
    }
  }
  if (writes.length > 0 && passes.length === 0) {
    violations.push({
      invariant: "single-writer",
      t: history.endedAt,
      message: `${writes.length} desired-state write(s) but no operator logged a writing pass: ` +
        `cannot tell who wrote`,
    });
  }
  return {
    kv: writes.length,
    logged: passes.reduce((s, p) => s + (p.put ?? 0) + (p.deleted ?? 0), 0),
    handovers: Math.max(0, terms.length - 1),
  };
}

function rssTrends(history: ChaosHistory, minMs: number, violations: Violation[]): RssTrend[] {
  const byProcess = new Map<string, { t: number; rssMiB: number }[]>();
  for (const s of history.rss) {
    byProcess.set(s.process, [...(byProcess.get(s.process) ?? []), s]);
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] ?? NaN;
  };
  const out: RssTrend[] = [];
  for (const [process, samples] of byProcess) {
    samples.sort((a, b) => a.t - b.t);
    const span = samples.at(-1)!.t - samples[0]!.t;
    const quarter = Math.max(1, Math.floor(samples.length / 4));
    const first = median(samples.slice(0, quarter).map((s) => s.rssMiB));
    const last = median(samples.slice(-quarter).map((s) => s.rssMiB));
    const judged = span >= minMs && samples.length >= 8;
    const grew = judged && last > first * 1.5 && last - first > 30;
    if (grew) {
      violations.push({
        invariant: "rss",
        t: samples.at(-1)!.t,
        message: `${process} grew from ${first.toFixed(0)} MiB to ${last.toFixed(0)} MiB ` +
          `over ${(span / 60_000).toFixed(1)} min`,
      });
    }
    out.push({
      process,
      samples: samples.length,
      firstMiB: Math.round(first),
      lastMiB: Math.round(last),
      maxMiB: Math.round(Math.max(...samples.map((s) => s.rssMiB))),
      minutes: Math.round(span / 6_000) / 10,
      judged,
      grew,
    });
  }
  return out.sort((a, b) => a.process.localeCompare(b.process));
}
