/**
 * What people see of revisions and failures, through the real CLI, `serve`
 * and nats-server (the test stands in for agents by writing their statuses):
 * one deployment revision everywhere (`apply`, `status`, `get`), no rewrite
 * of a device's desired state when its content did not change, the agent's
 * own failure of a bad desired-state value, and why a device is not ready.
 */

import type { KV } from "@nats-io/kv";
import {
  type AgentStatus,
  BUCKET_AGENT_STATUS,
  BUCKET_DESIRED_STATE,
  type DeploymentStatus,
} from "@drover/contracts";
import { freePort, startNats, tempDir, waitFor } from "../support/mod.ts";
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import { runOperatorCli, startOperatorService, testKv } from "../support/operator_process.ts";

async function report(
  kv: KV,
  device: string,
  deployments: Record<string, DeploymentStatus>,
  extra: Partial<AgentStatus> = {},
) {
  const status: AgentStatus = {
    device_id: device,
    status: "ready",
    timestamp: new Date().toISOString(),
    agent_version: "test",
    labels: {},
    heartbeat_seconds: 30,
    deployments,
    ...extra,
  };
  await kv.put(device, JSON.stringify(status));
}

const manifest = (devices: string[], image = "busybox:1") =>
  `name: web
selector: { devices: ${JSON.stringify(devices)} }
score:
  type: PodmanV0
  services: [{ name: main, image: ${image} }]
`;

/** `deployment "web" created (revision 3)` → 3. */
function printedRevision(stdout: string): number {
  const match = /\(revision (\d+)\)/.exec(stdout);
  if (match === null) throw new Error(`no revision in: ${stdout}`);
  return Number(match[1]);
}

/** The status table's rows as DEVICE → [PHASE, WANTED, APPLIED]. */
function rows(stdout: string): Record<string, string[]> {
  const lines = stdout.trimEnd().split("\n").slice(3);
  return Object.fromEntries(lines.map((l) => {
    const [device, phase, wanted, applied] = l.split(/ +/);
    return [device, [phase, wanted, applied]];
  }));
}

Deno.test("one deployment revision: apply prints it, status shows it, a selector edit rewrites no device", async () => {
  await using nats = await startNats();
  await using dir = await tempDir("operator-revisions-");
  await using _operator = await startOperatorService(nats.url, await freePort());
  await using t = await testKv(nats.url);
  const status = await t.open(BUCKET_AGENT_STATUS);
  const desired = await t.open(BUCKET_DESIRED_STATE);
  const file = `${dir.path}/web.yaml`;

  await Deno.writeTextFile(file, manifest(["pi-a"]));
  const created = await runOperatorCli(nats.url, ["apply", "-f", file]);
  assertEquals(created.code, 0, created.stderr);
  const first = printedRevision(created.stdout);
  const stored = await waitFor(async () => await desired.get("pi-a.web"), {
    timeoutMs: 15_000,
    message: "serve wrote desired-state/pi-a.web",
  });
  assertEquals(JSON.parse(stored.string()).deployment_revision, first);
  // The agent echoes it (a real agent does: agent/reconcile/status.ts).
  await report(status, "pi-a", {
    web: { revision: stored.revision, deployment_revision: first, phase: "running", services: {} },
  });

  const shown = await runOperatorCli(nats.url, ["status", "web"]);
  assertEquals(shown.code, 0, shown.stdout + shown.stderr);
  assertStringIncludes(shown.stdout, `Deployment web (revision ${first}): 1/1 ready`);
  assertEquals(rows(shown.stdout)["pi-a"], ["ready", String(first), String(first)]);
  const json = JSON.parse((await runOperatorCli(nats.url, ["status", "web", "-o", "json"])).stdout);
  assertEquals(json.revision, first);
  assertEquals(json.devices[0].wanted_kv_revision, stored.revision);
  assertEquals(json.devices[0].applied_kv_revision, stored.revision);
  const table = (await runOperatorCli(nats.url, ["get", "deployments"])).stdout;
  assertEquals(table.split("\n")[1]?.split(/ +/).slice(0, 3), ["web", String(first), "1"]);

  // A selector edit: a new manifest revision, pi-b gets it, pi-a's key is not rewritten.
  await Deno.writeTextFile(file, manifest(["pi-a", "pi-b"]));
  const widened = await runOperatorCli(nats.url, ["apply", "-f", file]);
  assertStringIncludes(widened.stdout, "configured");
  const second = printedRevision(widened.stdout);
  const b = await waitFor(async () => await desired.get("pi-b.web"), {
    timeoutMs: 15_000,
    message: "serve wrote desired-state/pi-b.web",
  });
  assertEquals(JSON.parse(b.string()).deployment_revision, second);
  assertEquals((await desired.get("pi-a.web"))?.revision, stored.revision, "pi-a not rewritten");
  await report(status, "pi-b", {
    web: { revision: b.revision, deployment_revision: second, phase: "running", services: {} },
  });
  const after = await runOperatorCli(nats.url, ["status", "web"]);
  assertStringIncludes(after.stdout, `(revision ${second}): 2/2 ready`);
  assertEquals(rows(after.stdout)["pi-a"], ["ready", String(first), String(first)]);
  assertEquals(rows(after.stdout)["pi-b"], ["ready", String(second), String(second)]);

  // A content change: every device is rewritten and waits for the new revision.
  await Deno.writeTextFile(file, manifest(["pi-a", "pi-b"], "busybox:2"));
  const third = printedRevision((await runOperatorCli(nats.url, ["apply", "-f", file])).stdout);
  await waitFor(async () => {
    const v = await desired.get("pi-a.web");
    return v !== null && JSON.parse(v.string()).deployment_revision === third;
  }, { timeoutMs: 15_000, message: `pi-a.web names revision ${third}` });
  const rolling = await runOperatorCli(nats.url, ["status", "web"]);
  assertEquals(rows(rolling.stdout)["pi-a"], ["pending", String(third), String(first)]);
  assertStringIncludes(
    rolling.stdout,
    `agent reports revision ${first} (running), waiting for revision ${third}`,
  );
});

Deno.test("the agent's failure of a bad desired-state value and a device's reason show in every view", async () => {
  await using nats = await startNats();
  await using dir = await tempDir("operator-failed-");
  await using t = await testKv(nats.url);
  const file = `${dir.path}/web.yaml`;
  await Deno.writeTextFile(file, manifest(["pi-a"]));
  // No `serve` yet: the bad value stays as written.
  assertEquals((await runOperatorCli(nats.url, ["apply", "-f", file])).code, 0);
  const status = await t.open(BUCKET_AGENT_STATUS);
  const desired = await t.open(BUCKET_DESIRED_STATE);
  const bad = await desired.put("pi-a.web", JSON.stringify({ deployment: "web" }));
  const agentMessage = "invalid desired state: score: required";
  await report(status, "pi-a", {
    web: { revision: bad, phase: "failed", message: agentMessage, services: {} },
  }, { status: "degraded", message: "1 of 1 deployments not running: web failed" });

  const shown = await runOperatorCli(nats.url, ["status", "web"]);
  assertEquals(shown.code, 1);
  assertEquals(rows(shown.stdout)["pi-a"]?.[0], "failed");
  assertStringIncludes(shown.stdout, agentMessage);
  const deployments = (await runOperatorCli(nats.url, ["get", "deployments"])).stdout;
  // NAME REVISION TARGETED READY FAILED PENDING
  assertEquals(deployments.split("\n")[1]?.split(/ +/).slice(2, 6), ["1", "0", "1", "0"]);
  const devices = (await runOperatorCli(nats.url, ["get", "devices"])).stdout;
  assertStringIncludes(devices, "MESSAGE");
  assertStringIncludes(devices, "1 of 1 deployments not running: web failed");
  const json = JSON.parse(
    (await runOperatorCli(nats.url, ["get", "devices", "-o", "json"])).stdout,
  );
  assertEquals(json[0].reason, "1 of 1 deployments not running: web failed");

  // The API shows the same reason (serve rewrites the bad value, so the deployment moves on).
  await using operator = await startOperatorService(nats.url, await freePort());
  const api = await (await fetch(`${operator.apiUrl}/api/devices`)).json();
  assertEquals(api[0].reason, "1 of 1 deployments not running: web failed");
});
