/**
 * The chaos run's summary (results-chaos.json) and its section of
 * bench/RESULTS.md. Pure.
 *
 * @module
 */

import { sectionMarkers } from "../sections.ts";
import { round, summarise } from "../stats.ts";
import type { CheckResult, RolloutOutcomes, RssTrend } from "./checker.ts";
import type { ChaosHistory } from "./history.ts";

/** Name of the RESULTS.md section. */
export const CHAOS_SECTION = "chaos";

/** One run, as kept in results-chaos.json. */
export interface ChaosReport {
  date: string;
  seed: number;
  minutes: number;
  devices: number;
  agents: number;
  kinds: string[];
  /** Per kind: faults planned, carried out, skipped. */
  faults: Record<string, { planned: number; injected: number; skipped: number }>;
  /** Seconds from each fault's heal to the fleet in sync; null = not before the end. */
  recovery: { n: number; p50: number; p99: number; max: number; never: number };
  recoveryByKind: Record<string, { n: number; p50: number; max: number }>;
  convergenceSeconds: number | null;
  ops: Record<string, { runs: number; failed: number }>;
  rollouts: RolloutOutcomes;
  writes: { kv: number; logged: number; handovers?: number };
  violations: { invariant: string; atSeconds: number; message: string }[];
  violationCount: number;
  rss: RssTrend[];
  notes: string[];
}

/** The summary of a run. */
export function summariseRun(
  history: ChaosHistory,
  result: CheckResult,
  planned: { kind: string }[],
  kinds: string[],
  date: string,
): ChaosReport {
  const faults: ChaosReport["faults"] = {};
  for (const kind of kinds) faults[kind] = { planned: 0, injected: 0, skipped: 0 };
  for (const f of planned) (faults[f.kind] ??= { planned: 0, injected: 0, skipped: 0 }).planned++;
  for (const f of history.faults) {
    const row = (faults[f.kind] ??= { planned: 0, injected: 0, skipped: 0 });
    if (f.skipped) row.skipped++;
    else row.injected++;
  }
  const seconds = (ms: number) => round(ms / 1000);
  const measured = result.recoveries.filter((r) => r.ms !== null).map((r) => r.ms!);
  const all = summarise(measured);
  const recoveryByKind: ChaosReport["recoveryByKind"] = {};
  for (const kind of new Set(result.recoveries.map((r) => r.kind))) {
    const s = summarise(
      result.recoveries.filter((r) => r.kind === kind && r.ms !== null).map((r) => r.ms!),
    );
    recoveryByKind[kind] = { n: s.n, p50: seconds(s.p50), max: seconds(s.max) };
  }
  const ops: ChaosReport["ops"] = {};
  for (const op of history.ops) {
    const row = (ops[op.kind] ??= { runs: 0, failed: 0 });
    row.runs++;
    if (op.code !== 0) row.failed++;
  }
  return {
    date,
    seed: history.seed,
    minutes: history.minutes,
    devices: history.devices.filter((d) => !d.real).length,
    agents: history.devices.filter((d) => d.real).length,
    kinds,
    faults,
    recovery: {
      n: all.n,
      p50: seconds(all.p50),
      p99: seconds(all.p99),
      max: seconds(all.max),
      never: result.recoveries.length - measured.length,
    },
    recoveryByKind,
    convergenceSeconds: result.convergenceMs === null ? null : seconds(result.convergenceMs),
    ops,
    rollouts: result.rollouts,
    writes: result.writes,
    violations: result.violations.slice(0, 20).map((v) => ({
      invariant: v.invariant,
      atSeconds: seconds(v.t - history.windowStart),
      message: v.message,
    })),
    violationCount: result.violations.length,
    rss: result.rss,
    notes: history.notes,
  };
}

const f = (x: number | null | undefined) =>
  x === null || x === undefined || Number.isNaN(x) ? "–" : String(x);

/** RSS trends grouped by process (incarnations `name#N` together), in name order. */
export function rssFamilies(trends: readonly RssTrend[]): {
  name: string;
  incarnations: number;
  longest: RssTrend;
  maxMiB: number;
  judged: number;
  grew: number;
}[] {
  const byName = new Map<string, RssTrend[]>();
  for (const t of trends) {
    const name = t.process.replace(/#\d+$/, "");
    byName.set(name, [...(byName.get(name) ?? []), t]);
  }
  return [...byName.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, list]) => ({
    name,
    incarnations: list.length,
    longest: list.reduce((a, b) => (b.minutes > a.minutes ? b : a)),
    maxMiB: Math.max(...list.map((t) => t.maxMiB)),
    judged: list.filter((t) => t.judged).length,
    grew: list.filter((t) => t.grew).length,
  }));
}

/** The RESULTS.md section: the newest run in full, earlier ones in one line each. */
export function renderChaosSection(entries: ChaosReport[]): string {
  const { start, end } = sectionMarkers(CHAOS_SECTION);
  const latest = entries.at(-1);
  const out: string[] = [
    start,
    "## Chaos (`deno task chaos --minutes M --seed S --devices N`, issue 27)",
    "",
  ];
  out.push(
    "A 3-node NATS cluster, two `operator serve`, real agents (each with its own podman " +
      "service, its state directory on a 4 MiB tmpfs, in its own network namespace) and N " +
      "hollow devices (real agent code, FAKE in-memory runtime). A seeded driver applies, " +
      "rolls out in stages (canary first; some canaries fail), undoes and deletes four " +
      "deployments; a seeded nemesis kills NATS nodes (never two at once), the active operator " +
      "and agents with SIGKILL, stops podman services, SIGSTOPs agents past their heartbeats, " +
      "drops a device's traffic and fills its state file system. The checker judges the " +
      "recorded history (bench/chaos/checker.ts lists the invariants). Recovery = a fault's " +
      "heal → every device's status at the desired revision of every key again (workload " +
      "changes keep coming meanwhile, so this includes their own roll-out time; 0 means it was " +
      "in sync the moment the fault healed). On a shared 2-core machine: times carry that " +
      "load's noise.",
    "",
  );
  if (latest === undefined) return [...out, "No run recorded yet.", end, ""].join("\n");
  const r = latest;
  out.push(
    `### Latest: seed ${r.seed}, ${r.minutes} min, ${r.agents} real agents + ${r.devices} hollow ` +
      `devices (${r.date})`,
    "",
    `**${r.violationCount} invariant violation(s).** Converged ${
      f(r.convergenceSeconds)
    } s after the last fault and settle step. Reproduce: \`deno task chaos --minutes ${r.minutes} ` +
      `--seed ${r.seed} --devices ${r.devices}\`.`,
    "",
    "| fault | planned | injected | skipped | recovery p50 s | recovery max s |",
    "|---|---|---|---|---|---|",
  );
  for (const [kind, row] of Object.entries(r.faults)) {
    const rec = r.recoveryByKind[kind];
    out.push(
      `| ${kind} | ${row.planned} | ${row.injected} | ${row.skipped} | ${f(rec?.p50)} | ${
        f(rec?.max)
      } |`,
    );
  }
  out.push(
    "",
    `Recovery after each fault (${r.recovery.n} measured): p50 ${f(r.recovery.p50)} s, p99 ${
      f(r.recovery.p99)
    } s, max ${f(r.recovery.max)} s` +
      (r.recovery.never > 0 ? `; ${r.recovery.never} never back in sync before the end` : "") +
      ".",
    "",
    `Workload: ${
      Object.entries(r.ops).map(([k, v]) =>
        `${k} ${v.runs}${v.failed ? ` (${v.failed} failed)` : ""}`
      )
        .join(", ")
    }. Rollouts ended: ${
      Object.entries(r.rollouts).map(([k, v]) => `${k} ${v}`).join(", ")
    }. Desired-state writes: ${r.writes.kv} in KV, ${r.writes.logged} accounted for by the ` +
      `lease holder's logged passes; the lease changed hands ${f(r.writes.handovers)} time(s).`,
    "",
  );
  if (r.violations.length > 0) {
    out.push("| invariant | at (s into the window) | what |", "|---|---|---|");
    for (const v of r.violations) {
      out.push(`| ${v.invariant} | ${v.atSeconds} | ${v.message.replaceAll("|", "\\|")} |`);
    }
    out.push("");
  }
  out.push(
    "RSS per process (a restarted process is a new incarnation; incarnations of 10 minutes or " +
      "more are judged for growth, shorter ones only reported):",
    "",
    "| process | incarnations | longest (min) | longest: first quarter → last quarter MiB | max MiB (all) | judged |",
    "|---|---|---|---|---|---|",
  );
  for (const family of rssFamilies(r.rss)) {
    const l = family.longest;
    out.push(
      `| ${family.name} | ${family.incarnations} | ${l.minutes} | ${l.firstMiB} → ${l.lastMiB} | ${family.maxMiB} | ${
        family.judged > 0 ? `${family.judged}, ${family.grew} grew` : "no (too short)"
      } |`,
    );
  }
  out.push("");
  for (const n of r.notes) out.push(`- ${n}`);
  if (entries.length > 1) {
    out.push("", "Earlier runs:", "");
    out.push(
      "| date | seed | minutes | devices | faults | recovery p50 / p99 / max s | violations |",
      "|---|---|---|---|---|---|---|",
    );
    for (const e of entries.slice(0, -1).reverse()) {
      const injected = Object.values(e.faults).reduce((s, x) => s + x.injected, 0);
      out.push(
        `| ${e.date} | ${e.seed} | ${e.minutes} | ${e.agents}+${e.devices} | ${injected} | ${
          f(e.recovery.p50)
        } / ${f(e.recovery.p99)} / ${f(e.recovery.max)} | ${e.violationCount} |`,
      );
    }
  }
  out.push(end, "");
  return out.join("\n");
}
