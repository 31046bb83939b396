import { assertEquals } from "../../tests/support/assert.ts";
import { backoffDelay, DEFAULT_BACKOFF } from "./backoff.ts";

Deno.test("backoffDelay doubles from the base and stops at the cap", () => {
  const opts = { baseMs: 100, capMs: 1_000, jitter: 0 };
  const delays = [0, 1, 2, 3, 4, 5, 50, 5000].map((n) => backoffDelay(n, opts));
  assertEquals(delays, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
});

Deno.test("backoffDelay jitter shrinks the delay by at most the jitter fraction", () => {
  const opts = { baseMs: 1_000, capMs: 10_000, jitter: 0.5 };
  assertEquals(backoffDelay(0, opts, () => 0), 1_000);
  assertEquals(backoffDelay(0, opts, () => 0.5), 750);
  assertEquals(backoffDelay(0, opts, () => 0.999999), 500);
  assertEquals(backoffDelay(10, opts, () => 1), 5_000);
});

Deno.test("backoffDelay tolerates odd inputs", () => {
  const opts = { baseMs: 10, capMs: 100, jitter: 7 };
  // jitter is clamped to 1, negative attempts count as the first.
  assertEquals(backoffDelay(-3, opts, () => 0), 10);
  assertEquals(backoffDelay(2.7, opts, () => 0), 40);
  assertEquals(backoffDelay(1e9, opts, () => 0), 100);
  assertEquals(backoffDelay(0, opts, () => 5), 0);
});

Deno.test("default backoff starts at a second and caps at two minutes", () => {
  assertEquals(backoffDelay(0, DEFAULT_BACKOFF, () => 0), 1_000);
  assertEquals(backoffDelay(30, DEFAULT_BACKOFF, () => 0), 120_000);
});
