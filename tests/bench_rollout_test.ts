import { assertEquals } from "./support/assert.ts";
import { batchesOf } from "../bench/rollout.ts";
import type { RolloutState } from "../operator/rollout/state.ts";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const iso = (ms: number) => new Date(T0 + ms).toISOString();

function state(batch: number, devices: string[], startMs: number, phase = "progressing") {
  return {
    deployment: "app",
    revision: 2,
    stable_revision: 1,
    state: phase,
    batch,
    batches: 2,
    batch_devices: devices,
    batch_started_at: iso(startMs),
    batch_ready_at: null,
    updated: [],
    failures: [],
    message: "",
    paused_by: null,
    started_at: iso(0),
    updated_at: iso(startMs),
  } as RolloutState;
}

Deno.test("bench rollout: per batch, start → last device running → next batch or complete", () => {
  const seen = [
    { at: T0 + 100, state: state(0, ["a"], 100) },
    { at: T0 + 900, state: state(0, ["a"], 100) }, // a later write of the same batch
    { at: T0 + 1500, state: state(1, ["b", "c"], 1500) },
    { at: T0 + 4000, state: state(1, ["b", "c"], 1500, "complete") },
  ];
  const running = new Map([["a", T0 + 300], ["b", T0 + 1700], ["c", T0 + 2500]]);
  const { batches, completeAt } = batchesOf(seen, running, T0);
  assertEquals(completeAt, T0 + 4000);
  assertEquals(batches, [
    { batch: 1, devices: 1, startedSeconds: 0.1, convergeSeconds: 0.2, gapSeconds: 1.2 },
    { batch: 2, devices: 2, startedSeconds: 1.5, convergeSeconds: 1, gapSeconds: 1.5 },
  ]);
});

Deno.test("bench rollout: a batch with a device that never ran has no convergence time", () => {
  const { batches, completeAt } = batchesOf(
    [{ at: T0, state: state(0, ["a", "b"], 0) }],
    new Map([["a", T0 + 200]]),
    T0,
  );
  assertEquals(completeAt, undefined);
  assertEquals(batches, [
    { batch: 1, devices: 2, startedSeconds: 0, convergeSeconds: null, gapSeconds: null },
  ]);
});
