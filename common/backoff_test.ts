import { assertEquals } from "../tests/support/assert.ts";
import { Backoff, backoffDelay } from "./backoff.ts";

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

Deno.test("backoffDelay grows by the factor given", () => {
  const opts = { baseMs: 10, capMs: 1_000, factor: 3, jitter: 0 };
  assertEquals([0, 1, 2, 3, 4].map((n) => backoffDelay(n, opts)), [10, 30, 90, 270, 810]);
});

Deno.test("Backoff grows with each failure, is capped, and starts over after reset", () => {
  const backoff = new Backoff({ baseMs: 100, capMs: 500, jitter: 0.5 }, () => 0);
  assertEquals([backoff.next(), backoff.next(), backoff.next(), backoff.next()], [
    100,
    200,
    400,
    500,
  ]);
  assertEquals(backoff.attempt, 4);
  backoff.reset();
  assertEquals(backoff.attempt, 0);
  assertEquals(backoff.next(), 100);
});

Deno.test("Backoff applies the jitter from its random source", () => {
  const backoff = new Backoff({ baseMs: 1_000, capMs: 10_000, jitter: 0.5 }, () => 0.5);
  assertEquals([backoff.next(), backoff.next()], [750, 1_500]);
});
