import { Kvm } from "@nats-io/kv";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import {
  AgentStatus,
  BUCKET_AGENT_STATUS,
  BUCKET_DESIRED_STATE,
  type NatsConfig,
} from "@drover/contracts";
import { freePort, waitFor } from "../../tests/support/mod.ts";
import {
  connectAdmin,
  DEVICE_PASSWORD,
  startDroverNats,
  startSnapshotService,
} from "../../tests/support/drover_nats.ts";
import { assert, assertEquals } from "../../tests/support/assert.ts";
import { NatsSession } from "./session.ts";
import type { DesiredEntry } from "../reconcile/desired.ts";
import type { StatusStore } from "../status.ts";
import { LOG_CATEGORY, logger } from "../log.ts";

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const desired = (deployment: string, image: string) => ({
  deployment,
  score: { type: "PodmanV0", services: [{ name: "main", image }] },
});

class Sink {
  snapshots = 0;
  view = new Map<string, DesiredEntry>();
  snapshot(entries: Map<string, DesiredEntry>) {
    this.snapshots++;
    this.view = new Map(entries);
  }
  update(deployment: string, entry: DesiredEntry | null) {
    if (entry === null) this.view.delete(deployment);
    else this.view.set(deployment, entry);
  }
  image(deployment: string) {
    const e = this.view.get(deployment);
    return e?.kind === "valid" ? e.state.score.services[0]?.image : undefined;
  }
}

Deno.test("in the devices' account: starts before the server exists, follows, publishes, survives a restart", async () => {
  const port = await freePort();
  const sink = new Sink();
  let store: StatusStore | undefined;
  const nats: NatsConfig = {
    servers: [`nats://127.0.0.1:${port}`],
    user: "pi-1",
    password: DEVICE_PASSWORD,
  };
  const session = new NatsSession({
    deviceId: "pi-1",
    nats,
    sink,
    setStatusStore: (s) => (store = s),
    log: logger("test"),
    outageReportMs: 1_000,
  });
  // The session's log shows an outage: its start, a line each outageReportMs, its end.
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { memory: (record) => void records.push(record) },
    loggers: [
      { category: LOG_CATEGORY, sinks: ["memory"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  const ac = new AbortController();
  // NATS is not running yet: the session must keep trying, not fail.
  let ended = false;
  const startedAt = performance.now();
  const running = session.run(ac.signal).finally(() => ended = true);
  const text = (r: LogRecord) => r.message.join("");
  const since = (from: number, pattern: RegExp) =>
    records.slice(from).filter((r) => pattern.test(text(r)));
  await waitFor(
    () => since(0, /still unreachable/).some((r) => Number(r.properties.failedAttempts) >= 2),
    { timeoutMs: 20_000, message: "a periodic outage line with two failed attempts" },
  );
  assertEquals(
    since(0, /^(Cannot connect to|Lost the connection to) NATS/).length,
    1,
    "one start line",
  );
  assertEquals(since(0, /^(Cannot connect to|Lost the connection to) NATS/)[0]?.level, "warning");
  assert(!session.connected);
  assert(!ended, "the session gave up while NATS was away");

  await using server = await startDroverNats(["pi-1", "pi-2"], { port });
  const admin = await connectAdmin(server.url);
  const snapshots = await startSnapshotService(admin);
  try {
    await waitFor(() => session.connected, { timeoutMs: 20_000, message: "session connects" });
    const [end] = since(0, /after an outage of/);
    assert(end !== undefined, "the end of the outage is logged");
    assertEquals(end.level, "info");
    // True numbers: the outage lasted at most as long as the test waited, and several attempts.
    assert(Number(end.properties.outageMs) <= performance.now() - startedAt);
    assert(Number(end.properties.outageMs) >= 1_000, JSON.stringify(end.properties));
    assert(Number(end.properties.failedAttempts) >= 2, JSON.stringify(end.properties));
    // Buckets appear only now (the agent never creates them).
    const kvm = new Kvm(admin);
    const desiredKv = await kvm.create(BUCKET_DESIRED_STATE);
    const statusKv = await kvm.create(BUCKET_AGENT_STATUS);
    await desiredKv.put("pi-1.web", enc(desired("web", "web:1")));
    await desiredKv.put("pi-2.web", enc(desired("web", "not-mine")));
    await waitFor(() => sink.image("web") === "web:1", { timeoutMs: 20_000, message: "snapshot" });

    // Status goes through the device's narrow permissions.
    await waitFor(() => store, { timeoutMs: 5_000, message: "status store" });
    const now = new Date().toISOString();
    const value: AgentStatus = {
      device_id: "pi-1",
      status: "ready",
      timestamp: now,
      agent_version: "test",
      labels: {},
      deployments: {},
    };
    await store!.put("pi-1", enc(value));
    assertEquals(AgentStatus.parse((await statusKv.get("pi-1"))!.json()).timestamp, now);

    // Server stopped, then started again (same store): the outage's start, a periodic line
    // and its end are logged, and later changes, including a delete, still arrive.
    const before = sink.snapshots;
    const mark = records.length;
    await server.stop();
    const stoppedAt = performance.now();
    await waitFor(
      () => since(mark, /^(Cannot connect to|Lost the connection to) NATS/).length === 1,
      {
        timeoutMs: 10_000,
        message: "the outage's start is logged",
      },
    );
    await waitFor(() => since(mark, /still unreachable/).length >= 1, {
      timeoutMs: 10_000,
      message: "a periodic line while the server is away",
    });
    assertEquals(since(mark, /after an outage of/).length, 0);
    await server.restart();
    const restartedAt = performance.now();
    const back = await waitFor(() => since(mark, /after an outage of/)[0], {
      timeoutMs: 30_000,
      message: "the outage's end is logged",
    });
    const outageMs = Number(back.properties.outageMs);
    assert(outageMs >= restartedAt - stoppedAt - 100, `${outageMs} ms: shorter than the stop`);
    assert(outageMs <= performance.now() - stoppedAt + 100, `${outageMs} ms: longer than the test`);
    await waitFor(() => session.connected && sink.snapshots > before, {
      timeoutMs: 30_000,
      message: "re-snapshot after reconnect",
    });
    const admin2 = await connectAdmin(server.url);
    await using _snapshots2 = await startSnapshotService(admin2);
    try {
      const kv2 = await new Kvm(admin2).open(BUCKET_DESIRED_STATE);
      await kv2.put("pi-1.web", enc(desired("web", "web:2")));
      await kv2.put("pi-1.db", enc(desired("db", "db:1")));
      await waitFor(() => sink.image("web") === "web:2" && sink.image("db") === "db:1", {
        timeoutMs: 20_000,
        message: "updates after restart",
      });
      await kv2.delete("pi-1.db");
      await waitFor(() => !sink.view.has("db"), { timeoutMs: 20_000, message: "delete" });
    } finally {
      await admin2.close();
    }
    assert(!sink.view.has("other"));
  } finally {
    ac.abort();
    await running;
    await session.close(2_000);
    await snapshots[Symbol.asyncDispose]().catch(() => {});
    await admin.close().catch(() => {});
    await reset();
  }
});
