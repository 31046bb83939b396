/**
 * Liveness from core-NATS heartbeats, end to end: two hollow devices (the
 * real agent code over the FAKE in-memory runtime, agent/hollow.ts) in
 * Drover's account layout, where heartbeats cross from the devices' account
 * into DROVER through its private export, and the real `operator serve`.
 * A device whose heartbeats stop turns offline; one that keeps sending them
 * stays online while its stored status grows older than any KV-only judgement
 * would allow, with no full status put in between.
 */
import { Kvm } from "@nats-io/kv";
import { BUCKET_AGENT_STATUS } from "@drover/contracts";
import { HollowDevice, type HollowFleetOptions } from "../../agent/hollow.ts";
import { setupLogging } from "../../agent/log.ts";
import {
  ADMIN_USER,
  connectAdmin,
  DEVICE_PASSWORD,
  startDroverNats,
} from "../support/drover_nats.ts";
import { startOperatorService } from "../support/operator_process.ts";
import { freePort } from "../support/ports.ts";
import { waitFor } from "../support/mod.ts";
import { assert, assertEquals } from "../support/assert.ts";

interface ApiDevice {
  device_id: string;
  status: string;
  online: boolean;
  heartbeat_age_seconds: number | null;
}

const HEARTBEAT_SECONDS = 0.5;

Deno.test("heartbeats: a silent device turns offline, a heart-beating one stays online without full puts", async () => {
  await setupLogging({ level: "warning", format: "text" });
  await using nats = await startDroverNats(["hb-a", "hb-b"]);
  // `serve` creates the buckets and answers the devices' snapshot requests.
  await using operator = await startOperatorService(nats.url, await freePort(), [
    "--user",
    ADMIN_USER.user,
    "--password",
    ADMIN_USER.password,
  ]);
  const admin = await connectAdmin(nats.url);
  const stop = new AbortController();
  const fleet: HollowFleetOptions = {
    servers: [nats.url],
    labels: {},
    heartbeatSeconds: HEARTBEAT_SECONDS,
    // Full statuses only on change: liveness must come from the heartbeats alone.
    statusRefreshSeconds: 3600,
    user: (id) => ({ user: id, password: DEVICE_PASSWORD }),
  };
  const a = new HollowDevice("hb-a");
  const b = new HollowDevice("hb-b");
  const runs = [a.run(fleet, stop.signal), b.run(fleet, stop.signal)];
  const devices = async () => {
    const res = await fetch(`${operator.apiUrl}/api/devices`);
    const list = await res.json() as ApiDevice[];
    return new Map(list.map((d) => [d.device_id, d]));
  };
  try {
    await waitFor(async () => {
      const d = await devices();
      return d.get("hb-a")?.online === true && d.get("hb-b")?.online === true &&
        d.get("hb-a")?.status === "ready";
    }, { timeoutMs: 30_000, message: "both devices online and ready" });
    // The operator judges by heartbeats once it has heard some (before that, by the stored status).
    await waitFor(() => a.sent.heartbeats >= 2 && b.sent.heartbeats >= 2, {
      timeoutMs: 10_000,
      message: "both devices heart-beating",
    });
    const kv = await new Kvm(admin).open(BUCKET_AGENT_STATUS);
    const stored = (await kv.get("hb-a"))!;
    const putsBefore = a.sent.statuses;

    b.silence();
    let lastB: ApiDevice | undefined;
    await waitFor(async () => (lastB = (await devices()).get("hb-b"))?.online === false, {
      timeoutMs: 15_000,
      message: "the silent device turns offline",
    }).catch((e) => {
      throw new Error(
        `${e.message}; hb-b: ${JSON.stringify(lastB)}, sent ${JSON.stringify(b.sent)}`,
      );
    });
    // hb-a's stored status is now older than three heartbeats: only its heartbeats keep it online.
    await waitFor(async () => {
      const d = (await devices()).get("hb-a")!;
      assert(d.online, `hb-a went offline: ${JSON.stringify(d)}`);
      return Date.now() - stored.created.getTime() > 4 * HEARTBEAT_SECONDS * 1000 &&
        (d.heartbeat_age_seconds ?? Infinity) <= 3 * HEARTBEAT_SECONDS;
    }, { timeoutMs: 15_000, message: "hb-a online on heartbeats alone" });
    assertEquals((await kv.get("hb-a"))?.revision, stored.revision, "no full put from hb-a");
    assertEquals(a.sent.statuses, putsBefore);
    assert(a.sent.heartbeats >= 4, `heartbeats sent: ${a.sent.heartbeats}`);
  } finally {
    stop.abort();
    await Promise.allSettled(runs);
    await admin.close();
  }
});
