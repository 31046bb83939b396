import {
  type AgentStatus,
  canonicalJson,
  DeploymentManifest,
  type DeploymentStatus,
} from "@drover/contracts";
import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import {
  type DesiredKeyRecord,
  type DeviceRecord,
  isOnline,
  type RegistrationRecord,
  summarise,
} from "./aggregate.ts";
import { knownDevices } from "../desired/targeting.ts";
import { desiredStateOf } from "../desired/fanout.ts";

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

/** A registry with these devices' labels (what `device label` / `device add` store). */
function registered(entries: Record<string, Record<string, string>>) {
  return new Map<string, RegistrationRecord>(
    Object.entries(entries).map(([id, labels]) => [id, { labels }]),
  );
}

function desiredFor(keys: Record<string, number>, manifest = web): Map<string, DesiredKeyRecord> {
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
  const registry = registered({ a: { site: "lab" }, b: { site: "lab" }, c: { site: "lab" } });
  const view = summarise(
    [web],
    desiredFor({ "a.web": 7, "b.web": 5, "c.web": 8 }),
    statuses,
    registry,
    NOW,
  );
  const [d] = view.deployments;
  assertEquals(
    { targeted: d?.targeted, ready: d?.ready, failed: d?.failed, pending: d?.pending },
    { targeted: 3, ready: 1, failed: 1, pending: 1 },
  );
  assertEquals(d?.devices.map((r) => [r.device_id, r.phase]), [
    ["a", "ready"],
    ["b", "pending"],
    ["c", "failed"],
  ]);
  // Values written without a deployment revision: only KV revisions can be named.
  assertStringIncludes(d?.devices[1]?.message, "waiting for KV revision 5");
  assertEquals(d?.devices[2]?.message, "pull failed: 401");
});

Deno.test("summarise: stale desired content means the operator has not written it yet", () => {
  const statuses = new Map([["a", record("a", { site: "lab" }, { web: running(7) })]]);
  const stale = new Map([["a.web", { revision: 7, canonical: '{"old":true}' }]]);
  const [d] =
    summarise([web], stale, statuses, registered({ a: { site: "lab" } }), NOW).deployments;
  assertEquals(d?.ready, 0);
  assertEquals(d?.devices[0]?.wanted_revision, null);
  assertStringIncludes(d?.devices[0]?.message, "operator");
});

Deno.test("summarise: devices offline after three heartbeats, with age and deployments", () => {
  const statuses = new Map([
    ["a", record("a", { site: "lab" }, { web: running(7) }, 29)],
    ["b", record("b", { site: "lab" }, {}, 31)],
    ["c", record("c", {}, {}, 50, 20)],
  ]);
  const registry = registered({ a: { site: "lab" }, b: { site: "lab" } });
  const view = summarise(
    [web],
    desiredFor({ "a.web": 7, "b.web": 9, "x.web": 1 }),
    statuses,
    registry,
    NOW,
  );
  assertEquals(
    view.devices.map((d) => [d.device_id, d.online, d.heartbeat_age_seconds, d.deployments]),
    [
      ["a", true, 29, ["web"]],
      ["b", false, 31, ["web"]],
      ["c", true, 50, []],
      ["x", false, null, ["web"]],
    ],
  );
  assertEquals(view.devices[3]?.status, "unknown");
  assertEquals(view.deployments[0]?.offline, 1);
  assertStringIncludes(view.deployments[0]?.devices[1]?.message, "device offline");
});

Deno.test("isOnline: a cleanly stopped agent is offline at once", () => {
  const r = record("a", {}, {}, 1);
  r.status!.status = "stopped";
  assertEquals(isOnline(r, NOW), false);
});

Deno.test("isOnline: heartbeats keep a device online between rarer full statuses", () => {
  // Full status 50 s ago, refreshed every 60 s, heartbeat every 10 s.
  const r = record("a", {}, {}, 50, 10);
  r.status!.status_refresh_seconds = 60;
  // A reader of KV alone: online while the refresh plus three heartbeats has not passed.
  assertEquals(isOnline(r, NOW), true);
  assertEquals(isOnline(r, NOW + 40_000), true, "90 s after the status");
  assertEquals(isOnline(r, NOW + 40_001), false);
  // Heartbeats heard: three missed heartbeats after the last one, whatever the refresh.
  r.heartbeatAt = NOW - 5_000;
  assertEquals(isOnline(r, NOW), true);
  assertEquals(isOnline(r, NOW + 25_000), true);
  assertEquals(isOnline(r, NOW + 25_001), false, "heartbeats stopped");
  // The view shows the later of the two as last seen.
  const view = summarise([], new Map(), new Map([["a", r]]), new Map(), NOW);
  assertEquals(view.devices[0]?.last_seen, new Date(NOW - 5_000).toISOString());
  assertEquals(view.devices[0]?.heartbeat_age_seconds, 5);
  // Agents that send no refresh field are judged by three heartbeats alone.
  const old = record("b", {}, {}, 31, 10);
  assertEquals(isOnline(old, NOW), false);
});

Deno.test("summarise: invalid status keeps the reported labels for display and says why", () => {
  const statuses = new Map<string, DeviceRecord>([
    ["a", { error: "status: invalid option", labels: { site: "lab" }, seenAt: NOW }],
  ]);
  const view = summarise(
    [web],
    desiredFor({ "a.web": 2 }),
    statuses,
    registered({ a: { site: "lab" } }),
    NOW,
  );
  assertEquals(view.devices[0]?.status, "invalid");
  assertEquals(view.devices[0]?.reported_labels, { site: "lab" });
  assertStringIncludes(view.devices[0]?.message ?? "", "invalid status");
  assertEquals(view.deployments[0]?.targeted, 1);
  assertStringIncludes(view.deployments[0]?.devices[0]?.message, "invalid");
});

Deno.test("summarise: label selection uses registry labels only, never reported ones", () => {
  // "a" claims site=lab but is registered site=x; "b" reports nothing useful but is
  // registered site=lab; "c" reports site=lab and is not registered at all.
  const statuses = new Map([
    ["a", record("a", { site: "lab" }, {})],
    ["b", record("b", {}, {})],
    ["c", record("c", { site: "lab" }, {})],
  ]);
  const registry = registered({ a: { site: "x" }, b: { site: "lab" } });
  const view = summarise([web], new Map(), statuses, registry, NOW);
  assertEquals(view.deployments[0]?.devices.map((d) => d.device_id), ["b"]);
  const byId = Object.fromEntries(view.devices.map((d) => [d.device_id, d]));
  assertEquals([byId.a?.labels, byId.a?.reported_labels, byId.a?.registered], [
    { site: "x" },
    { site: "lab" },
    true,
  ]);
  assertEquals([byId.c?.labels, byId.c?.reported_labels, byId.c?.registered], [
    {},
    { site: "lab" },
    false,
  ]);
  assertStringIncludes(byId.c?.message ?? "", "not in the device registry");
});

Deno.test("summarise: a registered device that never reported is listed and targeted", () => {
  const view = summarise([web], new Map(), new Map(), registered({ n: { site: "lab" } }), NOW);
  assertEquals(view.devices.map((d) => [d.device_id, d.status, d.online, d.last_seen]), [
    ["n", "unknown", false, null],
  ]);
  assertEquals(view.devices[0]?.reported_labels, null);
  assertStringIncludes(view.devices[0]?.message ?? "", "never reported");
  assertEquals(view.deployments[0]?.devices.map((d) => [d.device_id, d.phase]), [["n", "pending"]]);
});

Deno.test("summarise: explicit selector.devices still targets unregistered devices", () => {
  const pinned = DeploymentManifest.parse({ ...web, name: "pinned", selector: { devices: ["u"] } });
  const statuses = new Map([["u", record("u", { site: "lab" }, {})]]);
  const view = summarise([pinned, web], new Map(), statuses, new Map(), NOW);
  assertEquals(
    view.deployments.map((d) => [d.name, d.devices.map((r) => r.device_id)]),
    [["pinned", ["u"]], ["web", []]],
  );
});

Deno.test("knownDevices: registry entries without valid labels are not label-selectable", () => {
  const registry = new Map<string, RegistrationRecord>([
    ["a", { labels: { site: "lab" } }],
    ["b", { error: "labels: invalid" }],
    ["c", { labels: { site: "home" }, error: "updated_at: invalid (kept last labels)" }],
  ]);
  assertEquals(knownDevices(registry), [
    { id: "a", labels: { site: "lab" } },
    { id: "c", labels: { site: "home" } },
  ]);
});

Deno.test("summarise: the agent's failure of the stored value shows, even when it is not the manifest's", () => {
  // A bad value in desired-state (written by hand, or before the operator rewrote it): the
  // agent reports it failed at exactly that revision, and the person must see that.
  const statuses = new Map([[
    "a",
    record("a", { site: "lab" }, {
      web: { revision: 9, phase: "failed", message: "score.services: required", services: {} },
    }),
  ]]);
  const bad = new Map([["a.web", { revision: 9, canonical: '{"deployment":"web"}' }]]);
  const [d] = summarise([web], bad, statuses, registered({ a: { site: "lab" } }), NOW).deployments;
  assertEquals([d?.failed, d?.pending], [1, 0]);
  assertEquals(d?.devices[0]?.phase, "failed");
  assertEquals(d?.devices[0]?.agent_phase, "failed");
  assertStringIncludes(d?.devices[0]?.message, "score.services: required");
  // The failed value came from revision 4 and the manifest is at revision 5 now: the operator
  // is about to replace it, so the device waits (an `apply --wait` of 5 must not fail on it).
  const previous = new Map([["a.web", {
    revision: 9,
    canonical: '{"deployment":"web"}',
    deploymentRevision: 4,
  }]]);
  const [w] = summarise(
    [web],
    previous,
    statuses,
    registered({ a: { site: "lab" } }),
    NOW,
    new Map([["web", 5]]),
  ).deployments;
  assertEquals([w?.failed, w?.pending, w?.devices[0]?.phase], [0, 1, "pending"]);
  // A failure of an older value is not news: the newer one is still pending.
  const newer = new Map([["a.web", { revision: 10, canonical: '{"deployment":"web"}' }]]);
  const [p] =
    summarise([web], newer, statuses, registered({ a: { site: "lab" } }), NOW).deployments;
  assertEquals(p?.devices[0]?.phase, "pending");
});

Deno.test("summarise: a device that is not ready says why", () => {
  const degraded = record("a", { site: "lab" }, {
    web: { revision: 7, phase: "failed", message: "pull failed: 401\nmore", services: {} },
    db: running(7),
  });
  degraded.status!.status = "degraded";
  const own = record("b", { site: "lab" }, {});
  own.status!.status = "degraded";
  // The device-level message a newer agent sends (stripped by older contracts: set it directly).
  (own.status as { message?: string }).message = "podman socket /run/x.sock: not found";
  const statuses = new Map([["a", degraded], ["b", own], ["c", record("c", {}, {})]]);
  const view = summarise([web], new Map(), statuses, registered({ a: {}, b: {}, c: {} }), NOW);
  assertEquals(view.devices.map((d) => d.reason), [
    "web failed: pull failed: 401",
    "podman socket /run/x.sock: not found",
    undefined,
  ]);
});

Deno.test("summarise: WANTED/APPLIED are deployment revisions; KV revisions kept apart", () => {
  const canonical = canonicalJson(desiredStateOf(web));
  const desired = new Map<string, DesiredKeyRecord>([
    ["a.web", { revision: 45, canonical, deploymentRevision: 28 }],
    ["b.web", { revision: 46, canonical, deploymentRevision: 28 }],
    ["c.web", { revision: 47, canonical, deploymentRevision: 28 }],
  ]);
  const statuses = new Map([
    ["a", record("a", {}, { web: { ...running(45), deployment_revision: 28 } })],
    ["b", record("b", {}, { web: { ...running(40), deployment_revision: 27 } })],
    // An agent that predates the echo, running exactly what is stored.
    ["c", record("c", {}, { web: running(47) })],
  ]);
  const registry = registered({ a: { site: "lab" }, b: { site: "lab" }, c: { site: "lab" } });
  const [d] =
    summarise([web], desired, statuses, registry, NOW, new Map([["web", 29]])).deployments;
  assertEquals(d?.revision, 29);
  assertEquals(
    d?.devices.map((r) => [
      r.device_id,
      r.phase,
      r.wanted_revision,
      r.applied_revision,
      r.wanted_kv_revision,
      r.applied_kv_revision,
    ]),
    [
      ["a", "ready", 28, 28, 45, 45],
      ["b", "pending", 28, 27, 46, 40],
      ["c", "ready", 28, 28, 47, 47],
    ],
  );
  assertEquals(
    d?.devices[1]?.message,
    "agent reports revision 27 (running), waiting for revision 28",
  );
});

Deno.test("summarise: each device row carries the services the agent reported, health included", () => {
  const healthy: DeploymentStatus = {
    revision: 7,
    phase: "running",
    services: {
      httpd: { state: "running", image: "busybox", restarts: 0, health: "healthy" },
    },
  };
  const statuses = new Map([
    ["a", record("a", { site: "lab" }, { web: healthy })],
    ["b", record("b", { site: "lab" }, {})],
  ]);
  const view = summarise(
    [web],
    desiredFor({ "a.web": 7, "b.web": 7 }),
    statuses,
    registered({ a: { site: "lab" }, b: { site: "lab" } }),
    NOW,
  );
  const [a, b] = view.deployments[0]?.devices ?? [];
  assertEquals(a?.services?.httpd?.health, "healthy");
  assertEquals(b?.services, undefined, "nothing reported, nothing shown");
});
