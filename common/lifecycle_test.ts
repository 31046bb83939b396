import { assertEquals, assertRejects } from "../tests/support/assert.ts";
import { Lifecycle, Listeners } from "./lifecycle.ts";
import { untilAborted } from "./sleep.ts";

Deno.test("Lifecycle starts parts in order and stops them in reverse, each run told to end", async () => {
  const seen: string[] = [];
  const life = new Lifecycle();
  for (const name of ["a", "b", "c"]) {
    life.add({
      name,
      start: () => void seen.push(`start ${name}`),
      run: async (signal) => {
        await untilAborted(signal);
        seen.push(`run ended ${name}`);
      },
      stop: () => void seen.push(`stop ${name}`),
    });
  }
  await life.start();
  assertEquals(seen, ["start a", "start b", "start c"]);
  assertEquals(life.signal.aborted, false);
  life.shutdown("because");
  await life.stopped();
  await life.stop();
  await life.stop(); // idempotent
  assertEquals(seen.slice(3), [
    "run ended c",
    "stop c",
    "run ended b",
    "stop b",
    "run ended a",
    "stop a",
  ]);
  assertEquals(life.signal.reason, "because");
});

Deno.test("Lifecycle: a part that does not stop in time is reported and the others still stop", async () => {
  const timedOut: string[] = [];
  const stopped: string[] = [];
  const life = new Lifecycle({ onStopTimeout: (name, ms) => timedOut.push(`${name} ${ms}`) });
  life.add({ name: "first", stop: () => void stopped.push("first") });
  const hang = Promise.withResolvers<void>();
  life.add({
    name: "stuck",
    run: () => hang.promise,
    stop: () => void stopped.push("stuck"),
    stopWithinMs: 20,
  });
  await life.start();
  await life.stop();
  assertEquals(timedOut, ["stuck 20"]);
  assertEquals(stopped, ["stuck", "first"]);
  hang.resolve();
});

Deno.test("Lifecycle: a failed start stops what started, skips the rest and rethrows", async () => {
  const seen: string[] = [];
  const errors: string[] = [];
  const life = new Lifecycle({ onStopError: (name) => errors.push(name) });
  life.add({ name: "a", stop: () => void seen.push("stop a") });
  life.add({
    name: "b",
    start: () => {
      throw new Error("no port");
    },
    stop: () => void seen.push("stop b"),
  });
  life.add({ name: "c", start: () => void seen.push("start c") });
  await assertRejects(() => life.start(), Error, "no port");
  assertEquals(seen, ["stop a"]);
  assertEquals(life.signal.aborted, true);
  assertEquals(errors, []);
});

Deno.test("Lifecycle: shutdown declared by a part (or a followed signal) ends the wait; a failing stop is reported", async () => {
  const outer = new AbortController();
  const errors: string[] = [];
  const life = new Lifecycle({ onStopError: (name) => errors.push(name) });
  life.follow(outer.signal);
  life.add({
    name: "broken",
    stop: () => Promise.reject(new Error("boom")),
  });
  await life.start();
  outer.abort("signal received");
  await life.stopped();
  assertEquals(life.signal.reason, "signal received");
  await life.stop();
  assertEquals(errors, ["broken"]);
});

Deno.test("Listeners: emit reaches listeners added so far, in order; removal works; none is fine", () => {
  const news = new Listeners<number>();
  news.emit(0); // nobody listens yet
  const seen: string[] = [];
  const remove = news.add((n) => seen.push(`a${n}`));
  news.add((n) => seen.push(`b${n}`));
  news.emit(1);
  remove();
  news.emit(2);
  assertEquals(seen, ["a1", "b1", "b2"]);
});

Deno.test("Lifecycle: parts added after a start start with the next start; stop takes them all, last first", async () => {
  const seen: string[] = [];
  const life = new Lifecycle();
  const part = (name: string) => ({
    name,
    start: () => void seen.push(`start ${name}`),
    stop: () => void seen.push(`stop ${name}`),
  });
  life.add(part("connection"));
  await life.start();
  life.add(part("controller"));
  life.add(part("server"));
  await life.start();
  await life.start(); // nothing new
  await life.stop();
  life.add(part("late"));
  await life.start(); // shutdown was declared: not started
  assertEquals(seen, [
    "start connection",
    "start controller",
    "start server",
    "stop server",
    "stop controller",
    "stop connection",
  ]);
});
