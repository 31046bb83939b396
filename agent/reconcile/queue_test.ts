import { assertEquals } from "../../tests/support/assert.ts";
import { WorkQueue } from "./queue.ts";

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

Deno.test("WorkQueue addAfter delays, keeps the earliest and can be cancelled", async () => {
  const q = new WorkQueue();
  q.addAfter("late", 60_000);
  q.addAfter("late", 5); // earlier wins
  q.addAfter("cancelled", 5);
  q.cancelDelayed("cancelled");
  assertEquals(await q.get(), "late");
  q.done("late");
  q.addAfter("never", 60_000);
  q.shutDown(); // clears the timer, so the test does not leak it
});
