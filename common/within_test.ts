import { assertEquals, assertRejects } from "../tests/support/assert.ts";
import { TIMED_OUT, withinMs } from "./within.ts";

Deno.test("withinMs resolves with the value when the work settles in time", async () => {
  assertEquals(await withinMs(Promise.resolve("done"), 60_000), "done");
  // The 60 s timer was cleared: the test's timer sanitizer would fail otherwise.
});

Deno.test("withinMs resolves TIMED_OUT when the work is slower", async () => {
  const slow = Promise.withResolvers<string>();
  const started = performance.now();
  assertEquals(await withinMs(slow.promise, 50), TIMED_OUT);
  const elapsed = performance.now() - started;
  if (elapsed < 49) throw new Error(`timed out after ${elapsed.toFixed(1)} ms, not 50`);
  slow.resolve("late");
});

Deno.test("withinMs passes on the work's rejection", async () => {
  await assertRejects(
    () => withinMs(Promise.reject(new Error("refused")), 60_000),
    Error,
    "refused",
  );
});
