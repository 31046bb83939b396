/**
 * The nemesis's schedule, decided from the seed alone before the run starts
 * (Jepsen's split: the generator decides, the runner only carries it out), so a
 * seed names the same faults at the same offsets on every run. Pure.
 *
 * @module
 */

import { Rng } from "./rng.ts";

/** Every fault the nemesis knows. */
export const FAULT_KINDS = [
  "nats-kill",
  "operator-kill",
  "agent-kill",
  "podman-stop",
  "agent-pause",
  "partition",
  "disk-full",
] as const;
/** One kind of fault. */
export type FaultKind = typeof FAULT_KINDS[number];

/** Faults aimed at one real agent (its process, its podman, its link or its disk). */
export const AGENT_FAULTS: ReadonlySet<FaultKind> = new Set([
  "agent-kill",
  "podman-stop",
  "agent-pause",
  "partition",
  "disk-full",
]);

/** One fault: it starts at `atMs` (from the start of the chaos window) and heals `durationMs` later. */
export interface PlannedFault {
  id: number;
  kind: FaultKind;
  /**
   * A NATS node index (`nats-kill`) or a real agent index (agent faults); 0 for
   * `operator-kill`, whose victim is whoever holds the lease when it fires.
   */
  target: number;
  atMs: number;
  durationMs: number;
}

/** Inputs of {@linkcode planFaults}. */
export interface NemesisOptions {
  seed: number;
  /** Length of the chaos window; every fault heals before it ends. */
  windowMs: number;
  /** No fault starts before this (the fleet settles first). */
  warmupMs: number;
  agents: number;
  natsNodes: number;
  /** The kinds this run may use (e.g. without `partition` where no network namespace exists). */
  kinds: readonly FaultKind[];
  /** The agents' heartbeat interval: a pause or a partition lasts past three of them. */
  heartbeatSeconds: number;
  /** Most faults in effect at once (default 2). */
  maxConcurrent?: number;
}

/** How often each kind is picked, relative. */
const WEIGHTS: Record<FaultKind, number> = {
  "nats-kill": 3,
  "operator-kill": 2,
  "agent-kill": 3,
  "podman-stop": 2,
  "agent-pause": 2,
  "partition": 2,
  "disk-full": 1,
};

/** [min, max] seconds a fault of each kind lasts. */
export function durationRange(kind: FaultKind, heartbeatSeconds: number): [number, number] {
  const pastHeartbeats = 3 * heartbeatSeconds + 1;
  switch (kind) {
    case "nats-kill":
      return [3, 15];
    case "operator-kill":
      return [2, 10];
    case "agent-kill":
      return [1, 6];
    case "podman-stop":
      return [3, 15];
    case "agent-pause":
      return [pastHeartbeats, pastHeartbeats + 8];
    case "partition":
      return [pastHeartbeats, pastHeartbeats + 20];
    case "disk-full":
      return [5, 20];
  }
}

/** Whether `a` and `b` are in effect at the same moment. */
export function overlaps(a: PlannedFault, b: PlannedFault): boolean {
  return a.atMs < b.atMs + b.durationMs && b.atMs < a.atMs + a.durationMs;
}

/** Whether two faults may not be in effect together (same NATS node set, both operators, one agent). */
export function conflicts(a: PlannedFault, b: PlannedFault): boolean {
  if (a.kind === "nats-kill" && b.kind === "nats-kill") return true; // never two nodes down
  if (a.kind === "operator-kill" && b.kind === "operator-kill") return true;
  return AGENT_FAULTS.has(a.kind) && AGENT_FAULTS.has(b.kind) && a.target === b.target;
}

/** The faults of a run, in start order. Pure: the same options give the same list. */
export function planFaults(options: NemesisOptions): PlannedFault[] {
  const rng = new Rng(options.seed ^ 0x6e656d65);
  const maxConcurrent = options.maxConcurrent ?? 2;
  const kinds = options.kinds.filter((k) => k === "nats-kill" ? options.natsNodes > 1 : true)
    .filter((k) => !AGENT_FAULTS.has(k) || options.agents > 0);
  const out: PlannedFault[] = [];
  if (kinds.length === 0) return out;
  const weights = Object.fromEntries(kinds.map((k) => [k, WEIGHTS[k]])) as Record<
    FaultKind,
    number
  >;
  // Bounded: at most one fault per second of window, and a few tries per slot.
  const maxFaults = Math.ceil(options.windowMs / 1000);
  let at = options.warmupMs;
  while (at < options.windowMs - 2_000 && out.length < maxFaults) {
    for (let attempt = 0; attempt < 8; attempt++) {
      const kind = rng.weighted(weights);
      const target = kind === "nats-kill"
        ? rng.int(0, options.natsNodes - 1)
        : AGENT_FAULTS.has(kind)
        ? rng.int(0, options.agents - 1)
        : 0;
      const [lo, hi] = durationRange(kind, options.heartbeatSeconds);
      const durationMs = Math.min(rng.int(lo * 1000, hi * 1000), options.windowMs - at - 1_000);
      if (durationMs < 500) break;
      const fault: PlannedFault = { id: out.length + 1, kind, target, atMs: at, durationMs };
      const active = out.filter((f) => overlaps(f, fault));
      if (active.length >= maxConcurrent || active.some((f) => conflicts(f, fault))) continue;
      out.push(fault);
      break;
    }
    at += rng.int(3_000, 12_000);
  }
  return out;
}

/** What is wrong with a schedule (for tests and as a guard before a run); [] when nothing. */
export function scheduleProblems(
  faults: readonly PlannedFault[],
  options: NemesisOptions,
): string[] {
  const problems: string[] = [];
  const maxConcurrent = options.maxConcurrent ?? 2;
  faults.forEach((f, i) => {
    if (f.atMs < options.warmupMs) problems.push(`fault ${f.id} starts in the warm-up`);
    if (f.atMs + f.durationMs > options.windowMs) {
      problems.push(`fault ${f.id} heals after the window`);
    }
    if (!options.kinds.includes(f.kind)) problems.push(`fault ${f.id} is of a disabled kind`);
    for (const g of faults.slice(i + 1)) {
      if (overlaps(f, g) && conflicts(f, g)) {
        problems.push(`faults ${f.id} (${f.kind}) and ${g.id} (${g.kind}) conflict`);
      }
    }
    const together = faults.filter((g) => overlaps(g, f) && g.atMs <= f.atMs).length;
    if (together > maxConcurrent) {
      problems.push(`more than ${maxConcurrent} faults at fault ${f.id}`);
    }
  });
  return problems;
}
