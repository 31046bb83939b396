import { Coalescer } from "./coalesce.ts";
import { assert, assertEquals } from "../tests/support/assert.ts";

Deno.test("a burst of triggers runs at most one job at a time and ends with the latest", async () => {
  let state = 0;
  const seen: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  let release!: () => void;
  let gate = new Promise<void>((r) => (release = r));
  const firstStarted = Promise.withResolvers<void>();
  const c = new Coalescer(async () => {
    firstStarted.resolve();
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const snapshot = state;
    await gate;
    seen.push(snapshot);
    inFlight--;
  });
  state = 1;
  c.trigger();
  await firstStarted.promise; // the burst below arrives while the first run is in flight
  for (let i = 2; i <= 50; i++) {
    state = i;
    c.trigger();
  }
  release();
  gate = Promise.resolve();
  await c.flush();
  assertEquals(maxInFlight, 1);
  assertEquals(seen[0], 1);
  assertEquals(seen.at(-1), 50);
  assert(seen.length <= 3, `expected coalescing, got ${seen.length} runs`);
  await c.close();
});

Deno.test("a failing job is reported and later triggers still run", async () => {
  const errors: unknown[] = [];
  let runs = 0;
  const c = new Coalescer(() => {
    runs++;
    return runs === 1 ? Promise.reject(new Error("boom")) : Promise.resolve();
  }, { onError: (e) => errors.push(e) });
  c.trigger();
  await c.flush();
  c.trigger();
  await c.flush();
  assertEquals(runs, 2);
  assertEquals(errors.length, 1);
  await c.close();
});

Deno.test("close cancels a pending debounced run", async () => {
  let runs = 0;
  const c = new Coalescer(() => {
    runs++;
    return Promise.resolve();
  }, { debounceMs: 10_000 });
  c.trigger();
  await c.close();
  assertEquals(runs, 0);
});
