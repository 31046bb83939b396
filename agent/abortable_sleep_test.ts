import { assert } from "../tests/support/assert.ts";
import { abortableSleep } from "./abortable_sleep.ts";

Deno.test("abortableSleep ends when its signal aborts, and at once if already aborted", async () => {
  const ac = new AbortController();
  const started = performance.now();
  const sleeping = abortableSleep(60_000, ac.signal);
  ac.abort();
  await sleeping;
  await abortableSleep(60_000, ac.signal);
  // Far below the 60 s asked for: the sleeps ended on the abort, not on their timers.
  assert(performance.now() - started < 30_000);
});

Deno.test("abortableSleep waits out its time when nothing aborts", async () => {
  let done = false;
  const sleeping = abortableSleep(20, new AbortController().signal).then(() => done = true);
  assert(!done);
  await sleeping;
  assert(done);
});
