import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { AgentStatus, BUCKET_AGENT_STATUS, type DeploymentStatus } from "@drover/contracts";
import {
  beatAction,
  buildAgentStatus,
  statusFingerprint,
  StatusPublisher,
  type StatusSource,
  type StatusStore,
  STOPPED_MESSAGE,
} from "./status.ts";
import { logger } from "./log.ts";
import { AGENT_VERSION } from "./version.ts";
import { startNats, waitFor } from "../tests/support/mod.ts";
import { assert, assertEquals } from "../tests/support/assert.ts";

const running: DeploymentStatus = {
  revision: 4,
  phase: "running",
  services: { main: { container_id: "abc", state: "running", image: "busybox:1", restarts: 0 } },
};

class Source implements StatusSource {
  deployments: Record<string, DeploymentStatus> = { web: running };
  device: "ready" | "degraded" = "ready";
  deviceStatus() {
    return this.device;
  }
  deploymentStatuses() {
    return this.deployments;
  }
}

Deno.test("buildAgentStatus produces a value the contract accepts, UTC timestamp", () => {
  const status = buildAgentStatus({
    deviceId: "pi-1",
    status: "ready",
    labels: { site: "lab" },
    heartbeatSeconds: 10,
    deployments: { web: running },
    now: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)),
  });
  assertEquals(AgentStatus.parse(status), status);
  assertEquals(status.timestamp, "2024-01-02T03:04:05.000Z");
  assertEquals(status.agent_version, AGENT_VERSION);
});

Deno.test("a burst of changes is coalesced, never two puts at once, latest wins", async () => {
  const source = new Source();
  let inFlight = 0;
  let maxInFlight = 0;
  const puts: AgentStatus[] = [];
  // Each put waits until the test lets it finish: the burst lands while one is in flight.
  const gates: Array<() => void> = [];
  const store: StatusStore = {
    async put(_key, value) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise<void>((resolve) => gates.push(resolve));
      puts.push(JSON.parse(new TextDecoder().decode(value)));
      inFlight--;
      return puts.length;
    },
  };
  const publisher = new StatusPublisher({
    deviceId: "pi-1",
    labels: {},
    heartbeatSeconds: 3600,
    source,
    log: logger("test"),
    debounceMs: 0,
  });
  publisher.setStore(store);
  await waitFor(() => gates.length === 1, { timeoutMs: 5_000, message: "first put in flight" });
  for (let i = 1; i <= 100; i++) {
    source.deployments = { web: { ...running, revision: i } };
    publisher.changed();
  }
  // Let puts finish one by one until the last revision is stored.
  await waitFor(() => {
    gates.shift()?.();
    return puts.at(-1)?.deployments.web?.revision === 100;
  }, { timeoutMs: 5_000, intervalMs: 1, message: "last revision published" });
  assertEquals(maxInFlight, 1);
  // The first put, then one for the whole burst.
  assertEquals(puts.length, 2);
  await publisher.close();
});

Deno.test("a non-ready device says why; a ready one has no message; stopped says so", () => {
  const at = new Date(Date.UTC(2024, 0, 2));
  const base = {
    deviceId: "pi-1",
    labels: {},
    heartbeatSeconds: 10,
    deployments: {},
    now: at,
  };
  const degraded = buildAgentStatus({
    ...base,
    status: "degraded",
    message: "container runtime unreachable: connect ENOENT /run/podman/podman.sock",
  });
  assertEquals(AgentStatus.parse(degraded).message, degraded.message);
  assertEquals("message" in buildAgentStatus({ ...base, status: "ready", message: "x" }), false);
  const source = new Source();
  source.device = "degraded";
  const publisher = new StatusPublisher({
    deviceId: "pi-1",
    labels: {},
    heartbeatSeconds: 10,
    source: Object.assign(source, { deviceMessage: () => "1 of 1 deployment not running" }),
    log: logger("test"),
  });
  assertEquals(publisher.current().message, "1 of 1 deployment not running");
});

Deno.test("heartbeat and final 'stopped' status reach a real agent-status bucket", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await new Kvm(nc).create(BUCKET_AGENT_STATUS);
    const source = new Source();
    const publisher = new StatusPublisher({
      deviceId: "pi-1",
      labels: { site: "lab" },
      heartbeatSeconds: 0.2,
      source,
      log: logger("test"),
    });
    publisher.setStore(kv);
    publisher.start();
    // Nothing changes, yet the revision keeps growing: that is the heartbeat.
    const first = await waitFor(async () => (await kv.get("pi-1"))?.revision, {
      timeoutMs: 5_000,
      message: "first status",
    });
    await waitFor(async () => ((await kv.get("pi-1"))?.revision ?? 0) >= first + 2, {
      timeoutMs: 5_000,
      message: "two heartbeats",
    });
    const stored = AgentStatus.parse((await kv.get("pi-1"))!.json());
    assertEquals(stored.status, "ready");
    assertEquals(stored.labels, { site: "lab" });
    assertEquals(stored.deployments.web?.revision, 4);
    assert(await publisher.publishFinal("stopped", 5_000));
    const final = AgentStatus.parse((await kv.get("pi-1"))!.json());
    assertEquals([final.status, final.message], ["stopped", STOPPED_MESSAGE]);
  } finally {
    await nc.close();
  }
});

Deno.test("a missing bucket makes puts fail quietly and the publisher keeps going", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await new Kvm(nc).open(BUCKET_AGENT_STATUS);
    const publisher = new StatusPublisher({
      deviceId: "pi-1",
      labels: {},
      heartbeatSeconds: 0.1,
      source: new Source(),
      log: logger("test"),
    });
    // Count the attempts: two heartbeats' puts must have failed before the bucket exists.
    let attempts = 0;
    publisher.setStore({
      put: (key, value) => {
        attempts++;
        return kv.put(key, value);
      },
    });
    publisher.start();
    await waitFor(() => attempts >= 2, { timeoutMs: 10_000, message: "two failed puts" });
    assertEquals(publisher.published, 0);
    // The operator creates the bucket later: the next heartbeat lands.
    const created = await new Kvm(nc).create(BUCKET_AGENT_STATUS);
    await waitFor(async () => await created.get("pi-1"), {
      timeoutMs: 10_000,
      message: "status after bucket creation",
    });
    await publisher.close();
  } finally {
    await nc.close();
  }
});

Deno.test("beatAction: full status when readers lack it, else the small heartbeat", () => {
  const base = {
    lastRevision: 7,
    fingerprint: "a",
    lastFingerprint: "a",
    sinceFullMs: 1_000,
    refreshMs: 60_000,
    canHeartbeat: true,
  };
  assertEquals(beatAction(base), "heartbeat");
  assertEquals(beatAction({ ...base, lastRevision: undefined }), "full");
  assertEquals(beatAction({ ...base, fingerprint: "b" }), "full");
  assertEquals(beatAction({ ...base, sinceFullMs: 60_000 }), "full");
  assertEquals(beatAction({ ...base, canHeartbeat: false }), "full");
});

Deno.test("statusFingerprint ignores only the timestamp", () => {
  const at = (ms: number) =>
    buildAgentStatus({
      deviceId: "pi-1",
      status: "ready",
      labels: {},
      heartbeatSeconds: 10,
      deployments: { web: running },
      now: new Date(ms),
    });
  assertEquals(statusFingerprint(at(1)), statusFingerprint(at(2)));
  assert(statusFingerprint(at(1)) !== statusFingerprint({ ...at(1), status: "degraded" }));
});

Deno.test("nothing changes: heartbeats carry the last revision, full puts only on change and refresh", async () => {
  const source = new Source();
  const puts: AgentStatus[] = [];
  const beats: { status: string; status_revision: number }[] = [];
  const store: StatusStore = {
    put: (_key, value) => {
      puts.push(JSON.parse(new TextDecoder().decode(value)));
      return Promise.resolve(100 + puts.length);
    },
    heartbeat: (payload) => beats.push(JSON.parse(new TextDecoder().decode(payload))),
  };
  const publisher = new StatusPublisher({
    deviceId: "pi-1",
    labels: {},
    heartbeatSeconds: 3600,
    refreshSeconds: 3600,
    source,
    log: logger("test"),
    debounceMs: 0,
  });
  publisher.setStore(store);
  await waitFor(() => puts.length === 1, { timeoutMs: 5_000, message: "first put" });
  assertEquals(puts[0]?.status_refresh_seconds, 3600);
  // Ticks by hand: the interval is an hour.
  publisher.beat();
  publisher.beat();
  assertEquals(beats, [
    { status: "ready", status_revision: 101 },
    { status: "ready", status_revision: 101 },
  ]);
  // The reconciler says something may have changed, but the status is the same: no put.
  publisher.changed();
  await publisher.flush();
  assertEquals(puts.length, 1);
  // A real change is put, and the heartbeats then name its revision.
  source.device = "degraded";
  publisher.changed();
  await waitFor(() => puts.length === 2, { timeoutMs: 5_000, message: "put of the change" });
  publisher.beat();
  assertEquals(beats.at(-1), { status: "degraded", status_revision: 102 });
  // After a reconnect the full status goes out again, even unchanged.
  publisher.setStore(undefined);
  publisher.beat();
  assertEquals(beats.length, 3);
  publisher.setStore(store);
  await waitFor(() => puts.length === 3, { timeoutMs: 5_000, message: "put after reconnect" });
  await publisher.close();
});

Deno.test("the refresh period puts the full status even when nothing changed", async () => {
  const puts: number[] = [];
  let beats = 0;
  const publisher = new StatusPublisher({
    deviceId: "pi-1",
    labels: {},
    heartbeatSeconds: 0.05,
    refreshSeconds: 0.2,
    source: new Source(),
    log: logger("test"),
    debounceMs: 0,
  });
  publisher.setStore({
    put: () => Promise.resolve(puts.push(Date.now())),
    heartbeat: () => beats++,
  });
  publisher.start();
  await waitFor(() => puts.length >= 3, { timeoutMs: 10_000, message: "two refreshes" });
  assert(beats >= 2, `heartbeats between refreshes, got ${beats}`);
  await publisher.close();
});
