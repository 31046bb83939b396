import {
  type AgentStatus,
  canonicalJson,
  DeploymentManifest,
  type DeploymentStatus,
} from "@drover/contracts";
import { assertEquals, assertStringIncludes } from "../tests/support/assert.ts";
import { type DesiredEntry, type DeviceRecord, isOnline, summarise } from "./aggregate.ts";
import { desiredStateOf } from "./fanout.ts";

const NOW = Date.parse("2025-01-01T12:00:00Z");

const web = DeploymentManifest.parse({
  name: "web",
  selector: { labels: { site: "lab" } },
  score: { type: "PodmanV0", services: [{ name: "httpd", image: "busybox" }] },
});

function record(
  id: string,
  labels: Record<string, string>,
  deployments: Record<string, DeploymentStatus>,
  ageSeconds = 1,
  heartbeat?: number,
): DeviceRecord {
  const status: AgentStatus = {
    device_id: id,
    status: "ready",
    timestamp: new Date(NOW - ageSeconds * 1000).toISOString(),
    agent_version: "0.1.0",
    labels,
    ...(heartbeat ? { heartbeat_seconds: heartbeat } : {}),
    deployments,
  };
  return { status, seenAt: NOW - ageSeconds * 1000 };
}

const running = (revision: number): DeploymentStatus => ({
  revision,
  phase: "running",
  services: { httpd: { state: "running", image: "busybox" } },
});

function desiredFor(keys: Record<string, number>, manifest = web): Map<string, DesiredEntry> {
  const canonical = canonicalJson(desiredStateOf(manifest));
  return new Map(Object.entries(keys).map(([k, revision]) => [k, { revision, canonical }]));
}

Deno.test("summarise: ready needs the current revision running; older revisions are pending", () => {
  const statuses = new Map([
    ["a", record("a", { site: "lab" }, { web: running(7) })],
    ["b", record("b", { site: "lab" }, { web: running(3) })],
    [
      "c",
      record("c", { site: "lab" }, {
        web: { revision: 8, phase: "failed", message: "pull failed: 401", services: {} },
      }),
    ],
    ["d", record("d", { site: "home" }, {})],
  ]);
  const view = summarise([web], desiredFor({ "a.web": 7, "b.web": 5, "c.web": 8 }), statuses, NOW);
  const [d] = view.deployments;
  assertEquals(
    { targeted: d.targeted, ready: d.ready, failed: d.failed, pending: d.pending },
    { targeted: 3, ready: 1, failed: 1, pending: 1 },
  );
  assertEquals(d.devices.map((r) => [r.device_id, r.phase]), [
    ["a", "ready"],
    ["b", "pending"],
    ["c", "failed"],
  ]);
  assertStringIncludes(d.devices[1].message, "waiting for revision 5");
  assertEquals(d.devices[2].message, "pull failed: 401");
});

Deno.test("summarise: stale desired content means the operator has not written it yet", () => {
  const statuses = new Map([["a", record("a", { site: "lab" }, { web: running(7) })]]);
  const stale = new Map([["a.web", { revision: 7, canonical: '{"old":true}' }]]);
  const [d] = summarise([web], stale, statuses, NOW).deployments;
  assertEquals(d.ready, 0);
  assertEquals(d.devices[0].wanted_revision, null);
  assertStringIncludes(d.devices[0].message, "operator");
});

Deno.test("summarise: devices offline after three heartbeats, with age and deployments", () => {
  const statuses = new Map([
    ["a", record("a", { site: "lab" }, { web: running(7) }, 29)],
    ["b", record("b", { site: "lab" }, {}, 31)],
    ["c", record("c", {}, {}, 50, 20)],
  ]);
  const view = summarise([web], desiredFor({ "a.web": 7, "b.web": 9, "x.web": 1 }), statuses, NOW);
  assertEquals(
    view.devices.map((d) => [d.device_id, d.online, d.heartbeat_age_seconds, d.deployments]),
    [
      ["a", true, 29, ["web"]],
      ["b", false, 31, ["web"]],
      ["c", true, 50, []],
      ["x", false, null, ["web"]],
    ],
  );
  assertEquals(view.devices[3].status, "unknown");
  assertEquals(view.deployments[0].offline, 1);
  assertStringIncludes(view.deployments[0].devices[1].message, "device offline");
});

Deno.test("isOnline: a cleanly stopped agent is offline at once", () => {
  const r = record("a", {}, {}, 1);
  r.status!.status = "stopped";
  assertEquals(isOnline(r, NOW), false);
});

Deno.test("summarise: invalid status keeps last labels and says why", () => {
  const statuses = new Map<string, DeviceRecord>([
    ["a", { error: "status: invalid option", labels: { site: "lab" }, seenAt: NOW }],
  ]);
  const view = summarise([web], desiredFor({ "a.web": 2 }), statuses, NOW);
  assertEquals(view.devices[0].status, "invalid");
  assertStringIncludes(view.devices[0].message ?? "", "invalid status");
  assertEquals(view.deployments[0].targeted, 1);
  assertStringIncludes(view.deployments[0].devices[0].message, "invalid");
});
