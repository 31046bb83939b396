import { assert, assertEquals } from "../tests/support/assert.ts";
import { Admission, LogThrottle, TokenBuckets } from "./admission.ts";

Deno.test("TokenBuckets: a burst, then the rate, per key", () => {
  const buckets = new TokenBuckets({ ratePerSecond: 2, burst: 3 });
  const taken = (key: string, at: number, n: number) =>
    Array.from({ length: n }, () => buckets.take(key, at)).filter(Boolean).length;
  assertEquals(taken("a", 0, 10), 3, "the burst");
  assertEquals(taken("b", 0, 10), 3, "another key has its own bucket");
  assertEquals(taken("a", 500, 10), 1, "half a second at 2/s: one more");
  assertEquals(taken("a", 10_000, 10), 3, "refilled up to the burst, not beyond");
});

Deno.test("TokenBuckets: memory stays bounded by maxKeys under many keys", () => {
  const buckets = new TokenBuckets({ ratePerSecond: 1, burst: 1 }, 100);
  for (let i = 0; i < 10_000; i++) buckets.take(`k${i}`, i);
  assert(buckets.size <= 100, `${buckets.size} keys tracked`);
  // Refilled buckets are forgotten first: a key seen long ago starts full again.
  assert(buckets.take("k0", 20_000));
});

Deno.test("Admission: the rate per key, then the cap on work in progress", () => {
  const admission = new Admission({ ratePerSecond: 1, burst: 2, maxInFlight: 2 });
  const a1 = admission.admit("a", 0);
  const b1 = admission.admit("b", 0);
  assert(a1.ok && b1.ok);
  assertEquals(admission.admit("c", 0), { ok: false, reason: "busy" });
  a1.release();
  a1.release(); // twice is once
  assertEquals(admission.inFlight, 1);
  const a2 = admission.admit("a", 0);
  assert(a2.ok);
  // "a" spent its burst: refused for its rate even with a free slot.
  a2.release();
  assertEquals(admission.admit("a", 0), { ok: false, reason: "rate" });
  assert(admission.admit("b", 0).ok, "positive control: b still has a token and a slot");
});

Deno.test("LogThrottle: one line per kind per interval, then the count held back", () => {
  const throttle = new LogThrottle(1_000);
  assertEquals(throttle.allow("x", 0), { suppressed: 0 });
  for (let t = 1; t < 1_000; t += 10) assertEquals(throttle.allow("x", t), undefined);
  assertEquals(throttle.allow("y", 5), { suppressed: 0 }, "another kind is not held back");
  assertEquals(throttle.allow("x", 1_000), { suppressed: 100 });
});

Deno.test("LogThrottle: linesPerSecond caps lines over all kinds; held-back kinds say so later", () => {
  const throttle = new LogThrottle(10_000, { linesPerSecond: 1 });
  // Burst of 2, then the global rate holds the other kinds back.
  assertEquals(throttle.allow("a", 0), { suppressed: 0 });
  assertEquals(throttle.allow("b", 0), { suppressed: 0 });
  assertEquals(throttle.allow("c", 0), undefined);
  assertEquals(throttle.allow("c", 100), undefined);
  // A second later a token is back: "c" logs at once (not an interval later), counting 2.
  assertEquals(throttle.allow("c", 1_000), { suppressed: 2 });
  assertEquals(throttle.allow("a", 1_000), undefined, "positive control: a's own interval");
});
