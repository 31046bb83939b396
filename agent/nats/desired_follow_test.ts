import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { BUCKET_DESIRED_STATE, DESIRED_SNAPSHOT_PREFIX } from "@drover/contracts";
import { waitFor } from "../../tests/support/mod.ts";
import {
  connectAdmin,
  connectDevice,
  startDroverNats,
  startSnapshotService,
} from "../../tests/support/drover_nats.ts";
import { assert, assertEquals } from "../../tests/support/assert.ts";
import { confirms, DesiredFollower, planSnapshot } from "./desired_follow.ts";
import { interpretRecord, type KvRecord } from "./desired_record.ts";
import type { DesiredEntry } from "../reconcile/desired.ts";

const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));

function desired(deployment: string, image = "busybox:1") {
  return {
    deployment,
    score: { type: "PodmanV0", services: [{ name: "main", image }] },
  };
}

/**
 * A nats-server for `devices`, the operator's connection and the desired-state bucket; disposal
 * stops the follower (`ac`), closes the devices' connections, then the operator's and the server.
 */
async function followEnv(devices: string[]) {
  const nats = await startDroverNats(devices);
  const connected: NatsConnection[] = [];
  const ac = new AbortController();
  const dispose = async () => {
    ac.abort();
    for (const nc of connected) await nc.close();
    await nats[Symbol.asyncDispose]();
  };
  try {
    const admin = await connectAdmin(nats.url);
    connected.push(admin);
    const kv = await new Kvm(admin).create(BUCKET_DESIRED_STATE, { history: 5 });
    return {
      admin,
      kv,
      ac,
      device: async (id: string) => {
        const nc = await connectDevice(nats.url, id);
        connected.unshift(nc);
        return nc;
      },
      [Symbol.asyncDispose]: dispose,
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}

/** Records what the follower hands over, like the reconciler would see it. */
class RecordingSink {
  snapshots: Map<string, DesiredEntry>[] = [];
  updates: [string, DesiredEntry | null][] = [];
  view = new Map<string, DesiredEntry>();
  snapshot(entries: Map<string, DesiredEntry>) {
    this.snapshots.push(entries);
    this.view = new Map(entries);
  }
  update(deployment: string, entry: DesiredEntry | null) {
    this.updates.push([deployment, entry]);
    if (entry === null) this.view.delete(deployment);
    else this.view.set(deployment, entry);
  }
  image(deployment: string): string | undefined {
    const e = this.view.get(deployment);
    return e?.kind === "valid" ? e.state.score.services[0]?.image : undefined;
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

Deno.test("planSnapshot: fetch new and newer keys, remove only what the listing is new enough to cover", () => {
  const held = new Map([["web", 5], ["db", 9], ["late", 30]]);
  const deleted = new Map([["old", 4], ["gone-late", 40]]);
  const listing = new Map([["web", 7], ["db", 9], ["new", 12], ["old", 3]]);
  assertEquals(planSnapshot(held, deleted, listing, 20), {
    // web moved on, new is new; db is current; old's listing is older than its deletion.
    fetch: ["web", "new"],
    // late (30) is newer than the listing (20): it may just not have reached the operator.
    removed: [],
    forget: [],
  });
  assertEquals(planSnapshot(held, deleted, new Map(), 35), {
    fetch: [],
    removed: ["web", "db", "late"],
    forget: ["old"],
  });
  // Feeding the result back converges: nothing more to do.
  assertEquals(planSnapshot(new Map([["web", 7]]), new Map(), new Map([["web", 7]]), 35), {
    fetch: [],
    removed: [],
    forget: [],
  });
});

Deno.test("confirms: the stored record must match what a live message announced", () => {
  const rec = (value: string, operation: KvRecord["operation"] = "PUT"): KvRecord => ({
    key: "pi-1.web",
    revision: 1,
    operation,
    value: enc(value),
  });
  assert(confirms(rec("a"), rec("a")));
  assert(!confirms(rec("a"), rec("b")));
  assert(!confirms(rec("a"), rec("ab")));
  assert(!confirms(rec("", "DEL"), rec("")));
  assert(confirms(null, rec("", "DEL")));
  assert(!confirms(null, rec("a")));
});

Deno.test("follow: snapshot of existing keys, live puts/overwrites/deletes, another device's keys never seen", async () => {
  await using env = await followEnv(["pi-1", "pi-2"]);
  const { admin, kv, ac } = env;
  const device = await env.device("pi-1");
  await kv.put("pi-1.web", enc(desired("web", "web:1")));
  await kv.put("pi-1.gone", enc(desired("gone")));
  await kv.delete("pi-1.gone");
  await kv.put("pi-2.web", enc(desired("web", "theirs")));
  await using _snapshots = await startSnapshotService(admin);

  const sink = new RecordingSink();
  const follower = new DesiredFollower(device, "pi-1", sink);
  const running = follower.run(ac.signal);
  await waitFor(() => sink.snapshots.length === 1, { timeoutMs: 15_000, message: "snapshot" });
  assertEquals([...(sink.snapshots[0]?.keys() ?? [])], ["web"]);
  assertEquals(sink.image("web"), "web:1");

  await kv.put("pi-1.web", enc(desired("web", "web:2")));
  await kv.put("pi-1.db", enc(desired("db", "db:1")));
  await kv.put("pi-2.db", enc(desired("db", "theirs")));
  await waitFor(() => sink.image("web") === "web:2" && sink.image("db") === "db:1", {
    timeoutMs: 10_000,
    message: "live updates",
  });
  await kv.delete("pi-1.db");
  await waitFor(() => !sink.view.has("db"), { timeoutMs: 10_000, message: "live delete" });
  // A burst of overwrites ends at the last value.
  for (let i = 3; i <= 20; i++) await kv.put("pi-1.web", enc(desired("web", `web:${i}`)));
  await waitFor(() => sink.image("web") === "web:20", { timeoutMs: 10_000, message: "burst" });
  assertEquals(sink.snapshots.length, 1, "live changes arrive as updates, not snapshots");
  assert(sink.updates.every(([d]) => d === "web" || d === "db"), "only its own keys");
  ac.abort();
  await running;
});

Deno.test("follow: an announcement forged by another device changes nothing", async () => {
  await using env = await followEnv(["pi-1", "pi-2"]);
  const { admin, kv, ac } = env;
  const victim = await env.device("pi-1");
  const attacker = await env.device("pi-2");
  await kv.put("pi-1.web", enc(desired("web", "web:1")));
  await kv.put("pi-2.evil", enc(desired("evil", "attacker:1")));
  await using _snapshots = await startSnapshotService(admin);
  const sink = new RecordingSink();
  const running = new DesiredFollower(victim, "pi-1", sink).run(ac.signal);
  await waitFor(() => sink.snapshots.length === 1, { timeoutMs: 15_000, message: "snapshot" });

  // pi-2 reads its own key and aims the answer at pi-1's change subjects: the
  // server delivers it there (replies are not permission-checked), so pi-1
  // sees a "change" carrying pi-2's desired state.
  for (const target of ["pi-1.evil", "pi-1.web"]) {
    attacker.publish(
      "$JS.API.DIRECT.GET.KV_desired-state.$KV.desired-state.pi-2.evil",
      new Uint8Array(),
      { reply: `$KV.desired-state.${target}` },
    );
  }
  await attacker.flush();
  // Positive control, after the forgeries: a real change still arrives.
  await kv.put("pi-1.web", enc(desired("web", "web:2")));
  await waitFor(() => sink.image("web") === "web:2", { timeoutMs: 15_000, message: "real" });
  assertEquals([...sink.view.keys()], ["web"], "the forged deployment was not taken");
  ac.abort();
  await running;
});

Deno.test("follow: a flood of forged hints for keys not held costs a few snapshots, no queue", async () => {
  await using env = await followEnv(["pi-1", "pi-2"]);
  const { admin, kv, ac } = env;
  const victim = await env.device("pi-1");
  const attacker = await env.device("pi-2");
  await kv.put("pi-1.web", enc(desired("web", "web:1")));
  await kv.put("pi-2.evil", enc(desired("evil", "attacker:1")));
  await using snapshots = await startSnapshotService(admin);
  const sink = new RecordingSink();
  const running = new DesiredFollower(victim, "pi-1", sink).run(ac.signal);
  await waitFor(() => sink.snapshots.length === 1, { timeoutMs: 15_000, message: "snapshot" });
  const answeredBefore = snapshots.answered;

  // 20 000 answers aimed at as many keys pi-1 does not hold, in bounded batches.
  const forged = 20_000;
  for (let i = 0; i < forged; i++) {
    attacker.publish(
      "$JS.API.DIRECT.GET.KV_desired-state.$KV.desired-state.pi-2.evil",
      new Uint8Array(),
      { reply: `$KV.desired-state.pi-1.forged-${i}` },
    );
    if (i % 1_000 === 999) await attacker.flush();
  }
  await attacker.flush();
  // Positive control: real changes, of a held key and of a new one, still land.
  await kv.put("pi-1.web", enc(desired("web", "web:2")));
  await kv.put("pi-1.db", enc(desired("db", "db:1")));
  await waitFor(() => sink.image("web") === "web:2" && sink.image("db") === "db:1", {
    timeoutMs: 15_000,
    message: "the real changes land after the flood",
  });
  const snapshotsTaken = snapshots.answered - answeredBefore;
  // One per debounce while hints keep coming, not one per hint.
  assert(snapshotsTaken >= 1, "a hint for a key not held asks for a snapshot");
  assert(snapshotsTaken < 200, `${snapshotsTaken} snapshots for ${forged} forged hints`);
  assertEquals([...sink.view.keys()].sort(), ["db", "web"], "no forged deployment taken");
  ac.abort();
  await running;
});

Deno.test("follow: without an operator it keeps retrying; restart gives a fresh snapshot with what changed offline", async () => {
  await using env = await followEnv(["pi-1"]);
  const { admin, kv, ac } = env;
  const device = await env.device("pi-1");
  await kv.put("pi-1.web", enc(desired("web", "web:1")));
  const sink = new RecordingSink();
  const failures: unknown[] = [];
  const follower = new DesiredFollower(device, "pi-1", sink, {
    onSnapshotFailed: (e) => failures.push(e),
  }, { requestTimeoutMs: 1_000 });
  const running = follower.run(ac.signal);
  await waitFor(() => failures.length >= 1, { timeoutMs: 10_000, message: "a failure" });
  assertEquals(sink.snapshots.length, 0, "no snapshot without an answer");

  const snapshots = await startSnapshotService(admin);
  await waitFor(() => sink.snapshots.length === 1, { timeoutMs: 20_000, message: "snapshot" });
  assertEquals(sink.image("web"), "web:1");

  // While the "connection" was away: web deleted, db added. A restart catches up.
  await snapshots[Symbol.asyncDispose]();
  await kv.delete("pi-1.web");
  await kv.put("pi-1.db", enc(desired("db", "db:1")));
  await using _again = await startSnapshotService(admin);
  follower.restart();
  await waitFor(() => sink.snapshots.length === 2, { timeoutMs: 20_000, message: "resnapshot" });
  assertEquals([...(sink.snapshots[1]?.keys() ?? [])], ["db"]);
  ac.abort();
  await running;
});

Deno.test("follow: a key the first listing lags behind (stored before the subscription, no hint) arrives with the settling snapshot", async () => {
  await using env = await followEnv(["pi-1"]);
  const { admin, kv, ac } = env;
  const device = await env.device("pi-1");
  const web = await kv.put("pi-1.web", enc(desired("web", "web:1")));
  // An operator whose index has not caught up yet: the first listing lacks the key.
  let asked = 0;
  const responder = admin.subscribe(`${DESIRED_SNAPSHOT_PREFIX}.pi-1`, {
    callback: (_e, msg) => {
      asked++;
      const deployments = asked === 1 ? {} : { web };
      msg.respond(enc({ device: "pi-1", as_of_revision: asked === 1 ? 0 : web, deployments }));
    },
  });
  await admin.flush();
  const sink = new RecordingSink();
  // The periodic resync is far away: only the settling snapshot can bring the key.
  const follower = new DesiredFollower(device, "pi-1", sink, {}, { resyncMs: 600_000 });
  const running = follower.run(ac.signal);
  await waitFor(() => sink.snapshots.length === 1, { timeoutMs: 10_000, message: "snapshot" });
  assertEquals(sink.snapshots[0]?.size, 0, "the lagging listing is delivered as it is");
  await waitFor(() => sink.image("web") === "web:1", {
    timeoutMs: 10_000,
    message: "the key from the settling snapshot",
  });
  assertEquals(asked, 2);
  assertEquals(sink.snapshots.length, 1, "the second listing passes on what changed only");
  responder.unsubscribe();
  ac.abort();
  await running;
});

Deno.test("follow: a held key whose read fails is read again after a backoff, not at the next snapshot", async () => {
  await using env = await followEnv(["pi-1"]);
  const { admin, kv, ac } = env;
  const device = await env.device("pi-1");
  await kv.put("pi-1.web", enc(desired("web", "web:1")));
  await using _snapshots = await startSnapshotService(admin);
  const sink = new RecordingSink();
  const failures: number[] = [];
  // The resync is far away: only the retry can bring the change.
  const follower = new DesiredFollower(device, "pi-1", sink, {
    onFetchFailed: (_deployment, _error, retryInMs) => failures.push(retryInMs),
  }, { resyncMs: 3_600_000 });
  const running = follower.run(ac.signal);
  await waitFor(() => sink.image("web") === "web:1", { timeoutMs: 15_000, message: "snapshot" });

  // Direct gets switched off: the read after the hint fails at once (no responders).
  const jsm = await jetstreamManager(admin);
  const stream = `KV_${BUCKET_DESIRED_STATE}`;
  const config = (await jsm.streams.info(stream)).config;
  await jsm.streams.update(stream, { ...config, allow_direct: false });
  await kv.put("pi-1.web", enc(desired("web", "web:2")));
  await waitFor(() => failures.length >= 1, { timeoutMs: 10_000, message: "a failed read" });
  assertEquals(sink.image("web"), "web:1", "nothing applied while the key cannot be read");
  assert(failures.every((ms) => ms > 0 && ms <= 10_000), `backoff delays: ${failures}`);

  await jsm.streams.update(stream, { ...config, allow_direct: true });
  await waitFor(() => sink.image("web") === "web:2", {
    timeoutMs: 15_000,
    message: "the change read again after the failure",
  });
  assertEquals(sink.snapshots.length, 1, "brought by the retry, not by a snapshot");
  ac.abort();
  await running;
});

Deno.test("follow: a new key the listing lags behind is read anyway when a hint named it", async () => {
  await using env = await followEnv(["pi-1"]);
  const { admin, kv, ac } = env;
  const device = await env.device("pi-1");
  const web = await kv.put("pi-1.web", enc(desired("web", "web:1")));
  // An operator busy writing thousands of keys: its listing stays at `web` alone.
  let asked = 0;
  const responder = admin.subscribe(`${DESIRED_SNAPSHOT_PREFIX}.pi-1`, {
    callback: (_e, msg) => {
      asked++;
      msg.respond(enc({ device: "pi-1", as_of_revision: web, deployments: { web } }));
    },
  });
  await admin.flush();
  const sink = new RecordingSink();
  // The periodic resync is far away: only the hinted read can bring the new key.
  const follower = new DesiredFollower(device, "pi-1", sink, {}, { resyncMs: 600_000 });
  const running = follower.run(ac.signal);
  await waitFor(() => sink.image("web") === "web:1", { timeoutMs: 10_000, message: "snapshot" });
  // Past the settling snapshot, so the next listing is the hint's.
  await waitFor(() => asked >= 2, { timeoutMs: 10_000, message: "settling snapshot" });
  await kv.put("pi-1.db", enc(desired("db", "db:1")));
  await waitFor(() => sink.image("db") === "db:1", {
    timeoutMs: 10_000,
    message: "the hinted key read although the listing lacks it",
  });
  assert(asked >= 3, "the hint asked for a snapshot first");
  assertEquals([...sink.view.keys()].sort(), ["db", "web"]);
  assertEquals(sink.snapshots.length, 1, "brought as an update, not a snapshot");
  responder.unsubscribe();
  ac.abort();
  await running;
});
