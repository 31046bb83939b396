/**
 * The chaos tool's pure parts (bench/chaos/): the seeded generator, the
 * nemesis's schedule and the workload are decided by the seed alone and keep
 * their rules.
 */
import { Rng } from "../bench/chaos/rng.ts";
import { parseChaosArgs } from "../bench/chaos/main.ts";
import {
  conflicts,
  FAULT_KINDS,
  type NemesisOptions,
  planFaults,
  scheduleProblems,
} from "../bench/chaos/nemesis_plan.ts";
import {
  DEPLOYMENTS,
  finalDeployments,
  manifestFor,
  planWorkload,
} from "../bench/chaos/workload.ts";
import { DeploymentManifest } from "@drover/contracts";
import { assert, assertEquals } from "./support/assert.ts";

Deno.test("chaos rng: a seed gives one sequence; another seed another", () => {
  const a = Array.from({ length: 5 }, ((r) => () => r.next())(new Rng(7)));
  const b = Array.from({ length: 5 }, ((r) => () => r.next())(new Rng(7)));
  const c = Array.from({ length: 5 }, ((r) => () => r.next())(new Rng(8)));
  assertEquals(a, b);
  assert(a.some((x, i) => x !== c[i]), "seeds 7 and 8 differ");
  const r = new Rng(1);
  for (let i = 0; i < 1000; i++) {
    const x = r.int(3, 5);
    assert(x >= 3 && x <= 5 && Number.isInteger(x), `int in range: ${x}`);
  }
});

const nemesis = (seed: number, extra: Partial<NemesisOptions> = {}): NemesisOptions => ({
  seed,
  windowMs: 30 * 60_000,
  warmupMs: 20_000,
  agents: 3,
  natsNodes: 3,
  kinds: FAULT_KINDS,
  heartbeatSeconds: 2,
  ...extra,
});

Deno.test("chaos schedule: reproducible from the seed, within the window, never two NATS nodes down", () => {
  for (const seed of [1, 2, 3, 42, 1234]) {
    const options = nemesis(seed);
    const faults = planFaults(options);
    assertEquals(planFaults(options), faults, "same seed, same schedule");
    assert(faults.length > 60, `a 30-minute window holds many faults (${faults.length})`);
    assertEquals(scheduleProblems(faults, options), []);
    for (const kind of FAULT_KINDS) {
      assert(faults.some((f) => f.kind === kind), `seed ${seed} uses ${kind}`);
    }
  }
  assert(
    JSON.stringify(planFaults(nemesis(1))) !== JSON.stringify(planFaults(nemesis(2))),
    "seeds differ",
  );
});

Deno.test("chaos schedule: disabled kinds are never planned; the guard sees a broken schedule", () => {
  const options = nemesis(5, { kinds: ["nats-kill", "agent-kill"] });
  const faults = planFaults(options);
  assert(faults.every((f) => f.kind === "nats-kill" || f.kind === "agent-kill"));
  // Positive control of the guard: two overlapping NATS kills are reported.
  const broken = [
    { id: 1, kind: "nats-kill" as const, target: 0, atMs: 30_000, durationMs: 10_000 },
    { id: 2, kind: "nats-kill" as const, target: 1, atMs: 35_000, durationMs: 10_000 },
  ];
  assert(conflicts(broken[0]!, broken[1]!));
  assertEquals(scheduleProblems(broken, options), [
    "faults 1 (nats-kill) and 2 (nats-kill) conflict",
  ]);
  const late = [{ id: 1, kind: "agent-kill" as const, target: 0, atMs: 1_000, durationMs: 1e9 }];
  assertEquals(scheduleProblems(late, options), [
    "fault 1 starts in the warm-up",
    "fault 1 heals after the window",
  ]);
});

Deno.test("chaos workload: reproducible, valid manifests, every kind used, a known final state", () => {
  const ops = planWorkload({ seed: 9, windowMs: 30 * 60_000 });
  assertEquals(planWorkload({ seed: 9, windowMs: 30 * 60_000 }), ops);
  for (const kind of ["apply", "staged", "staged-failing", "undo", "delete"]) {
    assert(ops.some((o) => o.kind === kind), `uses ${kind}`);
  }
  // Every deployment is created first; steady is never touched again.
  assertEquals(
    ops.slice(0, DEPLOYMENTS.length).map((o) => o.deployment),
    DEPLOYMENTS.map((d) => d.name),
  );
  assertEquals(ops.filter((o) => o.deployment === "steady").length, 1);
  // Undo only when there is a revision to go back to; never on a deleted deployment.
  const exists = new Map<string, boolean>();
  for (const op of ops) {
    if (op.kind === "undo") assert(exists.get(op.deployment), `undo of a live ${op.deployment}`);
    exists.set(op.deployment, op.kind !== "delete");
  }
  // The settle step leaves one deployment deleted and the rest applied.
  const final = finalDeployments(ops);
  assertEquals(final.get("steady"), true);
  assertEquals([...final.values()].filter((x) => !x).length, 1);
  for (const op of ops) {
    if (op.kind === "delete" || op.kind === "undo") continue;
    const d = DEPLOYMENTS.find((x) => x.name === op.deployment)!;
    const parsed = DeploymentManifest.safeParse(manifestFor(d, op));
    assert(parsed.success, `manifest of op ${op.seq}: ${parsed.error?.message}`);
  }
});

Deno.test("chaos command line: defaults, a given seed, and errors that name the option", () => {
  const args = parseChaosArgs([], () => 77);
  assert(args !== "help");
  assertEquals(
    { minutes: args.minutes, seed: args.seed, devices: args.devices, agents: args.agents },
    { minutes: 30, seed: 77, devices: 20, agents: 3 },
  );
  assertEquals(args.results, true);
  const given = parseChaosArgs(
    ["--minutes", "2.5", "--seed", "27", "--without", "partition", "--no-results"],
    () => 1,
  );
  assert(given !== "help");
  assertEquals([given.minutes, given.seed, given.without, given.results], [
    2.5,
    27,
    ["partition"],
    false,
  ]);
  assertEquals(parseChaosArgs(["-h"], () => 1), "help");
  const error = (argv: string[]) => {
    try {
      parseChaosArgs(argv, () => 1);
    } catch (e) {
      return (e as Error).message;
    }
    return "no error";
  };
  assertEquals(error(["--seed", "x"]), '--seed must be a whole number ≥ 0, not "x"');
  assertEquals(error(["--agents", "0"]), '--agents must be a whole number ≥ 1, not "0"');
  assert(error(["--without", "meteor"]).includes('unknown fault kind "meteor"'));
  assert(error(["--minuets", "3"]).includes("minuets"), error(["--minuets", "3"]));
});
