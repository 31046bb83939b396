import { connect } from "@nats-io/transport-node";
import { type AgentStatus, heartbeatSubject } from "@drover/contracts";
import { startNats, waitFor } from "../../tests/support/mod.ts";
import { assertEquals } from "../../tests/support/assert.ts";
import { FleetState } from "./state.ts";
import { HeartbeatListener } from "./heartbeats.ts";
import { ensureBuckets } from "../nats/kv.ts";

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

function status(id: string, word: AgentStatus["status"]): AgentStatus {
  return {
    device_id: id,
    status: word,
    timestamp: new Date().toISOString(),
    agent_version: "t",
    labels: {},
    heartbeat_seconds: 10,
    status_refresh_seconds: 60,
    deployments: {},
  };
}

Deno.test("heartbeats: noted per device; one naming a status the picture lacks re-reads the key", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const state = new FleetState();
  let now = 1_000;
  const listener = new HeartbeatListener(nc, state, (await ensureBuckets(nc)).status, () => now);
  try {
    await listener.start();
    const kv = (await ensureBuckets(nc)).status;
    // The status exists in KV but this picture never saw it (no watch here): the heartbeat
    // names its revision, so the listener reads it.
    const revision = await kv.put("pi-1", enc(status("pi-1", "degraded")));
    nc.publish(heartbeatSubject("pi-1"), enc({ status: "degraded", status_revision: revision }));
    await waitFor(() => state.statuses.get("pi-1")?.status?.status === "degraded", {
      timeoutMs: 5_000,
      message: "status re-read after the heartbeat",
    });
    assertEquals(state.statuses.get("pi-1")?.revision, revision);
    // A heartbeat naming what the picture holds only notes the time.
    now = 2_000;
    nc.publish(heartbeatSubject("pi-1"), enc({ status: "degraded", status_revision: revision }));
    // Garbage is counted, not applied.
    nc.publish(heartbeatSubject("pi-1"), enc({ status: "fine" }));
    await waitFor(() => listener.counts.heard === 2 && listener.counts.invalid === 1, {
      timeoutMs: 5_000,
      message: "second heartbeat and the invalid one handled",
    });
    assertEquals(state.statuses.get("pi-1")?.heartbeatAt, 2_000);
    assertEquals(listener.counts.rereads, 1);
  } finally {
    await listener[Symbol.asyncDispose]();
    await nc.close();
  }
});
