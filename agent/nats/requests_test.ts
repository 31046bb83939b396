import { assertEquals } from "../../tests/support/assert.ts";
import { ManualTimers } from "../../tests/support/manual_timers.ts";
import { STALL_LATENESS_MS, STALL_MAX_FACTOR, stallAwareTimeout } from "./requests.ts";

/** Runs a stall-aware timeout of `ms` on manual timers; `expired` says whether it has. */
function timeoutOn(ms: number) {
  const timers = new ManualTimers();
  let expired = false;
  const t = stallAwareTimeout(ms, timers);
  void t.expired.then(() => expired = true);
  return { timers, cancel: t.cancel, expired: () => expired };
}

Deno.test("stallAwareTimeout: a process that keeps running expires after ms", async () => {
  const t = timeoutOn(1_000);
  await t.timers.advance(999);
  assertEquals(t.expired(), false);
  await t.timers.advance(1);
  assertEquals(t.expired(), true);
});

Deno.test("stallAwareTimeout: late by no more than the allowance still expires", async () => {
  const t = timeoutOn(1_000);
  t.timers.stall(1_000 + STALL_LATENESS_MS);
  await t.timers.advance(0);
  assertEquals(t.expired(), true);
});

Deno.test("stallAwareTimeout: after a stall past the deadline it waits again before expiring", async () => {
  const t = timeoutOn(1_000);
  await t.timers.advance(100);
  // The process does not run from 100 ms to 3 s: an answer that came meanwhile is unread.
  t.timers.stall(2_900);
  await t.timers.advance(0);
  assertEquals(t.expired(), false, "a stall is not the server's silence");
  assertEquals(t.timers.pending(), [1_000], "waits as long again as it was late, at most ms");
  await t.timers.advance(1_000);
  assertEquals(t.expired(), true, "on time now: expired");
});

Deno.test("stallAwareTimeout: stalled again and again, it gives up after ms × STALL_MAX_FACTOR", async () => {
  const t = timeoutOn(1_000);
  let rounds = 0;
  while (!t.expired() && rounds++ < 20) {
    t.timers.stall((t.timers.pending()[0] ?? 0) + 900);
    await t.timers.advance(0);
  }
  assertEquals(t.expired(), true);
  assertEquals(t.timers.now() <= 1_000 * STALL_MAX_FACTOR + 900, true, `at ${t.timers.now()}`);
});

Deno.test("stallAwareTimeout: cancel leaves no timer", () => {
  const t = timeoutOn(1_000);
  t.cancel();
  assertEquals(t.timers.pending(), []);
});
