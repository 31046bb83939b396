import { getLogger } from "@logtape/logtape";
import { assertEquals } from "../../tests/support/assert.ts";
import { ManualTimers } from "../../tests/support/manual_timers.ts";
import type { HealthReport } from "../runtime/runtime.ts";
import { type HealthRuntime, HealthScheduler } from "./health_scheduler.ts";

/** A runtime whose checks are scripted; records when each ran. */
class ScriptedRuntime implements HealthRuntime {
  runs: number[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** Verdict of each check in turn (the last one repeats). */
  verdicts: HealthReport["status"][] = ["healthy"];
  /** A check that never answers until aborted. */
  hang = false;
  constructor(readonly timers: ManualTimers) {}
  async runHealthcheck(_id: string, signal?: AbortSignal): Promise<HealthReport | undefined> {
    this.runs.push(this.timers.now());
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.hang) {
        await new Promise((_, reject) =>
          signal?.addEventListener("abort", () => reject(signal.reason), { once: true })
        );
      }
      const status = this.verdicts[Math.min(this.runs.length - 1, this.verdicts.length - 1)];
      if (status === undefined) throw new Error("the fake checker was given no verdicts");
      return { status, failingStreak: 0, lastEndedAtMs: this.timers.now() };
    } finally {
      this.inFlight--;
    }
  }
  inspectHealth(): Promise<HealthReport | undefined> {
    return Promise.resolve(undefined);
  }
}

const TARGET = {
  containerId: "c1",
  deployment: "shop",
  service: "web",
  intervalMs: 1000,
  timeoutMs: 500,
  startedAtMs: 0,
};

function setUp() {
  const timers = new ManualTimers();
  const runtime = new ScriptedRuntime(timers);
  const changes: string[] = [];
  const scheduler = new HealthScheduler({
    runtime,
    onChange: (d) => changes.push(d),
    log: getLogger(["drover", "test"]),
    timers,
    graceMs: 100,
  });
  return { timers, runtime, changes, scheduler };
}

Deno.test("HealthScheduler: checks on the interval, tells of verdict changes only", async () => {
  const { timers, runtime, changes, scheduler } = setUp();
  runtime.verdicts = ["starting", "starting", "healthy", "healthy", "unhealthy"];
  scheduler.sync("shop", [TARGET]);
  await timers.advance(999);
  assertEquals(runtime.runs, []);
  await timers.advance(4001);
  assertEquals(runtime.runs, [1000, 2000, 3000, 4000, 5000]);
  assertEquals(changes, ["shop", "shop", "shop"]); // starting, healthy, unhealthy
  assertEquals(scheduler.reports().get("c1")?.status, "unhealthy");
  assertEquals(runtime.maxInFlight, 1);
  await scheduler.stopAll();
});

Deno.test("HealthScheduler: a container no longer listed stops being checked", async () => {
  const { timers, runtime, scheduler } = setUp();
  scheduler.sync("shop", [TARGET]);
  await timers.advance(2000);
  assertEquals(runtime.runs.length, 2);
  scheduler.sync("shop", []);
  assertEquals(scheduler.containers(), []);
  await timers.advance(10_000);
  assertEquals(runtime.runs.length, 2);
  // Another deployment's sync leaves this one's containers alone.
  scheduler.sync("shop", [TARGET]);
  scheduler.sync("other", []);
  assertEquals(scheduler.containers(), ["c1"]);
  await scheduler.stopAll();
});

Deno.test("HealthScheduler: a hung check is given up after its timeout, never overlapped", async () => {
  const { timers, runtime, scheduler } = setUp();
  runtime.hang = true;
  scheduler.sync("shop", [TARGET]);
  await timers.advance(1000);
  assertEquals(runtime.runs, [1000]);
  assertEquals(runtime.inFlight, 1);
  // Timeout 500 ms + grace 100 ms: given up at 1600; the next waits two intervals.
  await timers.advance(600);
  assertEquals(runtime.inFlight, 0);
  await timers.advance(1999);
  assertEquals(runtime.runs, [1000]);
  await timers.advance(1);
  assertEquals(runtime.runs, [1000, 3600]);
  assertEquals(runtime.maxInFlight, 1);
  await scheduler.stopAll();
  assertEquals(runtime.inFlight, 0);
});
