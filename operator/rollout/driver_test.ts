/**
 * The reconciler with rollouts on a real nats-server, devices simulated by
 * writing the statuses an agent would (running, or failed for a "bad" image):
 * batches in order, held keys untouched, rollback restores the stable value,
 * the history records every revision, and a standby writes nothing.
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { canonicalJson, DesiredState, historyKey, rolloutKey } from "@drover/contracts";
import { startNats, waitFor } from "../../tests/support/mod.ts";
import { assert, assertEquals } from "../../tests/support/assert.ts";
import { BucketMirror, type Buckets, ensureBuckets, readBucket } from "../nats/kv.ts";
import { FanoutController } from "../desired/fanout_controller.ts";
import { registerDevice } from "../fleet/registry.ts";
import { ensureRolloutBuckets, type RolloutBuckets } from "./store.ts";
import { RolloutState } from "./state.ts";
import { HistoryEntry } from "./history.ts";

const DEVICES = ["pi-a", "pi-b", "pi-c", "pi-d"];

function manifest(image: string, onFailure = "rollback") {
  return canonicalJson({
    name: "web",
    selector: { labels: { site: "lab" } },
    score: { type: "PodmanV0", services: [{ name: "web", image }] },
    rollout: {
      batches: [{ limit: 1 }, { limit: "50%" }],
      batch_timeout: "20s",
      on_failure: onFailure,
    },
  });
}

/** Answers every desired-state write as an agent would: running, or failed for a bad image. */
function simulatedAgents(buckets: Buckets): BucketMirror {
  return new BucketMirror(buckets.desired, (e) => {
    if (e.operation !== "PUT") return;
    const [device, deployment] = e.key.split(".");
    if (device === undefined || deployment === undefined) {
      throw new Error(`bad desired key ${e.key}`);
    }
    const desired = DesiredState.parse(JSON.parse(new TextDecoder().decode(e.value)));
    const bad = desired.score.services[0]?.image.includes("bad");
    void buckets.status.put(
      device,
      canonicalJson({
        device_id: device,
        status: bad ? "degraded" : "ready",
        timestamp: new Date().toISOString(),
        agent_version: "test",
        heartbeat_seconds: 10,
        labels: {},
        deployments: {
          [deployment]: {
            revision: e.revision,
            ...(desired.deployment_revision
              ? { deployment_revision: desired.deployment_revision }
              : {}),
            phase: bad ? "failed" : "running",
            ...(bad ? { message: 'service "web" keeps exiting (exit code 3, 5 restarts)' } : {}),
            services: {},
          },
        },
      }),
    );
  });
}

async function rolloutState(r: RolloutBuckets): Promise<RolloutState | undefined> {
  const e = await r.rollouts.get(rolloutKey("web"));
  return e?.operation === "PUT" ? RolloutState.parse(e.json()) : undefined;
}

async function keys(b: Buckets): Promise<Map<string, { revision: number; image: string }>> {
  const out = new Map<string, { revision: number; image: string }>();
  for (const [k, e] of await readBucket(b.desired)) {
    const v = DesiredState.parse(JSON.parse(new TextDecoder().decode(e.value)));
    const image = v.score.services[0]?.image;
    if (image === undefined) throw new Error(`desired ${k} has no service`);
    out.set(k, { revision: e.revision, image });
  }
  return out;
}

async function setUp(nc: NatsConnection) {
  const buckets = await ensureBuckets(nc);
  const rollouts = await ensureRolloutBuckets(nc);
  for (const id of DEVICES) await registerDevice(buckets.devices, id, { site: "lab" });
  return { buckets, rollouts };
}

Deno.test("reconciler + rollouts on real NATS: batches in order, rollback, history", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const { buckets, rollouts } = await setUp(nc);
  await using _agents = simulatedAgents(buckets);
  const reconciler = new FanoutController(buckets, { rollouts });
  try {
    await reconciler.start();
    // First revision: rolled out from nothing, batch by batch (1, then 50% of 4 = 2, then 1).
    const r1 = await buckets.deployments.put("web", manifest("nginx:1"));
    const seen: string[] = [];
    await waitFor(async () => {
      const s = await rolloutState(rollouts);
      if (s?.revision === r1) {
        const line = `${s.state}:${s.batch_devices.join(",")}`;
        if (seen.at(-1) !== line) seen.push(line);
      }
      return s?.revision === r1 && s.state === "complete";
    }, { timeoutMs: 15_000, intervalMs: 5, message: "first rollout completes" });
    // Every batch in order (a poll may miss one that passed in a blink, never reorder them).
    const order = ["progressing:pi-a", "progressing:pi-b,pi-c", "progressing:pi-d", "complete:"];
    assertEquals(seen.filter((l) => order.includes(l)), order.filter((l) => seen.includes(l)));
    assert(seen.includes("complete:"));
    const before = await keys(buckets);
    assertEquals([...before.values()].map((v) => v.image), DEVICES.map(() => "nginx:1"));

    // A bad revision: the first batch fails, it is rolled back, the others are never touched.
    const r2 = await buckets.deployments.put("web", manifest("nginx:bad"));
    await waitFor(async () => (await rolloutState(rollouts))?.state === "rolled_back", {
      timeoutMs: 15_000,
      message: "bad rollout rolled back",
    });
    const failed = (await rolloutState(rollouts))!;
    assertEquals([failed.revision, failed.stable_revision, failed.updated], [r2, r1, ["pi-a"]]);
    assertEquals(failed.failures.map((f) => [f.device, f.phase]), [["pi-a", "failed"]]);
    assert(failed.failures[0]?.message.includes("keeps exiting"), failed.failures[0]?.message);
    await waitFor(async () => (await keys(buckets)).get("pi-a.web")?.image === "nginx:1", {
      timeoutMs: 10_000,
      message: "pi-a gets revision 1's value back",
    });
    const after = await keys(buckets);
    assert(after.get("pi-a.web")!.revision > before.get("pi-a.web")!.revision);
    for (const id of ["pi-b", "pi-c", "pi-d"]) {
      assertEquals(after.get(`${id}.web`), before.get(`${id}.web`), `${id} untouched`);
    }

    // The history holds both revisions with what changed.
    const entry = HistoryEntry.parse((await rollouts.history.get(historyKey("web", r2)))!.json());
    assertEquals(entry.summary, "web: image nginx:1 → nginx:bad");
  } finally {
    await reconciler.stop();
    await nc.close();
  }
});

Deno.test("a reconciler that does not hold the lease writes nothing", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const { buckets, rollouts } = await setUp(nc);
  let active = false;
  const reconciler = new FanoutController(buckets, { rollouts, isActive: () => active });
  try {
    await reconciler.start();
    await buckets.deployments.put("web", manifest("nginx:1"));
    // Its picture follows the buckets while it waits…
    await waitFor(() => reconciler.state.manifests.has("web"), {
      timeoutMs: 5000,
      message: "standby sees it",
    });
    await reconciler.pass();
    assertEquals((await readBucket(buckets.desired)).size, 0);
    assertEquals(await rolloutState(rollouts), undefined);
    assertEquals((await readBucket(rollouts.history)).size, 0);
    // …and it acts once it is active.
    active = true;
    reconciler.markDirty();
    await waitFor(async () => (await rolloutState(rollouts)) !== undefined, {
      timeoutMs: 5000,
      message: "acts once active",
    });
  } finally {
    await reconciler.stop();
    await nc.close();
  }
});
