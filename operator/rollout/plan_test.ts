import { assert, assertEquals } from "../../tests/support/assert.ts";
import { type DeploymentManifest, DeploymentManifest as Manifest } from "@drover/contracts";
import type { KnownDevice } from "../desired/targeting.ts";
import {
  type DeviceProgress,
  fleetWanted,
  nextRolloutStep,
  planBatches,
  type RolloutInput,
} from "./plan.ts";
import type { RolloutState } from "./state.ts";

const DEVICES: KnownDevice[] = ["pi-e", "pi-a", "pi-d", "pi-c", "pi-b"].map((id) => ({
  id,
  labels: { site: id === "pi-d" ? "canary" : "lab" },
}));

function manifest(image: string, rollout?: unknown): DeploymentManifest {
  return Manifest.parse({
    name: "web",
    selector: { labels: {} },
    score: { type: "PodmanV0", services: [{ name: "web", image }] },
    ...(rollout === undefined ? {} : { rollout }),
  });
}

const ROLLOUT = {
  batches: [{ limit: 1, selector: { labels: { site: "canary" } } }, { limit: "40%" }],
  batch_timeout: "1m",
};

Deno.test("planBatches: canary by selector first, then device-id order, implicit rest", () => {
  const m = manifest("nginx:2", ROLLOUT);
  assertEquals(planBatches(m.rollout!, DEVICES), [
    ["pi-d"],
    ["pi-a", "pi-b"],
    ["pi-c", "pi-e"],
  ]);
  // 40% of 5 rounds up to 2; a count larger than what is left takes what is left.
  const big = manifest("nginx:2", { batches: [{ limit: 10 }] });
  assertEquals(planBatches(big.rollout!, DEVICES), [["pi-a", "pi-b", "pi-c", "pi-d", "pi-e"]]);
  const none = manifest("nginx:2", { batches: [{ limit: 1, selector: { devices: ["pi-x"] } }] });
  assertEquals(planBatches(none.rollout!, DEVICES)[0], []);
});

Deno.test("planBatches: a percentage that does not divide the fleet rounds up", () => {
  // 30 % of 5 is 1.5 and 50 % is 2.5: rounding down would make every batch smaller than asked.
  const uneven = manifest("nginx:2", { batches: [{ limit: "30%" }, { limit: "50%" }] });
  assertEquals(planBatches(uneven.rollout!, DEVICES), [
    ["pi-a", "pi-b"],
    ["pi-c", "pi-d", "pi-e"],
  ]);
  // Never an empty batch: 1 % of 5 is one device.
  const tiny = manifest("nginx:2", { batches: [{ limit: "1%" }] });
  assertEquals(planBatches(tiny.rollout!, DEVICES), [["pi-a"], ["pi-b", "pi-c", "pi-d", "pi-e"]]);
});

/**
 * Runs the rollout to its end against a simulated fleet: devices that were
 * given the new revision report `outcome(device)`. Returns every saved state.
 */
function simulate(
  m: DeploymentManifest,
  outcome: (device: string) => DeviceProgress,
  current?: RolloutState,
  startAt = 1_000_000,
): RolloutState[] {
  const saved: RolloutState[] = [];
  let state = current;
  let now = startAt;
  for (let i = 0; i < 50; i++) {
    const progress = new Map<string, DeviceProgress>();
    for (const d of state?.revision === 7 ? state.updated : []) progress.set(d, outcome(d));
    const input: RolloutInput = {
      manifest: m,
      revision: 7,
      current: state,
      previousRevision: 6,
      devices: DEVICES,
      progress,
      canRestore: (r) => r === 6,
      now,
    };
    const step = nextRolloutStep(input);
    if (step.kind === "wait") {
      if (step.wakeAt === undefined) return saved;
      now = step.wakeAt;
      continue;
    }
    saved.push(step.state);
    state = step.state;
    now += 100;
  }
  throw new Error("did not converge");
}

Deno.test("a good rollout moves through the batches in order and completes", () => {
  const states = simulate(manifest("nginx:2", ROLLOUT), () => ({ phase: "ready", message: "" }));
  assertEquals(
    states.map((s) => [s.state, s.batch, s.batch_devices]),
    [
      ["progressing", 0, ["pi-d"]],
      ["progressing", 1, ["pi-a", "pi-b"]],
      ["progressing", 2, ["pi-c", "pi-e"]],
      ["complete", 2, []],
    ],
  );
  const last = states.at(-1)!;
  assertEquals(last.updated, ["pi-a", "pi-b", "pi-c", "pi-d", "pi-e"]);
  assertEquals(last.stable_revision, 6);
});

Deno.test("a failing first batch rolls back without touching the others", () => {
  const states = simulate(
    manifest("nginx:bad", ROLLOUT),
    () => ({ phase: "failed", message: 'service "web" keeps exiting' }),
  );
  const last = states.at(-1)!;
  assertEquals(last.state, "rolled_back");
  assertEquals(last.updated, ["pi-d"]);
  assertEquals(last.failures, [
    { device: "pi-d", phase: "failed", message: 'service "web" keeps exiting' },
  ]);
  assert(last.message.includes("rolled back to revision 6"), last.message);
});

Deno.test("a batch that never gets ready fails at its timeout, naming the pending devices", () => {
  const states = simulate(
    manifest("nginx:slow", ROLLOUT),
    () => ({ phase: "pending", message: "pulling image" }),
  );
  const last = states.at(-1)!;
  assertEquals(last.state, "rolled_back");
  assertEquals(last.failures, [{ device: "pi-d", phase: "pending", message: "pulling image" }]);
  assert(last.message.includes("not within 1m"), last.message);
  assertEquals(
    Date.parse(last.updated_at) - Date.parse(states[0]?.batch_started_at ?? "no first state"),
    60_000,
    "fails exactly at the timeout",
  );
});

Deno.test("on_failure pause waits for a person; resume continues where it was", () => {
  const m = manifest("nginx:2", { ...ROLLOUT, on_failure: "pause" });
  let healthy = false;
  const outcome = (): DeviceProgress =>
    healthy ? { phase: "ready", message: "" } : { phase: "failed", message: "boom" };
  const paused = simulate(m, outcome).at(-1)!;
  assertEquals([paused.state, paused.paused_by, paused.batch], ["paused", "failure", 0]);
  // What `rollout resume` writes: progressing again, a fresh batch clock.
  healthy = true;
  const resumed: RolloutState = {
    ...paused,
    state: "progressing",
    paused_by: null,
    failures: [],
    batch_started_at: paused.updated_at,
  };
  const done = simulate(m, outcome, resumed, Date.parse(paused.updated_at)).at(-1)!;
  assertEquals(done.state, "complete");
});

Deno.test("min_ready: a batch must stay ready that long; a relapse restarts the wait", () => {
  const m = manifest("nginx:2", { batches: [{ limit: 1 }], min_ready: "10s" });
  const base: Omit<RolloutInput, "current" | "progress" | "now"> = {
    manifest: m,
    revision: 7,
    previousRevision: 6,
    devices: DEVICES,
    canRestore: () => true,
  };
  const ready = new Map([["pi-a", { phase: "ready", message: "" } as DeviceProgress]]);
  let step = nextRolloutStep({ ...base, current: undefined, progress: ready, now: 0 });
  assert(step.kind === "save");
  step = nextRolloutStep({ ...base, current: step.state, progress: ready, now: 1000 });
  assert(step.kind === "save" && step.state.batch_ready_at !== null);
  const settling = step.state;
  const early = nextRolloutStep({ ...base, current: settling, progress: ready, now: 5000 });
  assertEquals(early, { kind: "wait", wakeAt: 11_000 });
  const relapse = nextRolloutStep({
    ...base,
    current: settling,
    progress: new Map([["pi-a", { phase: "pending", message: "restarting" }]]),
    now: 6000,
  });
  assert(relapse.kind === "save" && relapse.state.batch_ready_at === null);
  const later = nextRolloutStep({ ...base, current: settling, progress: ready, now: 11_000 });
  assert(later.kind === "save" && later.state.batch === 1);
});

Deno.test("without a rollout section a revision is complete at once (plain fan-out)", () => {
  const m = manifest("nginx:2");
  const states = simulate(m, () => ({ phase: "ready", message: "" }));
  assertEquals(states.map((s) => s.state), ["complete"]);
  const { wanted, held } = fleetWanted({
    manifests: [m],
    revisions: new Map([["web", 7]]),
    devices: DEVICES,
    rollouts: new Map(),
    manifestAt: () => undefined,
    storedKeys: [],
  });
  assertEquals(wanted.size, 5);
  assertEquals(held.size, 0);
});

Deno.test("the next rollout's stable revision is the last good one", () => {
  const good = simulate(manifest("nginx:2", ROLLOUT), () => ({ phase: "ready", message: "" }))
    .at(-1)!;
  const next = nextRolloutStep({
    manifest: manifest("nginx:3", ROLLOUT),
    revision: 8,
    current: good,
    previousRevision: 7,
    devices: DEVICES,
    progress: new Map(),
    canRestore: () => true,
    now: 0,
  });
  assert(next.kind === "save");
  assertEquals(next.state.stable_revision, 7);
  const bad = { ...good, state: "rolled_back" as const, stable_revision: 5 };
  const after = nextRolloutStep({
    manifest: manifest("nginx:3", ROLLOUT),
    revision: 8,
    current: bad,
    previousRevision: 7,
    devices: DEVICES,
    progress: new Map(),
    canRestore: () => true,
    now: 0,
  });
  assert(after.kind === "save");
  assertEquals(after.state.stable_revision, 5, "a rolled-back revision is never stable");
});

Deno.test("fleetWanted: updated devices get the new revision, the others are held", () => {
  const next = manifest("nginx:2", ROLLOUT);
  const old = manifest("nginx:1", ROLLOUT);
  const stored = DEVICES.map((d) => `${d.id}.web`);
  const states = simulate(next, () => ({ phase: "failed", message: "x" }));
  const input = {
    manifests: [next],
    revisions: new Map([["web", 7]]),
    devices: DEVICES,
    manifestAt: (_: string, r: number) => (r === 6 ? old : undefined),
    storedKeys: stored,
  };
  const [first] = states;
  assert(first !== undefined, "the simulation produced no state");
  const progressing = fleetWanted({ ...input, rollouts: new Map([["web", first]]) });
  assertEquals([...progressing.wanted.keys()], ["pi-d.web"]);
  assertEquals(progressing.wanted.get("pi-d.web")?.deployment_revision, 7);
  assertEquals([...progressing.held].sort(), ["pi-a.web", "pi-b.web", "pi-c.web", "pi-e.web"]);

  const rolledBack = fleetWanted({ ...input, rollouts: new Map([["web", states.at(-1)!]]) });
  assertEquals(rolledBack.wanted.size, 5);
  for (const value of rolledBack.wanted.values()) {
    assertEquals(value.deployment_revision, 6);
    assertEquals(value.score.services[0]?.image, "nginx:1");
  }
  // Before the state names this revision nothing moves.
  const unstarted = fleetWanted({ ...input, rollouts: new Map() });
  assertEquals(unstarted.wanted.size, 0);
  assertEquals(unstarted.held.size, 5);
});

Deno.test("success_threshold below 100 %: a batch needs that share ready, rounded up", () => {
  // One batch of 3 (60 % of 5) and the rest; 50 % of 3 is 1.5, so 2 devices must be ready.
  const RELAXED = { batches: [{ limit: "60%" }], success_threshold: "50%", batch_timeout: "1m" };
  const oneReady = simulate(
    manifest("nginx:2", RELAXED),
    (d) =>
      d === "pi-a" ? { phase: "ready", message: "" } : { phase: "pending", message: "pulling" },
  );
  const last = oneReady.at(-1)!;
  assertEquals(last.state, "rolled_back");
  assert(last.message.includes("1/3 ready, 2 needed"), last.message);
  assertEquals(last.failures.map((f) => f.device), ["pi-b", "pi-c"]);

  // Two of three ready is enough, even with the third failed; the rest (2) needs one.
  const oneFailed = simulate(
    manifest("nginx:2", RELAXED),
    (d) => d === "pi-c" ? { phase: "failed", message: "exits" } : { phase: "ready", message: "" },
  );
  assertEquals(
    oneFailed.map((s) => [s.state, s.batch, s.batch_devices]),
    [
      ["progressing", 0, ["pi-a", "pi-b", "pi-c"]],
      ["progressing", 1, ["pi-d", "pi-e"]],
      ["complete", 1, []],
    ],
  );
});
