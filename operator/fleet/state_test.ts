import { DeploymentManifest } from "@drover/contracts";
import { assert, assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { FleetState } from "./state.ts";
import type { MirrorEntry } from "../nats/kv.ts";
import { rolloutOutcome } from "../rollout/follow.ts";
import type { DeploymentView } from "./aggregate.ts";

const encoder = new TextEncoder();
let revision = 0;
function entry(
  key: string,
  value: unknown,
  operation: MirrorEntry["operation"] = "PUT",
): MirrorEntry {
  return {
    key,
    revision: ++revision,
    operation,
    value: encoder.encode(typeof value === "string" ? value : JSON.stringify(value)),
    created: new Date(),
  };
}

const status = (id: string, labels: Record<string, string>) => ({
  device_id: id,
  status: "ready",
  timestamp: new Date().toISOString(),
  agent_version: "t",
  labels,
  deployments: {},
});

const registration = (labels: Record<string, string>) => ({
  labels,
  updated_at: new Date().toISOString(),
});

Deno.test("FleetState: only registrations, unregistrations and registry relabels matter for targeting", () => {
  const s = new FleetState();
  assert(s.applyRegistration(entry("pi-1", registration({ site: "lab" }))), "registered");
  assert(!s.applyRegistration(entry("pi-1", registration({ site: "lab" }))), "same labels");
  assert(s.applyRegistration(entry("pi-1", registration({ site: "home" }))), "relabel");
  assertEquals(s.registry.get("pi-1")?.labels, { site: "home" });
  assert(s.applyRegistration(entry("pi-1", "", "DEL")), "unregistered");
  assert(!s.applyRegistration(entry("pi-1", "", "DEL")), "already gone");
  assertEquals(s.registry.size, 0);
});

Deno.test("FleetState: a device's own status never changes targeting, whatever labels it claims", () => {
  const s = new FleetState();
  s.applyRegistration(entry("pi-1", registration({ site: "x" })));
  s.applyStatus(entry("pi-1", status("pi-1", { site: "bank" })));
  s.applyStatus(entry("pi-2", status("pi-2", { site: "bank" })));
  const bank = DeploymentManifest.parse({
    name: "bank",
    selector: { labels: { site: "bank" } },
    score: { type: "PodmanV0", services: [{ name: "db", image: "busybox" }] },
  });
  s.applyDeployment(entry("bank", bank));
  assertEquals(s.view(Date.now()).deployments[0]?.targeted, 0);
  const devices = s.view(Date.now()).devices;
  assertEquals(devices.map((d) => [d.device_id, d.labels, d.reported_labels]), [
    ["pi-1", { site: "x" }, { site: "bank" }],
    ["pi-2", {}, { site: "bank" }],
  ]);
});

Deno.test("FleetState: an invalid registry entry keeps the last valid labels and says why", () => {
  const s = new FleetState();
  assert(s.applyRegistration(entry("pi-1", registration({ site: "lab" }))));
  assert(!s.applyRegistration(entry("pi-1", { labels: { site: "a b" } })), "labels kept");
  assertEquals(s.registry.get("pi-1")?.labels, { site: "lab" });
  assertStringIncludes(s.registry.get("pi-1")?.error ?? "", "labels.site");
  // Never valid: registered, but no labels to match (explicit device lists still work).
  assert(s.applyRegistration(entry("pi-2", "{not json")));
  assertEquals(s.registry.get("pi-2")?.labels, undefined);
  assert(!s.applyRegistration(entry("Not_A_Device", registration({}))));
});

Deno.test("FleetState: an invalid status keeps the last reported labels for display", () => {
  const s = new FleetState();
  s.applyStatus(entry("pi-1", status("pi-1", { site: "lab" })));
  s.applyStatus(entry("pi-1", "{not json"));
  assertEquals(s.statuses.get("pi-1")?.labels, { site: "lab" });
  assertStringIncludes(s.statuses.get("pi-1")?.error ?? "", "invalid JSON");
  s.applyStatus(entry("pi-2", status("pi-3", {})));
  assertStringIncludes(s.statuses.get("pi-2")?.error ?? "", "does not match key");
});

Deno.test("FleetState: a status under a key that is no device id is ignored", () => {
  const s = new FleetState();
  s.applyStatus(entry("Not_A_Device", status("not-a-device", {})));
  assertEquals(s.statuses.size, 0);
  s.applyStatus(entry("pi-1", status("pi-1", {})));
  s.applyStatus(entry("pi-1", "", "DEL"));
  assertEquals(s.statuses.size, 0);
});

Deno.test("FleetState: heartbeats note liveness and tell when the stored status is behind", () => {
  const s = new FleetState();
  // Never seen a status: re-read it.
  assertEquals(
    s.applyHeartbeat("a", { status: "ready", status_revision: 3 }, 1_000),
    "missed-status",
  );
  const put = entry("a", status("a", {}));
  s.applyStatus(put);
  const hb = { status: "ready" as const, status_revision: put.revision };
  assertEquals(s.applyHeartbeat("a", hb, 2_000), "ok");
  assertEquals(s.statuses.get("a")?.heartbeatAt, 2_000);
  // The device put a newer status the watch has not brought: re-read.
  assertEquals(
    s.applyHeartbeat("a", { ...hb, status_revision: put.revision + 5 }, 3_000),
    "missed-status",
  );
  // The re-read's newer value wins; the watch's late older one is ignored; liveness is kept.
  const newer = { ...entry("a", { ...status("a", {}), status: "degraded" }), revision: 1_000 };
  s.applyStatus(newer);
  s.applyStatus({ ...entry("a", status("a", {})), revision: 999 });
  assertEquals(s.statuses.get("a")?.status?.status, "degraded");
  assertEquals(s.statuses.get("a")?.revision, 1_000);
  assertEquals(s.statuses.get("a")?.heartbeatAt, 3_000);
  // Not a device id: ignored.
  assertEquals(s.applyHeartbeat("A.b", hb, 4_000), "ok");
});

Deno.test("FleetState: invalid or misnamed manifests are frozen, not dropped", () => {
  const s = new FleetState();
  s.applyDeployment(entry("web", { name: "web" }));
  s.applyDeployment(entry("db", {
    name: "other",
    selector: { devices: ["a"] },
    score: { type: "PodmanV0", services: [{ name: "x", image: "busybox" }] },
  }));
  assertEquals([...s.frozenDeployments()].sort(), ["db", "web"]);
  assertEquals(s.validManifests(), []);
  assertStringIncludes(s.manifests.get("db")!.error!, 'name "other" does not match key "db"');
});

Deno.test("FleetState: echoes of its own writes are ignored, newer foreign writes are news", () => {
  const s = new FleetState();
  const first = entry("pi-1.web", { b: 1, a: 2 });
  assert(s.applyDesired(first));
  assertEquals(s.desired.get("pi-1.web")?.canonical, '{"a":2,"b":1}');
  s.recordPut("pi-1.web", { canonical: '{"a":3}' }, first.revision + 5);
  // The watch delivers an older value after our write: ignored.
  assert(!s.applyDesired({ ...entry("pi-1.web", { a: 9 }), revision: first.revision + 1 }));
  assertEquals(s.desired.get("pi-1.web")?.canonical, '{"a":3}');
  // The echo of our own write: ignored.
  assert(!s.applyDesired({ ...entry("pi-1.web", { a: 3 }), revision: first.revision + 5 }));
  // Someone else deletes it later: news.
  assert(s.applyDesired({ ...entry("pi-1.web", "", "DEL"), revision: first.revision + 6 }));
  assertEquals(s.desired.has("pi-1.web"), false);
});

Deno.test("FleetState: a stored deployment_revision is kept apart from the content", () => {
  const s = new FleetState();
  assert(s.applyDesired(entry("pi-1.web", { deployment: "web", deployment_revision: 27, x: 1 })));
  assertEquals(s.desired.get("pi-1.web")?.canonical, '{"deployment":"web","x":1}');
  assertEquals(s.desired.get("pi-1.web")?.deploymentRevision, 27);
  // Not a positive integer: no revision, and the content stays what it is.
  s.applyDesired({ ...entry("pi-1.web", { deployment_revision: "27" }), revision: 99 });
  assertEquals(s.desired.get("pi-1.web")?.deploymentRevision, undefined);
  s.applyDeployment(entry("web", {
    name: "web",
    selector: { devices: ["pi-1"] },
    score: { type: "PodmanV0", services: [{ name: "x", image: "busybox" }] },
  }));
  assertEquals([...s.manifestRevisions().values()], [s.manifests.get("web")!.revision]);
});

Deno.test("rolloutOutcome: done, waiting while anything is pending, failed otherwise", () => {
  const view = (ready: number, failed: number, pending: number): DeploymentView => ({
    name: "web",
    revision: 3,
    targeted: ready + failed + pending,
    ready,
    failed,
    pending,
    offline: 0,
    devices: [],
  });
  assertEquals(rolloutOutcome(undefined).kind, "waiting");
  assertEquals(rolloutOutcome(view(2, 0, 0)).kind, "done");
  assertEquals(rolloutOutcome(view(0, 0, 0)).kind, "done");
  assertEquals(rolloutOutcome(view(1, 1, 1)).kind, "waiting");
  assertEquals(rolloutOutcome(view(1, 1, 0)).kind, "failed");
});
