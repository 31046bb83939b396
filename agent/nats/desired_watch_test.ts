import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { BUCKET_DESIRED_STATE } from "@drover/contracts";
import { startNats, waitFor } from "../../tests/support/mod.ts";
import { assert, assertEquals } from "../../tests/support/assert.ts";
import {
  ConsumerNames,
  DesiredWatcher,
  InitialSnapshot,
  interpretRecord,
  type KvRecord,
} from "./desired_watch.ts";
import type { DesiredEntry } from "../reconcile/desired.ts";

const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));

function desired(deployment: string, image = "busybox:1") {
  return {
    deployment,
    score: { type: "PodmanV0", services: [{ name: "main", image }] },
  };
}

/** Records what the watcher hands over, like the reconciler would see it. */
class RecordingSink {
  snapshots: Map<string, DesiredEntry>[] = [];
  view = new Map<string, DesiredEntry>();
  snapshot(entries: Map<string, DesiredEntry>) {
    this.snapshots.push(entries);
    this.view = new Map(entries);
  }
  update(deployment: string, entry: DesiredEntry | null) {
    if (entry === null) this.view.delete(deployment);
    else this.view.set(deployment, entry);
  }
  image(deployment: string): string | undefined {
    const e = this.view.get(deployment);
    return e?.kind === "valid" ? e.state.score.services[0].image : undefined;
  }
}

Deno.test("interpretRecord: valid, invalid JSON, schema error, name mismatch, delete, foreign key", () => {
  const rec = (key: string, value: unknown, operation: KvRecord["operation"] = "PUT") => ({
    key,
    revision: 5,
    operation,
    value: enc(value),
  });
  const ok = interpretRecord("pi-1", rec("pi-1.web", desired("web")));
  assert(ok.kind === "entry" && ok.entry.kind === "valid" && ok.entry.revision === 5);
  const badJson = interpretRecord("pi-1", rec("pi-1.web", "{nope"));
  assert(badJson.kind === "entry" && badJson.entry.kind === "invalid");
  assert(badJson.entry.kind === "invalid" && badJson.entry.error.startsWith("invalid JSON"));
  const badSchema = interpretRecord("pi-1", rec("pi-1.web", { deployment: "web", score: {} }));
  assert(badSchema.kind === "entry" && badSchema.entry.kind === "invalid");
  assert(badSchema.entry.kind === "invalid" && badSchema.entry.error.includes("score"));
  const mismatch = interpretRecord("pi-1", rec("pi-1.web", desired("db")));
  assert(mismatch.kind === "entry" && mismatch.entry.kind === "invalid");
  assert(mismatch.entry.kind === "invalid" && mismatch.entry.error.includes('"db"'));
  assertEquals(interpretRecord("pi-1", rec("pi-1.web", "", "DEL")), {
    kind: "deleted",
    deployment: "web",
  });
  assertEquals(interpretRecord("pi-1", rec("pi-2.web", desired("web"))).kind, "ignored");
  assertEquals(interpretRecord("pi-1", rec("pi-1.Web", desired("web"))).kind, "ignored");
});

Deno.test("InitialSnapshot completes on an empty start or when nothing is pending", () => {
  assert(new InitialSnapshot("pi-1", 0).complete);
  const s = new InitialSnapshot("pi-1", 2);
  s.add({ key: "pi-1.a", revision: 1, operation: "PUT", value: enc(desired("a")) }, 1);
  assert(!s.complete);
  s.add({ key: "pi-1.b", revision: 3, operation: "DEL", value: enc("") }, 0);
  assert(s.complete);
  assertEquals([...s.entries.keys()], ["a"]);
  assertEquals(s.lastRevision, 3);
});

Deno.test("watch: snapshot of existing keys (without deleted ones), then live updates", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const ac = new AbortController();
  try {
    const kv = await new Kvm(nc).create(BUCKET_DESIRED_STATE, { history: 5 });
    await kv.put("pi-1.web", enc(desired("web", "web:1")));
    await kv.put("pi-1.gone", enc(desired("gone")));
    await kv.delete("pi-1.gone");
    await kv.put("pi-1.bad", "{not json");
    await kv.put("pi-2.other", enc(desired("other")));

    const sink = new RecordingSink();
    const watcher = new DesiredWatcher(nc, "pi-1", sink);
    const running = watcher.run(ac.signal);
    await waitFor(() => sink.snapshots.length === 1, { timeoutMs: 10_000, message: "snapshot" });
    assertEquals([...sink.snapshots[0].keys()].sort(), ["bad", "web"]);
    assertEquals(sink.snapshots[0].get("bad")?.kind, "invalid");

    await kv.put("pi-1.web", enc(desired("web", "web:2")));
    await kv.put("pi-2.web", enc(desired("web", "other-device")));
    await waitFor(() => sink.image("web") === "web:2", { timeoutMs: 10_000, message: "update" });
    await kv.delete("pi-1.bad");
    await waitFor(() => !sink.view.has("bad"), { timeoutMs: 10_000, message: "delete" });
    await kv.purge("pi-1.web");
    await waitFor(() => !sink.view.has("web"), { timeoutMs: 10_000, message: "purge" });
    assertEquals(sink.snapshots.length, 1);
    ac.abort();
    await running;
  } finally {
    ac.abort();
    await nc.close();
  }
});

Deno.test("watch: an empty bucket still yields an (empty) authoritative snapshot", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const ac = new AbortController();
  try {
    const kv = await new Kvm(nc).create(BUCKET_DESIRED_STATE);
    await kv.put("pi-2.web", enc(desired("web")));
    const sink = new RecordingSink();
    const running = new DesiredWatcher(nc, "pi-1", sink).run(ac.signal);
    await waitFor(() => sink.snapshots.length === 1, { timeoutMs: 10_000, message: "snapshot" });
    assertEquals(sink.snapshots[0].size, 0);
    ac.abort();
    await running;
  } finally {
    ac.abort();
    await nc.close();
  }
});

Deno.test("watch: a missing bucket is retried until it exists; restart gives a fresh snapshot", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const ac = new AbortController();
  try {
    const sink = new RecordingSink();
    const failures: unknown[] = [];
    const watcher = new DesiredWatcher(nc, "pi-1", sink, {
      onWatchFailed: (e) => failures.push(e),
    });
    const running = watcher.run(ac.signal);
    await waitFor(() => failures.length > 0, { timeoutMs: 10_000, message: "first failure" });
    assert(
      String((failures[0] as Error).message).includes("stream not found"),
      String(failures[0]),
    );
    const kv = await new Kvm(nc).create(BUCKET_DESIRED_STATE);
    await kv.put("pi-1.web", enc(desired("web", "web:1")));
    await waitFor(() => sink.image("web") === "web:1", { timeoutMs: 20_000, message: "recovers" });
    const before = sink.snapshots.length;
    // A change made "while disconnected" is part of the fresh snapshot after restart.
    await kv.delete("pi-1.web");
    watcher.restart();
    await waitFor(() => sink.snapshots.length > before, { timeoutMs: 10_000, message: "re-snap" });
    assertEquals(sink.snapshots.at(-1)!.size, 0);
    ac.abort();
    await running;
  } finally {
    ac.abort();
    await nc.close();
  }
});

Deno.test("ConsumerNames: names by serial, recognises its own, hands each name out for deletion once", () => {
  const names = new ConsumerNames("pi-1", "abc");
  assertEquals(names.name(1), "drover_pi-1_abc_1");
  assertEquals(names.serialOf("drover_pi-1_abc_12"), 12);
  assertEquals(names.serialOf("drover_pi-1_abd_12"), undefined);
  assertEquals(names.serialOf("drover_pi-1_abc_x"), undefined);
  // A reset to serial 3: serials 1 and 2 (a failed attempt) go.
  assertEquals(names.takeBefore(3), ["drover_pi-1_abc_1", "drover_pi-1_abc_2"]);
  assertEquals(names.takeBefore(3), []);
  // End of the watch on serial 4.
  assertEquals(names.takeBefore(5), ["drover_pi-1_abc_3", "drover_pi-1_abc_4"]);
});

Deno.test("watch: restarts replace the consumer instead of adding one; stopping deletes it", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const ac = new AbortController();
  try {
    const kv = await new Kvm(nc).create(BUCKET_DESIRED_STATE);
    const jsm = await jetstreamManager(nc);
    const consumerNames = async () => {
      const out: string[] = [];
      for await (const c of jsm.consumers.list(`KV_${BUCKET_DESIRED_STATE}`)) out.push(c.name);
      return out;
    };
    await kv.put("pi-1.web", enc(desired("web", "web:1")));
    const sink = new RecordingSink();
    const watcher = new DesiredWatcher(nc, "pi-1", sink);
    const running = watcher.run(ac.signal);
    await waitFor(() => sink.snapshots.length === 1, { timeoutMs: 10_000, message: "snapshot" });
    const first = await consumerNames();
    assertEquals(first.length, 1);
    assert(first[0].startsWith("drover_pi-1_"), first[0]);
    for (let i = 2; i <= 4; i++) {
      watcher.restart();
      await waitFor(() => sink.snapshots.length === i, { timeoutMs: 10_000, message: `snap ${i}` });
    }
    await waitFor(async () => (await consumerNames()).length === 1, {
      timeoutMs: 10_000,
      message: "exactly one consumer after restarts",
    });
    assert(!(await consumerNames()).includes(first[0]), "the first consumer was replaced");
    await kv.put("pi-1.web", enc(desired("web", "web:2")));
    await waitFor(() => sink.image("web") === "web:2", { timeoutMs: 10_000, message: "update" });
    ac.abort();
    await running;
    assertEquals(await consumerNames(), []);
  } finally {
    ac.abort();
    await nc.close();
  }
});
