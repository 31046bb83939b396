/**
 * Drover on a 3-node NATS cluster (the engine for fleets that outgrow one
 * server): `operator serve --replicas 3` creates replicated buckets, devices
 * follow their keys through any node, and a node killed with SIGKILL in the
 * middle of an `apply` (a plain node, then the leader of the desired-state
 * stream) loses nothing: the apply completes, every device converges, and the
 * node catches up when it comes back.
 *
 * The devices are the agent's real NATS side (`NatsSession`: connection,
 * desired-state follower, validation, status puts) with a recording sink in
 * place of the reconciler: what is tested here is delivery, not podman.
 */
import { Kvm } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { BUCKET_DESIRED_STATE, type NatsConfig } from "@drover/contracts";
import { NatsSession } from "../../agent/nats/session.ts";
import type { DesiredEntry } from "../../agent/reconcile/desired.ts";
import { logger } from "../../agent/log.ts";
import { type NatsCluster, startNatsCluster, tempDir, waitFor } from "../support/mod.ts";
import {
  ADMIN_USER,
  connectAdmin,
  DEVICE_PASSWORD,
  droverAccountsConfig,
} from "../support/drover_nats.ts";
import { runCommand } from "../support/_exec.ts";
import { assert, assertEquals } from "../support/assert.ts";

const OPERATOR_MAIN = new URL("../../operator/main.ts", import.meta.url).pathname;
const DEVICES = Array.from({ length: 8 }, (_, i) => `cl-${i}`);

/** What one device was told to run: deployment → image. */
class ImageSink {
  readonly images = new Map<string, string>();
  snapshot(entries: Map<string, DesiredEntry>) {
    this.images.clear();
    for (const [d, e] of entries) this.update(d, e);
  }
  update(deployment: string, entry: DesiredEntry | null) {
    if (entry?.kind === "valid") {
      this.images.set(deployment, entry.state.score.services[0]?.image ?? "");
    } else this.images.delete(deployment);
  }
}

function operatorArgs(cluster: NatsCluster): string[] {
  return [
    "--nats",
    cluster.urls.join(","),
    "--user",
    ADMIN_USER.user,
    "--password",
    ADMIN_USER.password,
  ];
}

function manifest(image: string): string {
  return JSON.stringify({
    name: "web",
    selector: { devices: DEVICES },
    score: { type: "PodmanV0", services: [{ name: "main", image }] },
  });
}

/** Starts the devices' NATS sessions against every node of the cluster. */
function startDevices(cluster: NatsCluster, signal: AbortSignal) {
  return DEVICES.map((id) => {
    const sink = new ImageSink();
    const nats: NatsConfig = {
      servers: cluster.urls,
      user: id,
      password: DEVICE_PASSWORD,
    };
    const session = new NatsSession({
      deviceId: id,
      nats,
      sink,
      setStatusStore: () => {},
      log: logger("cluster-test").with({ device: id }),
    });
    return { id, sink, session, running: session.run(signal) };
  });
}

async function withCluster(
  fn: (cluster: NatsCluster, dir: string) => Promise<void>,
): Promise<void> {
  await using cluster = await startNatsCluster(3, {
    extraConfig: droverAccountsConfig(DEVICES),
  });
  await using dir = await tempDir("drover-cluster-");
  await fn(cluster, dir.path);
}

/** Messages each running node holds for `stream`. */
async function messagesPerNode(cluster: NatsCluster, stream: string): Promise<number[]> {
  const out: number[] = [];
  for (const node of cluster.nodes) {
    const res = await fetch(`${node.monitorUrl}/jsz?streams=true`);
    const jsz = await res.json() as {
      account_details?: { stream_detail?: { name: string; state: { messages: number } }[] }[];
    };
    const detail = jsz.account_details?.flatMap((a) => a.stream_detail ?? [])
      .find((d) => d.name === stream);
    out.push(detail?.state.messages ?? -1);
  }
  return out;
}

async function applyDuringNodeKill(pickVictim: (cluster: NatsCluster) => Promise<number>) {
  await withCluster(async (cluster, dir) => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const serve = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        OPERATOR_MAIN,
        "serve",
        "--replicas",
        "3",
        "--listen",
        `127.0.0.1:${port}`,
        ...operatorArgs(cluster),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    // Its last log lines, and whether it exited by itself: a crash is reported, never hidden.
    let serveLog = "";
    const logging = serve.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (chunk) => void (serveLog = (serveLog + chunk).slice(-20_000)) }),
    ).catch(() => {});
    let serveExit: Deno.CommandStatus | undefined;
    void serve.status.then((status) => (serveExit = status));
    const ac = new AbortController();
    const devices = startDevices(cluster, ac.signal);
    try {
      // The buckets exist replicated on all three nodes.
      const admin = await connectAdmin(cluster.urls.join(","), { maxReconnectAttempts: -1 });
      try {
        const jsm = await jetstreamManager(admin);
        const info = await waitFor(async () => {
          try {
            return await jsm.streams.info(`KV_${BUCKET_DESIRED_STATE}`);
          } catch {
            return undefined;
          }
        }, { timeoutMs: 60_000, message: "operator serve creates the buckets" });
        assertEquals(info.config.num_replicas, 3);

        await Deno.writeTextFile(`${dir}/web-1.json`, manifest("web:1"));
        const first = await runCommand(Deno.execPath(), [
          "run",
          "-A",
          OPERATOR_MAIN,
          "apply",
          "-f",
          `${dir}/web-1.json`,
          ...operatorArgs(cluster),
        ]);
        assertEquals(first.code, 0, first.stderr);
        await waitFor(() => devices.every((d) => d.sink.images.get("web") === "web:1"), {
          timeoutMs: 60_000,
          message: "every device runs web:1",
        });
        // Every bucket is replicated, whether serve or the CLI's apply created it first: a
        // one-replica bucket would stop commands while its one node is down.
        for (const name of await jsm.streams.names().next()) {
          const replicas = (await jsm.streams.info(name)).config.num_replicas;
          assertEquals(replicas, 3, `${name} has ${replicas} replica(s)`);
        }

        // The update, with a node killed while it is being applied.
        const victim = cluster.nodes[await pickVictim(cluster)];
        await Deno.writeTextFile(`${dir}/web-2.json`, manifest("web:2"));
        const applying = runCommand(Deno.execPath(), [
          "run",
          "-A",
          OPERATOR_MAIN,
          "apply",
          "-f",
          `${dir}/web-2.json`,
          ...operatorArgs(cluster),
        ]);
        await victim?.kill();
        const second = await applying;
        assertEquals(second.code, 0, second.stderr);
        await waitFor(() => devices.every((d) => d.sink.images.get("web") === "web:2"), {
          timeoutMs: 90_000,
          message: "every device runs web:2 with a node down",
        });
        // Nothing written is lost: every key holds web:2.
        const kv = await new Kvm(admin).open(BUCKET_DESIRED_STATE);
        for (const id of DEVICES) {
          const entry = await kv.get(`${id}.web`);
          assert(entry !== null, `${id}.web exists`);
          assertEquals(
            (entry.json() as { score: { services: { image: string }[] } }).score.services[0]
              ?.image,
            "web:2",
          );
        }

        // The node comes back and catches up.
        await victim?.restart();
        await waitFor(async () => {
          const counts = await messagesPerNode(cluster, `KV_${BUCKET_DESIRED_STATE}`);
          return counts.every((c) => c === counts[0] && c >= DEVICES.length);
        }, { timeoutMs: 60_000, message: "the restarted node catches up" });
      } finally {
        await admin.close();
      }
      assertEquals(serveExit, undefined, `operator serve exited during the test:\n${serveLog}`);
    } finally {
      ac.abort();
      await Promise.allSettled(devices.map((d) => d.running));
      await Promise.allSettled(devices.map((d) => d.session.close(1_000)));
      if (serveExit === undefined) serve.kill("SIGTERM");
      await serve.status;
      await logging;
    }
  });
}

Deno.test("cluster: kill -9 a node during apply; the apply completes, devices converge, the node catches up", async () => {
  // A node that does not lead the desired-state stream.
  await applyDuringNodeKill(async (cluster) => {
    const leader = await cluster.leaderOf(`KV_${BUCKET_DESIRED_STATE}`);
    return cluster.nodes.findIndex((n) => n !== leader);
  });
});

Deno.test("cluster: kill -9 the desired-state stream's leader during apply; nothing is lost", async () => {
  await applyDuringNodeKill(async (cluster) => {
    const leader = await cluster.leaderOf(`KV_${BUCKET_DESIRED_STATE}`);
    return cluster.nodes.indexOf(leader);
  });
});
