import { connect } from "@nats-io/transport-node";
import { TIMED_OUT, withinMs } from "@drover/common";
import { startNats, waitFor } from "../../tests/support/mod.ts";
import { assert, assertEquals, assertRejects } from "../../tests/support/assert.ts";
import {
  BucketMirror,
  ensureBuckets,
  forEachBounded,
  isTransientNatsError,
  openBucket,
  readBucket,
  retryWhileRecovering,
} from "./kv.ts";

Deno.test("kv: buckets are created once, missing buckets read as absent", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    assertEquals(await openBucket(nc, "desired-state"), undefined);
    const first = await ensureBuckets(nc, { history: 3, replicas: 1 });
    assertEquals((await first.desired.status()).history, 3);
    assertEquals((await first.status.status()).history, 1);
    assertEquals((await first.devices.status()).history, 3);
    // A second call opens the existing buckets without changing them.
    const second = await ensureBuckets(nc, { history: 7, replicas: 1 });
    assertEquals((await second.desired.status()).history, 3);
  } finally {
    await nc.close();
  }
});

Deno.test("kv: readBucket returns live keys (empty bucket included), mirror follows changes", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const { deployments } = await ensureBuckets(nc);
    assertEquals((await readBucket(deployments)).size, 0);
    await deployments.put("a", "1");
    await deployments.put("b", "2");
    await deployments.put("a", "3");
    await deployments.delete("b");
    const snapshot = await readBucket(deployments);
    assertEquals([...snapshot.keys()], ["a"]);
    assertEquals(new TextDecoder().decode(snapshot.get("a")!.value), "3");

    const seen: string[] = [];
    const mirror = new BucketMirror(deployments, (e) => seen.push(`${e.operation}:${e.key}`));
    await mirror.ready;
    await deployments.put("c", "4");
    await waitFor(() => seen.includes("PUT:c"), { timeoutMs: 5000, message: "mirror sees c" });
    await mirror.stop();
    assertEquals(seen, ["PUT:a", "DEL:b", "PUT:c"]);
  } finally {
    await nc.close();
  }
});

Deno.test("forEachBounded: bounded concurrency, failures collected", async () => {
  let inFlight = 0;
  let peak = 0;
  const fourInFlight = Promise.withResolvers<void>();
  const failures = await forEachBounded(Array.from({ length: 50 }, (_, i) => i), 4, async (i) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    if (inFlight === 4) fourInFlight.resolve();
    // The first jobs hold their slots until four run at once: a fifth would show in `peak`,
    // a limit below four as a timeout here.
    if (await withinMs(fourInFlight.promise, 10_000) === TIMED_OUT) {
      throw new Error(`never four jobs at once (peak ${peak})`);
    }
    inFlight--;
    if (i % 10 === 0) throw new Error(`bad ${i}`);
  });
  assertEquals(peak, 4);
  assertEquals(failures.map((f) => f.item), [0, 10, 20, 30, 40]);
});

Deno.test("isTransientNatsError: timeouts and no-responders (also as causes) are, the rest is not", async () => {
  const { TimeoutError, NoRespondersError } = await import("@nats-io/transport-node");
  assert(isTransientNatsError(new TimeoutError()));
  assert(isTransientNatsError(new NoRespondersError("$JS.API.STREAM.INFO.x")));
  assert(isTransientNatsError(new Error("wrapped", { cause: new TimeoutError() })));
  assert(!isTransientNatsError(new Error("permissions violation")));
  assert(!isTransientNatsError(undefined));
});

Deno.test("retryWhileRecovering repeats a transient failure, never another one", async () => {
  const { TimeoutError } = await import("@nats-io/transport-node");
  let calls = 0;
  const value = await retryWhileRecovering(() => {
    calls++;
    if (calls < 3) return Promise.reject(new TimeoutError());
    return Promise.resolve("done");
  });
  assertEquals([value, calls], ["done", 3]);
  calls = 0;
  await assertRejects(
    () =>
      retryWhileRecovering(() => {
        calls++;
        return Promise.reject(new Error("bad request"));
      }),
    Error,
    "bad request",
  );
  assertEquals(calls, 1);
});
