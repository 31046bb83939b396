/**
 * The operator with real agents, each on its own isolated podman service:
 * label selection (labels from the operator's device registry), explicit
 * device lists, relabelling with `device label`, delete, `apply --wait`,
 * `get -o json` against the containers podman really runs, offline detection.
 */

import { freePort, startNats, startPodman, tempDir, waitFor } from "../support/mod.ts";
import type { PodmanService } from "../support/mod.ts";
import { buildBusyboxImage } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { BUCKET_DESIRED_STATE } from "@drover/contracts";
import {
  liveRevisions,
  runOperatorCli,
  startOperatorService,
  testKv,
} from "../support/operator_process.ts";
import { type AgentProcess, startAgent } from "../support/agent_process.ts";

/** A pinned tag: `:latest` would make the agent try to pull from a registry. */
const IMAGE = "localhost/drover/busybox:e2e";

function manifest(name: string, selector: unknown, extra = "") {
  return JSON.stringify({
    name,
    selector,
    score: {
      type: "PodmanV0",
      services: [{
        name: "main",
        image: IMAGE,
        command: ["sleep", "3600"],
        ...(extra ? { env: { EXTRA: extra } } : {}),
      }],
    },
  });
}

/** Names of running containers on one podman service. */
async function running(podman: PodmanService): Promise<string[]> {
  const out = await podman.cli(["ps", "--format", "{{.Names}}", "--filter", "status=running"]);
  assertEquals(out.code, 0, out.stderr);
  return out.stdout.split("\n").filter((l) => l !== "").sort();
}

interface DeploymentJson {
  name: string;
  targeted: number;
  ready: number;
  failed: number;
  pending: number;
  devices: { device_id: string; phase: string; message: string }[];
}

interface DeviceJson {
  device_id: string;
  online: boolean;
  labels: Record<string, string>;
  reported_labels: Record<string, string> | null;
  deployments: string[];
}

Deno.test({
  name: "operator + real agents: selection, relabel, wait, get, delete, offline",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using nats = await startNats();
    await using dir = await tempDir("operator-agents-");
    await using podA = await startPodman();
    await using podB = await startPodman();
    await using podC = await startPodman();
    await Promise.all([podA, podB, podC].map((p) => buildBusyboxImage(p, IMAGE)));

    const agentIn = (id: string, labels: Record<string, string>, podman: PodmanService) =>
      startAgent({
        deviceId: id,
        labels,
        natsUrl: nats.url,
        podmanSocket: podman.socket,
        dir: `${dir.path}/${id}`,
        heartbeatSeconds: 1,
        env: { DROVER_LOG_LEVEL: "info" },
      });

    // Agents start before any bucket exists: they must wait, not exit.
    const agents: Record<string, AgentProcess> = {
      "pi-a": await agentIn("pi-a", { site: "lab" }, podA),
      "pi-b": await agentIn("pi-b", { site: "lab" }, podB),
      "pi-c": await agentIn("pi-c", { site: "home" }, podC),
    };
    try {
      let operator = await startOperatorService(nats.url, await freePort());
      await using _operator = { [Symbol.asyncDispose]: async () => void await operator.stop() };
      const cli = (...args: string[]) => runOperatorCli(nats.url, args);
      // Selectors match the registry's labels (what the agents report is only shown).
      for (const [id, site] of [["pi-a", "lab"], ["pi-b", "lab"], ["pi-c", "home"]] as const) {
        const label = await cli("device", "register", id, `site=${site}`);
        assertEquals(label.code, 0, label.stderr);
      }
      const file = async (name: string, text: string) => {
        const path = `${dir.path}/${name}`;
        await Deno.writeTextFile(path, text);
        return path;
      };
      await waitFor(async () => {
        const out = await cli("get", "devices", "-o", "json");
        const devices: DeviceJson[] = out.code === 0 ? JSON.parse(out.stdout) : [];
        return devices.filter((d) => d.online).length === 3;
      }, { timeoutMs: 60_000, message: "all three agents report status once buckets exist" });

      // Label selection: two of three devices match; --wait returns once both run it.
      const lab = await cli(
        "apply",
        "-f",
        await file("lab.json", manifest("lab", { labels: { site: "lab" } })),
        "--wait",
        "--timeout",
        "90s",
      );
      assertEquals(lab.code, 0, lab.stderr + lab.stdout + operator.logs());
      assertStringIncludes(lab.stdout, "lab: 2/2 ready");
      assertEquals(await running(podA), ["lab_main"]);
      assertEquals(await running(podB), ["lab_main"]);
      assertEquals(await running(podC), []);

      // Explicit device list.
      const pinned = await cli(
        "apply",
        "-f",
        await file("pinned.json", manifest("pinned", { devices: ["pi-c"] })),
        "--wait",
      );
      assertEquals(pinned.code, 0, pinned.stderr);
      assertEquals(await running(podC), ["pinned_main"]);

      // Operator restart: no desired-state key is rewritten, no container replaced.
      await using t = await testKv(nats.url);
      const desired = await t.open(BUCKET_DESIRED_STATE);
      const revisionsBefore = await liveRevisions(desired);
      const idsBefore = await containerIds([podA, podB, podC]);
      assertEquals(await operator.stop(), 0, operator.logs());
      operator = await startOperatorService(nats.url, await freePort());
      const afterRestart: DeploymentJson[] = JSON.parse(
        (await cli("get", "deployments", "-o", "json")).stdout,
      );
      assertEquals(afterRestart.map((d) => [d.name, d.ready]), [["lab", 2], ["pinned", 1]]);
      assertEquals(await liveRevisions(desired), revisionsBefore);
      assertEquals(await containerIds([podA, podB, podC]), idsBefore);

      // get -o json matches what podman really runs.
      const deployments: DeploymentJson[] = JSON.parse(
        (await cli("get", "deployments", "-o", "json")).stdout,
      );
      assertEquals(
        deployments.map((d) => [d.name, d.targeted, d.ready, d.failed, d.pending]),
        [["lab", 2, 2, 0, 0], ["pinned", 1, 1, 0, 0]],
      );
      assertEquals(deployments[0]?.devices.map((d) => d.device_id), ["pi-a", "pi-b"]);
      const devices: DeviceJson[] = JSON.parse((await cli("get", "devices", "-o", "json")).stdout);
      for (const [id, podman] of [["pi-a", podA], ["pi-b", podB], ["pi-c", podC]] as const) {
        const view = devices.find((d) => d.device_id === id)!;
        assert(view.online, `${id} online`);
        assertEquals(
          view.deployments.map((d) => `${d}_main`),
          await running(podman),
          `${id}: reported deployments are the running containers`,
        );
      }
      const table = await cli("get", "deployments");
      assertStringIncludes(table.stdout, "NAME");
      // NAME REVISION TARGETED READY FAILED PENDING
      assertMatchLine(table.stdout, /^lab\s+\d+\s+2\s+2\s+0\s+0/m);
      const status = await cli("status", "lab");
      assertEquals(status.code, 0, status.stderr);
      const head = /^Deployment lab \(revision (\d+)\): 2\/2 ready$/m.exec(status.stdout);
      assert(head !== null, status.stdout);
      // The real agents echo the deployment revision: WANTED and APPLIED both show it.
      for (const id of ["pi-a", "pi-b"]) {
        assertMatchLine(
          status.stdout,
          new RegExp(`^${id}\\s+ready\\s+${head[1]}\\s+${head[1]}\\s`, "m"),
        );
      }

      // A failing rollout: --wait exits 1 with the device's message.
      const broken = await cli(
        "apply",
        "-f",
        await file(
          "broken.json",
          manifest("pinned", { devices: ["pi-c"] }).replace(IMAGE, "localhost/drover/none:1"),
        ),
        "--wait",
        "--timeout",
        "60s",
      );
      assertEquals(broken.code, 1, broken.stdout + broken.stderr);
      assertStringIncludes(broken.stderr, "pi-c: failed");
      const failedStatus = await cli("status", "pinned", "-o", "json");
      assertEquals(failedStatus.code, 1);
      assertEquals(JSON.parse(failedStatus.stdout).failed, 1);

      // Success means it stays up: a service that exits 2 s after starting never counts as
      // ready (min_ready, 10 s by default), and --wait fails with its exit code.
      const dying = JSON.parse(manifest("dying", { devices: ["pi-c"] }));
      dying.score.services[0].command = ["sh", "-c", "sleep 2; exit 3"];
      const died = await cli(
        "apply",
        "-f",
        await file("dying.json", JSON.stringify(dying)),
        "--wait",
        "--timeout",
        "90s",
      );
      assertEquals(died.code, 1, died.stdout + died.stderr);
      assertStringIncludes(died.stderr, "pi-c: failed");
      assertStringIncludes(died.stderr, "exit code 3");
      assert(!died.stdout.includes("dying: 1/1 ready"), died.stdout);
      assertEquals((await cli("delete", "dying")).code, 0);

      // Relabel in the registry: pi-c joins the lab deployment, whatever its agent reports.
      const relabel = await cli("device", "label", "pi-c", "site=lab");
      assertEquals(relabel.code, 0, relabel.stderr);
      await waitFor(async () => (await running(podC)).includes("lab_main"), {
        timeoutMs: 60_000,
        message: "relabelled pi-c runs lab",
      });
      const relabelled: DeviceJson[] = JSON.parse(
        (await cli("get", "devices", "-o", "json")).stdout,
      );
      const c = relabelled.find((d) => d.device_id === "pi-c")!;
      assertEquals([c.labels, c.reported_labels], [{ site: "lab" }, { site: "home" }]);

      // Delete reaches every device.
      assertEquals((await cli("delete", "lab")).code, 0);
      await waitFor(
        async () =>
          !(await running(podA)).includes("lab_main") &&
          !(await running(podB)).includes("lab_main") &&
          !(await running(podC)).includes("lab_main"),
        { timeoutMs: 60_000, message: "lab containers removed on all devices" },
      );

      // Offline: a killed agent stops heartbeating and is reported offline after 3 intervals.
      // One liveness rule: once the API (operator serve's heartbeats) says offline, so does the
      // CLI at once (it asks serve what it heard; from KV alone it would allow the 60 s refresh).
      const apiDevices = async (): Promise<DeviceJson[]> =>
        await (await fetch(`${operator.apiUrl}/api/devices`)).json();
      assertEquals((await apiDevices()).find((d) => d.device_id === "pi-b")?.online, true);
      await agents["pi-b"]?.kill();
      await waitFor(
        async () => (await apiDevices()).find((d) => d.device_id === "pi-b")?.online === false,
        { timeoutMs: 30_000, message: "the API says pi-b is offline" },
      );
      const cliDevices: DeviceJson[] = JSON.parse(
        (await cli("get", "devices", "-o", "json")).stdout,
      );
      assertEquals(cliDevices.find((d) => d.device_id === "pi-b")?.online, false);
      await waitFor(async () => {
        const list: DeviceJson[] = JSON.parse((await cli("get", "devices", "-o", "json")).stdout);
        const b = list.find((d) => d.device_id === "pi-b");
        const a = list.find((d) => d.device_id === "pi-a");
        return b?.online === false && a?.online === true;
      }, { timeoutMs: 30_000, message: "pi-b reported offline, pi-a still online" });
      const human = await cli("get", "devices");
      assertMatchLine(human.stdout, /^pi-b\s+\S+\s+offline/m);
    } catch (e) {
      console.error("test failed:", e);
      for (const [id, a] of Object.entries(agents)) {
        console.error(`--- ${id}\n${(await a.logs()).slice(-3000)}`);
      }
      throw e;
    } finally {
      await Promise.all(Object.values(agents).map((a) => a.stop()));
    }
  },
});

/** Container name → id on each podman service (replacements change the id). */
async function containerIds(services: PodmanService[]): Promise<string[]> {
  const out: string[] = [];
  for (const podman of services) {
    const ps = await podman.cli(["ps", "-a", "--format", "{{.Names}}={{.ID}}"]);
    out.push(...ps.stdout.split("\n").filter((l) => l !== "").sort());
  }
  return out;
}

function assertMatchLine(text: string, pattern: RegExp) {
  assert(pattern.test(text), `expected ${pattern} in:\n${text}`);
}
