import { assert, assertEquals } from "../tests/support/assert.ts";
import { abortableSleep } from "./sleep.ts";

/** Resolves after `ms` on a plain timer: a reference point to order the sleep against. */
const timer = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

Deno.test("abortableSleep waits out its time when nothing aborts", async () => {
  const started = performance.now();
  let done = false;
  const sleeping = abortableSleep(200, new AbortController().signal).then(() => done = true);
  // Timers fire in the order of their deadlines: at 50 ms the 200 ms sleep is still pending.
  await timer(50);
  assert(!done, "a 200 ms sleep ended before a 50 ms timer");
  await sleeping;
  const elapsed = performance.now() - started;
  // The timer's own rounding may end it up to a millisecond early, never more.
  assert(elapsed >= 199, `a 200 ms sleep ended after ${elapsed.toFixed(1)} ms`);
});

Deno.test("abortableSleep without a signal is a plain sleep", async () => {
  const order: string[] = [];
  await Promise.all([
    abortableSleep(60).then(() => order.push("sleep 60")),
    timer(20).then(() => order.push("timer 20")),
    timer(120).then(() => order.push("timer 120")),
  ]);
  assertEquals(order, ["timer 20", "sleep 60", "timer 120"]);
});

Deno.test("abortableSleep ends as soon as its signal aborts", async () => {
  const ac = new AbortController();
  const order: string[] = [];
  const sleeping = abortableSleep(60_000, ac.signal).then(() => order.push("sleep ended"));
  await timer(10);
  order.push("abort");
  ac.abort();
  await sleeping;
  assertEquals(order, ["abort", "sleep ended"]);
  // The test's timer sanitizer fails it if the 60 s timer was left running.
});

Deno.test("abortableSleep on an already aborted signal returns at once", async () => {
  const started = performance.now();
  await abortableSleep(60_000, AbortSignal.abort());
  // Resolved without any timer (the sanitizer would see one); far below the time asked for.
  assert(performance.now() - started < 1_000);
});
