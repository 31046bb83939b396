import { assertEquals } from "../../tests/support/assert.ts";
import { WorkQueue } from "./queue.ts";
import { ManualTimers } from "../../tests/support/manual_timers.ts";

Deno.test("WorkQueue hands out a dirty key once however often it is added", async () => {
  const q = new WorkQueue();
  for (let i = 0; i < 50; i++) q.add("a");
  q.add("b");
  assertEquals(q.length, 2);
  assertEquals(await q.get(), "a");
  assertEquals(await q.get(), "b");
  assertEquals(q.length, 0);
});

Deno.test("WorkQueue never hands out a key twice at once and requeues it after done", async () => {
  const q = new WorkQueue();
  q.add("a");
  const key = await q.get();
  assertEquals(key, "a");
  q.add("a"); // arrives while "a" is processed
  q.add("a");
  assertEquals(q.length, 0);
  q.add("b");
  assertEquals(await q.get(), "b");
  q.done("a");
  assertEquals(q.length, 1);
  assertEquals(await q.get(), "a");
  q.done("a");
  assertEquals(q.isBusy("a"), false);
});

Deno.test("WorkQueue wakes a waiting get and ends waiting gets on shutdown", async () => {
  const q = new WorkQueue();
  const waiting = q.get();
  q.add("x");
  assertEquals(await waiting, "x");
  const second = q.get();
  q.shutDown();
  assertEquals(await second, undefined);
  q.add("y");
  assertEquals(await q.get(), undefined);
});

Deno.test("WorkQueue addAfter delays by the timers, and the earlier of two delayed adds wins", async () => {
  const timers = new ManualTimers();
  const q = new WorkQueue({ timers });
  q.addAfter("late", 60_000);
  q.addAfter("late", 5); // earlier: replaces the pending one
  q.addAfter("early", 5);
  q.addAfter("early", 60_000); // later: ignored
  assertEquals(timers.pending(), [5, 5]);
  await timers.advance(4);
  assertEquals(q.length, 0);
  await timers.advance(1);
  assertEquals(q.length, 2);
  assertEquals([await q.get(), await q.get()], ["late", "early"]);
  assertEquals(timers.pending(), [], "no add left waiting a minute");
});

Deno.test("WorkQueue cancelDelayed drops a pending add; shutDown clears the timers", async () => {
  const timers = new ManualTimers();
  const q = new WorkQueue({ timers });
  q.addAfter("cancelled", 5);
  q.cancelDelayed("cancelled");
  await timers.advance(10);
  assertEquals(q.length, 0);
  q.addAfter("never", 60_000);
  q.shutDown();
  assertEquals(timers.pending(), []);
});

Deno.test("WorkQueue addRateLimited backs off per key; forget starts the count over", async () => {
  const timers = new ManualTimers();
  const q = new WorkQueue({ timers, backoff: { baseMs: 100, capMs: 350, jitter: 0 } });
  assertEquals([q.addRateLimited("a"), q.numRequeues("a")], [100, 1]);
  await timers.advance(100);
  assertEquals(await q.get(), "a");
  q.done("a");
  assertEquals([q.addRateLimited("a"), q.addRateLimited("b")], [200, 100]);
  await timers.advance(200);
  assertEquals([await q.get(), await q.get()], ["b", "a"]);
  q.done("a");
  q.done("b");
  assertEquals(q.addRateLimited("a"), 350, "capped");
  assertEquals(q.numRequeues("a"), 3);
  q.forget("a");
  assertEquals(q.numRequeues("a"), 0);
  assertEquals(q.numRequeues("b"), 1);
  q.cancelDelayed("a");
  assertEquals(q.addRateLimited("a"), 100, "back to the base delay");
  q.forgetAll();
  assertEquals([q.numRequeues("a"), q.numRequeues("b")], [0, 0]);
  q.shutDown();
});
