/**
 * Staged rollouts with real agents, each on its own podman service, and real
 * `operator serve` processes: a canary batch first, then device-id order; an
 * update whose health check never passes stops in the first batch and rolls back while the
 * other devices' containers are never touched; pause and resume; undo;
 * `history`; the operator killed mid-rollout resumes the same rollout; two
 * operators at once, the active one killed, the rollout completes exactly once.
 */

import type { KV } from "@nats-io/kv";
import { freePort, startNats, startPodman, tempDir, waitFor } from "../support/mod.ts";
import type { PodmanService } from "../support/mod.ts";
import { buildBusyboxImage } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { BUCKET_DESIRED_STATE } from "@drover/contracts";
import {
  type OperatorService,
  runOperatorCli,
  startOperatorService,
  testKv,
} from "../support/operator_process.ts";
import { type AgentProcess, startAgent } from "../support/agent_process.ts";

/** A pinned tag: `:latest` would make the agent try to pull from a registry. */
const IMAGE = "localhost/drover/busybox:e2e";
/** pi-c carries the canary label: the first batch takes it although it sorts last. */
const DEVICES = [["pi-a", "lab"], ["pi-b", "lab"], ["pi-c", "canary"]] as const;

function manifest(version: string, options: { unhealthy?: boolean; rollout?: object } = {}) {
  return JSON.stringify({
    name: "web",
    selector: { labels: { fleet: "yes" } },
    score: {
      type: "PodmanV0",
      services: [{
        name: "main",
        image: IMAGE,
        command: ["sleep", "3600"],
        env: { VERSION: version },
        // Short: this test is about batches (apply --wait of a dying service: operator_agents).
        min_ready: "2s",
        // The bad update runs fine but its health check never passes.
        ...(options.unhealthy
          ? {
            healthcheck: {
              test: ["CMD-SHELL", "echo database unreachable; exit 1"],
              interval: "1s",
              timeout: "1s",
              retries: 2,
            },
          }
          : {}),
      }],
    },
    rollout: {
      batches: [{ limit: 1, selector: { labels: { site: "canary" } } }, { limit: 1 }],
      success_threshold: "100%",
      batch_timeout: "60s",
      // A service that starts and then dies must not count as ready in the moment it runs.
      min_ready: "2s",
      on_failure: "rollback",
      ...options.rollout,
    },
  });
}

interface RolloutJson {
  revision: number;
  stable_revision: number | null;
  state: string;
  batch: number;
  batches: number;
  batch_devices: string[];
  started_at: string;
  failures: { device: string; phase: string; message: string }[];
  devices: { device_id: string; updated: boolean; phase: string }[];
}

Deno.test({
  name: "rollouts with real agents: batches, rollback, pause/resume, undo, restart, handover",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using nats = await startNats();
    await using dir = await tempDir("operator-rollout-");
    await using podA = await startPodman();
    await using podB = await startPodman();
    await using podC = await startPodman();
    const pods: Record<(typeof DEVICES)[number][0], PodmanService> = {
      "pi-a": podA,
      "pi-b": podB,
      "pi-c": podC,
    };
    await Promise.all(Object.values(pods).map((p) => buildBusyboxImage(p, IMAGE)));
    const agents: AgentProcess[] = [];
    for (const [id] of DEVICES) {
      agents.push(
        await startAgent({
          deviceId: id,
          labels: {},
          natsUrl: nats.url,
          podmanSocket: pods[id].socket,
          dir: `${dir.path}/${id}`,
          heartbeatSeconds: 1,
          env: { DROVER_LOG_LEVEL: "info" },
        }),
      );
    }
    const operators: OperatorService[] = [];
    const startOperator = async () => {
      const op = await startOperatorService(nats.url, await freePort());
      operators.push(op);
      return op;
    };
    const cli = (...args: string[]) => runOperatorCli(nats.url, args);
    const file = async (name: string, text: string) => {
      const path = `${dir.path}/${name}`;
      await Deno.writeTextFile(path, text);
      return path;
    };
    const rollout = async (): Promise<RolloutJson> => {
      const out = await cli("rollout", "status", "web", "-o", "json");
      assert(out.stdout !== "", out.stderr);
      return JSON.parse(out.stdout);
    };
    const versions = async () => {
      const out: Record<string, string> = {};
      for (const [id] of DEVICES) out[id] = await versionOn(pods[id]);
      return out;
    };
    await using t = await testKv(nats.url);
    try {
      let operator = await startOperator();
      for (const [id, site] of DEVICES) {
        const label = await cli("device", "register", id, `site=${site}`, "fleet=yes");
        assertEquals(label.code, 0, label.stderr);
      }

      // 1. The first revision rolls out batch by batch: the canary, then device-id order.
      const v1 = await cli("apply", "-f", await file("v1.json", manifest("v1")), "--wait");
      assertEquals(v1.code, 0, v1.stdout + v1.stderr + operator.logs());
      assertInOrder(v1.stdout, [
        "batch 1 of 3; 1/3 updated",
        "batch 2 of 3; 2/3 updated",
        "batch 3 of 3; 3/3 updated",
        "web revision 1: complete; 3/3 updated, 3 ready",
      ]);
      const first = await rollout();
      // A completed revision is the stable one.
      assertEquals([first.state, first.stable_revision], ["complete", first.revision]);
      assertEquals(await versions(), { "pi-a": "v1", "pi-b": "v1", "pi-c": "v1" });

      // 2. A good update goes the same way, batch after batch, and completes.
      const v2 = await cli("apply", "-f", await file("v2.json", manifest("v2")), "--wait");
      assertEquals(v2.code, 0, v2.stdout + v2.stderr + operator.logs());
      assertInOrder(v2.stdout, ["batch 1 of 3", "batch 2 of 3", "batch 3 of 3", "complete"]);
      assertEquals(await versions(), { "pi-a": "v2", "pi-b": "v2", "pi-c": "v2" });
      const goodIds = await containerIds(pods);

      // 3. An update whose health check never passes stops in the canary batch and rolls
      //    itself back.
      const bad = await cli(
        "apply",
        "-f",
        await file("v3.json", manifest("v3", { unhealthy: true })),
        "--wait",
      );
      assertEquals(bad.code, 1, bad.stdout + bad.stderr);
      assertStringIncludes(bad.stderr, 'Rollout of "web" revision');
      assertStringIncludes(bad.stderr, "was rolled back");
      assertStringIncludes(bad.stderr, "rolled back to revision");
      assertStringIncludes(bad.stderr, "pi-c: failed:");
      assertStringIncludes(bad.stderr, "unhealthy");
      const back = await rollout();
      assertEquals([back.state, back.batch, back.failures.map((f) => f.device)], [
        "rolled_back",
        1,
        ["pi-c"],
      ]);
      await waitFor(async () => (await versionOn(podC)) === "v2", {
        timeoutMs: 60_000,
        message: "the canary runs revision 2's spec again",
      });
      const afterBack = await containerIds(pods);
      assertEquals(afterBack["pi-a"], goodIds["pi-a"], "pi-a's container was never touched");
      assertEquals(afterBack["pi-b"], goodIds["pi-b"], "pi-b's container was never touched");
      const status = await cli("rollout", "status", "web");
      assertEquals(status.code, 1, "rolled back: rollout status exits 1");
      assertStringIncludes(status.stdout, "rolled back");
      const v2Revision = revisionIn(v2.stdout);
      assertStringIncludes(status.stdout, `Stable: revision ${v2Revision}.`);

      // 3b. The fleet picture after the rollback: the stable revision, ready everywhere, the
      //     same in status, get deployments -o json, the API and /metrics.
      const v3Revision = revisionIn(bad.stdout);
      const backLine = `rolled back (revision ${v3Revision} → ${v2Revision}): 3/3 ready at ` +
        `revision ${v2Revision}`;
      await waitFor(async () => (await cli("status", "web")).code === 0, {
        timeoutMs: 60_000,
        message: "status exits 0 once the stable revision is ready everywhere",
      });
      const shown = await cli("status", "web");
      assertStringIncludes(shown.stdout, backLine);
      assert(!shown.stdout.includes("waiting for the operator"), shown.stdout);
      const fromCli = JSON.parse((await cli("get", "deployments", "-o", "json")).stdout)[0];
      const fromApi = await (await fetch(`${operator.apiUrl}/api/deployments/web`)).json();
      for (const view of [fromCli, fromApi]) {
        assertEquals(
          [view.state, view.revision, view.stable_revision, view.ready, view.targeted],
          ["rolled_back", v3Revision, v2Revision, 3, 3],
        );
        assertEquals(
          view.devices.map((d: { running_revision: number }) => d.running_revision),
          [v2Revision, v2Revision, v2Revision],
        );
      }
      const table = (await cli("get", "deployments")).stdout;
      assertStringIncludes(table, `rolled back to ${v2Revision}`);
      const metrics = await (await fetch(`${operator.apiUrl}/metrics`)).text();
      assertStringIncludes(metrics, 'drover_rollout_state{deployment="web",state="rolled_back"} 1');
      assertStringIncludes(metrics, 'drover_deployment_devices{deployment="web",phase="ready"} 3');

      // 3c. Re-applying the rolled-back manifest is a new attempt (it is rolled back again).
      const again = await cli(
        "apply",
        "-f",
        await file("v3.json", manifest("v3", { unhealthy: true })),
      );
      assertEquals(again.code, 0, again.stderr);
      assertStringIncludes(
        again.stdout,
        `revision ${v3Revision} was rolled back: retrying it as revision`,
      );
      const retryRevision = Number(/as revision (\d+)/.exec(again.stdout)?.[1]);
      assert(retryRevision > v3Revision, again.stdout);
      await waitFor(async () => {
        const r = await rollout();
        return r.revision === retryRevision && r.state === "rolled_back";
      }, { timeoutMs: 90_000, message: "the retry rolls out, and back again" });

      // 4. Pause holds the rollout in its batch; resume continues it.
      const desired = await t.open(BUCKET_DESIRED_STATE);
      // A longer min_ready keeps the canary batch open long enough to pause it there.
      const v4 = await cli(
        "apply",
        "-f",
        await file("v4.json", manifest("v4", { rollout: { min_ready: "6s" } })),
      );
      assertEquals(v4.code, 0, v4.stderr);
      const v4Revision = Number(/\(revision (\d+)\)/.exec(v4.stdout)?.[1]);
      await waitFor(async () => (await rollout()).revision === v4Revision, {
        timeoutMs: 30_000,
        message: "the operator starts the v4 rollout",
      });
      const paused = await cli("rollout", "pause", "web");
      assertEquals(paused.code, 0, paused.stderr);
      assertStringIncludes(paused.stdout, "paused (batch 1 of 3)");
      // The canary gets ready while paused; a later pass (the probe's) must not move on.
      await waitFor(async () => (await versionOn(podC)) === "v4", {
        timeoutMs: 60_000,
        message: "the paused batch's device runs v4",
      });
      await waitFor(
        async () =>
          (await rollout()).devices.find((d) => d.device_id === "pi-c")?.phase === "ready",
        {
          timeoutMs: 30_000,
          message: "the canary reports v4 ready",
        },
      );
      const probe = await cli(
        "apply",
        "-f",
        await file("probe.json", plainManifest("probe", ["pi-a"])),
      );
      assertEquals(probe.code, 0, probe.stderr);
      await waitFor(async () => (await desired.get("pi-a.probe"))?.operation === "PUT", {
        timeoutMs: 30_000,
        message: "the operator ran a pass after the canary got ready",
      });
      const held = await rollout();
      assertEquals([held.state, held.batch, held.batch_devices], ["paused", 1, ["pi-c"]]);
      // The devices the paused rollout holds back say so (not that the operator is late).
      const pausedStatus = await cli("status", "web");
      assertStringIncludes(pausedStatus.stdout, "rollout paused at batch 1 of 3: 1/3 ready");
      assertEquals(
        (pausedStatus.stdout.match(
          new RegExp(`held at revision ${v2Revision}: rollout paused at batch 1 of 3`, "g"),
        ) ?? []).length,
        2,
        pausedStatus.stdout,
      );
      assert(!pausedStatus.stdout.includes("waiting for the operator"), pausedStatus.stdout);
      assertEquals((await containerIds(pods))["pi-a"], goodIds["pi-a"]);
      const resumed = await cli("rollout", "resume", "web");
      assertEquals(resumed.code, 0, resumed.stderr);
      await waitFor(async () => (await rollout()).state === "complete", {
        timeoutMs: 90_000,
        message: "the resumed rollout completes",
      });
      await waitFor(async () => Object.values(await versions()).every((v) => v === "v4"), {
        timeoutMs: 60_000,
        message: "every device runs v4",
      });

      // 5. undo restores an earlier revision (as a new one, rolled out like any other).
      const undo = await cli(
        "rollout",
        "undo",
        "web",
        "--to-revision",
        String(first.revision),
        "--wait",
      );
      assertEquals(undo.code, 0, undo.stdout + undo.stderr);
      assertStringIncludes(undo.stdout, `restored revision ${first.revision} as revision`);
      assertEquals(await versions(), { "pi-a": "v1", "pi-b": "v1", "pi-c": "v1" });

      // 6. history: every revision, what changed, how its rollout went.
      const history = await cli("history", "web");
      assertEquals(history.code, 0, history.stderr);
      assertStringIncludes(history.stdout, "created: main=localhost/drover/busybox:e2e");
      assertStringIncludes(history.stdout, "main: env, healthcheck changed");
      assertStringIncludes(history.stdout, `undo to revision ${first.revision}: main: env changed`);
      const rows: { revision: number; summary: string; marker: string | null }[] = JSON.parse(
        (await cli("history", "web", "-o", "json")).stdout,
      );
      assertEquals(rows.length, 6);
      assertEquals(rows.at(-1)!.marker, "current");
      // Newer revisions exist, and the history still says how v3 and its retry ended.
      const ended = Object.fromEntries(
        (rows as unknown as { revision: number; rollout: string | null }[]).map((
          r,
        ) => [r.revision, r.rollout]),
      );
      assertEquals([ended[v3Revision], ended[retryRevision]], ["rolled_back", "rolled_back"]);
      assertStringIncludes(history.stdout, `retry of revision ${v3Revision}: no change`);

      // 7. The operator killed in the middle of a batch: a new one continues the same rollout.
      const slow = { batch_timeout: "120s", min_ready: "4s" };
      const v5 = await cli("apply", "-f", await file("v5.json", manifest("v5", { rollout: slow })));
      assertEquals(v5.code, 0, v5.stderr);
      await waitFor(async () => {
        const r = await rollout();
        return r.revision > rows.at(-1)!.revision && r.state === "progressing" && r.batch === 2;
      }, { timeoutMs: 60_000, message: "v5 reaches its second batch" });
      const before = await rollout();
      await operator.kill();
      operator = await startOperator();
      await waitFor(async () => (await rollout()).state === "complete", {
        timeoutMs: 120_000,
        message: "the restarted operator completes the rollout",
      });
      const resumedRollout = await rollout();
      assertEquals(
        [resumedRollout.revision, resumedRollout.started_at],
        [before.revision, before.started_at],
        "the same rollout, continued",
      );
      await assertWrittenOnce(desired, before.revision);

      // 8. Two operators: only the lease holder acts; killing it hands over, the rollout
      //    completes exactly once.
      const standby = await startOperator();
      const v6 = await cli("apply", "-f", await file("v6.json", manifest("v6", { rollout: slow })));
      assertEquals(v6.code, 0, v6.stderr);
      await waitFor(async () => {
        const r = await rollout();
        return r.revision > before.revision && r.state === "progressing" && r.batch === 2;
      }, { timeoutMs: 60_000, message: "v6 reaches its second batch" });
      const during = await rollout();
      assert(!standby.logs().includes("Reconciled desired state"), "the standby wrote nothing");
      assert(!standby.logs().includes("Holding the operator lease"), standby.logs());
      await operator.kill();
      await waitFor(async () => (await rollout()).state === "complete", {
        timeoutMs: 120_000,
        message: "the standby takes over and completes the rollout",
      });
      assertStringIncludes(standby.logs(), "Took the operator lease over");
      const done = await rollout();
      assertEquals([done.revision, done.started_at], [during.revision, during.started_at]);
      await assertWrittenOnce(desired, during.revision);
      await waitFor(async () => Object.values(await versions()).every((v) => v === "v6"), {
        timeoutMs: 60_000,
        message: "every device runs v6",
      });

      // 9. Offline is not failure: pi-a (the second batch) is killed; the rollout completes
      //    without a rollback, and pi-a converges once its agent is back.
      const piA = agents[0]!;
      await piA.kill();
      const offline = async () =>
        JSON.parse((await cli("get", "devices", "-o", "json")).stdout)
          .find((d: { device_id: string }) => d.device_id === "pi-a")?.online === false;
      await waitFor(offline, { timeoutMs: 30_000, message: "pi-a reads offline" });
      const v7 = await cli("apply", "-f", await file("v7.json", manifest("v7")), "--wait");
      assertEquals(v7.code, 0, v7.stdout + v7.stderr);
      assertStringIncludes(v7.stdout, "1 offline");
      assertStringIncludes(v7.stdout, "complete");
      const afterOffline = await rollout();
      assertEquals(afterOffline.state, "complete");
      assertEquals(
        afterOffline.devices.find((d) => d.device_id === "pi-a")?.phase,
        "offline",
      );
      assertEquals([await versionOn(podB), await versionOn(podC)], ["v7", "v7"]);
      assertEquals(await versionOn(podA), "v6", "pi-a's podman still runs what it had");
      agents[0] = await startAgent({
        deviceId: "pi-a",
        labels: {},
        natsUrl: nats.url,
        podmanSocket: podA.socket,
        dir: `${dir.path}/pi-a`,
        heartbeatSeconds: 1,
        env: { DROVER_LOG_LEVEL: "info" },
      });
      await waitFor(async () => (await versionOn(podA)) === "v7", {
        timeoutMs: 60_000,
        message: "pi-a converges to v7 when it is back",
      });
      await waitFor(async () => (await cli("status", "web")).code === 0, {
        timeoutMs: 30_000,
        message: "status: every device ready at v7",
      });
    } catch (e) {
      console.error("test failed:", e);
      for (const [i, op] of operators.entries()) {
        console.error(`--- operator ${i}\n${op.logs().slice(-6000)}`);
      }
      for (const a of agents) console.error(`--- agent\n${(await a.logs()).slice(-2000)}`);
      throw e;
    } finally {
      await Promise.all(operators.map((o) => o.stop()));
      await Promise.all(agents.map((a) => a.stop()));
    }
  },
});

/** The revision in `deployment "web" configured (revision 5)`. */
function revisionIn(stdout: string): number {
  const revision = Number(/\(revision (\d+)\)/.exec(stdout)?.[1]);
  assert(Number.isSafeInteger(revision) && revision > 0, `no revision in: ${stdout}`);
  return revision;
}

function plainManifest(name: string, devices: string[]) {
  return JSON.stringify({
    name,
    selector: { devices },
    score: {
      type: "PodmanV0",
      services: [{ name: "main", image: IMAGE, command: ["sleep", "3600"] }],
    },
  });
}

/** The VERSION env of the running web container on one podman service ("" when none). */
async function versionOn(podman: PodmanService): Promise<string> {
  const out = await podman.cli([
    "ps",
    "--filter",
    "name=^web_main$",
    "--filter",
    "status=running",
    "--format",
    "{{.ID}}",
  ]);
  const id = out.stdout.trim();
  if (id === "") return "";
  const env = await podman.cli([
    "inspect",
    "--format",
    "{{range .Config.Env}}{{println .}}{{end}}",
    id,
  ]);
  return /^VERSION=(.*)$/m.exec(env.stdout)?.[1] ?? "";
}

/** Device → id of its web container. */
async function containerIds(pods: Record<string, PodmanService>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [id, podman] of Object.entries(pods)) {
    const ps = await podman.cli(["ps", "-a", "--filter", "name=^web_main$", "--format", "{{.ID}}"]);
    out[id] = ps.stdout.trim();
  }
  return out;
}

/** Each device's key was written with `revision` exactly once (no batch ran twice). */
async function assertWrittenOnce(desired: KV, revision: number): Promise<void> {
  for (const [id] of DEVICES) {
    let writes = 0;
    for await (const e of await desired.history({ key: `${id}.web` })) {
      if (
        e.operation === "PUT" &&
        e.json<{ deployment_revision?: number }>().deployment_revision === revision
      ) {
        writes++;
      }
    }
    assertEquals(writes, 1, `${id}.web written once with revision ${revision}`);
  }
}

function assertInOrder(text: string, parts: string[]): void {
  let at = 0;
  for (const part of parts) {
    const found = text.indexOf(part, at);
    assert(found >= 0, `expected ${JSON.stringify(part)} after position ${at} in:\n${text}`);
    at = found + part.length;
  }
}
