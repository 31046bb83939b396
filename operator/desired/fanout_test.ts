import { canonicalJson, DeploymentManifest, type DeploymentManifestInput } from "@drover/contracts";
import { assert, assertEquals } from "../../tests/support/assert.ts";
import { desiredContent, diff, type StoredDesired, targets } from "./fanout.ts";
import { type KnownDevice, targetedDevices } from "./targeting.ts";

function manifest(name: string, selector: DeploymentManifestInput["selector"], image = "busybox") {
  return DeploymentManifest.parse({
    name,
    selector,
    score: { type: "PodmanV0", services: [{ name: "web", image }] },
  });
}

/** Key → what the bucket holds after the writes (a string: content without a revision). */
function stored(puts: Map<string, string | StoredDesired>): Map<string, StoredDesired> {
  return new Map(
    [...puts].map(([k, v]) => [k, typeof v === "string" ? { canonical: v } : { ...v }]),
  );
}

const devices: KnownDevice[] = [
  { id: "pi-1", labels: { site: "lab", arch: "arm64" } },
  { id: "pi-2", labels: { site: "lab", arch: "amd64" } },
  { id: "pi-3", labels: { site: "home" } },
];

Deno.test("targetedDevices: label selector picks only matching devices", () => {
  assertEquals([...targetedDevices(manifest("web", { labels: { site: "lab" } }), devices)], [
    "pi-1",
    "pi-2",
  ]);
  assertEquals(
    [...targetedDevices(manifest("web", { labels: { site: "lab", arch: "arm64" } }), devices)],
    ["pi-1"],
  );
});

Deno.test("targetedDevices: empty label selector matches every known device", () => {
  assertEquals([...targetedDevices(manifest("web", { labels: {} }), devices)].sort(), [
    "pi-1",
    "pi-2",
    "pi-3",
  ]);
});

Deno.test("targetedDevices: explicit devices are targeted even when unknown, unioned with labels", () => {
  const m = manifest("web", { devices: ["pi-9", "pi-3"], labels: { arch: "arm64" } });
  assertEquals([...targetedDevices(m, devices)].sort(), ["pi-1", "pi-3", "pi-9"]);
  assertEquals([...targetedDevices(manifest("web", { devices: ["pi-9"] }), devices)], ["pi-9"]);
});

Deno.test("targets: one key per device and deployment, sharing the value", () => {
  const wanted = targets([
    manifest("web", { labels: { site: "lab" } }),
    manifest("db", { devices: ["pi-3"] }),
  ], devices);
  assertEquals([...wanted.keys()].sort(), ["pi-1.web", "pi-2.web", "pi-3.db"]);
  assert(wanted.get("pi-1.web") === wanted.get("pi-2.web"));
  assertEquals(wanted.get("pi-3.db")?.deployment, "db");
});

Deno.test("diff: nothing to do when the bucket already holds the same content", () => {
  const wanted = targets([manifest("web", { labels: { site: "lab" } })], devices);
  const first = diff(wanted, new Map());
  assertEquals([...first.put.keys()].sort(), ["pi-1.web", "pi-2.web"]);
  assertEquals(first.delete, []);
  // Feed the writes back: the next pass is empty (no revision churn).
  const second = diff(wanted, stored(first.put));
  assertEquals(second.put.size, 0);
  assertEquals(second.delete, []);
});

Deno.test("diff: content compared canonically, whatever the key order stored", () => {
  const wanted = targets([manifest("web", { devices: ["pi-1"] })], devices);
  const value = wanted.get("pi-1.web")!;
  const reordered = JSON.stringify({ score: value.score, deployment: value.deployment });
  assert(reordered !== canonicalJson(value));
  const current = stored(new Map([["pi-1.web", canonicalJson(JSON.parse(reordered))]]));
  assertEquals(diff(wanted, current).put.size, 0);
});

Deno.test("diff: changed content is put, untargeted and orphaned keys deleted", () => {
  const before = targets([manifest("web", { labels: { site: "lab" } }, "busybox:1")], devices);
  const current = stored(diff(before, new Map()).put);
  current.set("pi-3.gone", { canonical: "{}" });
  const relabelled = devices.map((d) => d.id === "pi-2" ? { ...d, labels: { site: "home" } } : d);
  const after = targets([manifest("web", { labels: { site: "lab" } }, "busybox:2")], relabelled);
  const result = diff(after, current);
  assertEquals([...result.put.keys()], ["pi-1.web"]);
  assertEquals(result.delete.sort(), ["pi-2.web", "pi-3.gone"]);
});

Deno.test("diff: keys of frozen deployments are kept", () => {
  const current = stored(new Map([["pi-1.web", "{}"], ["pi-1.db", "{}"]]));
  const result = diff(new Map(), current, new Set(["web"]));
  assertEquals(result.delete, ["pi-1.db"]);
});

Deno.test("diff: held keys are neither rewritten nor deleted", () => {
  const current = stored(new Map([["pi-1.web", "old"], ["pi-2.web", "old"]]));
  const result = diff(new Map(), current, new Set(), new Set(["pi-1.web"]));
  assertEquals(result.delete, ["pi-2.web"]);
  assertEquals(result.put.size, 0);
});

Deno.test("targets + diff: 5000 devices stay linear enough to run in one pass", () => {
  const fleet: KnownDevice[] = Array.from(
    { length: 5000 },
    (_, i) => ({ id: `d-${i}`, labels: { ring: String(i % 2) } }),
  );
  const wanted = targets([manifest("web", { labels: { ring: "0" } })], fleet);
  assertEquals(wanted.size, 2500);
  const first = diff(wanted, new Map());
  assertEquals(first.put.size, 2500);
  assertEquals(diff(wanted, stored(first.put)).put.size, 0);
});

Deno.test("targets: a device absent from the known (registered) devices is never label-selected", () => {
  // Only registered devices are KnownDevices; a device that merely reports site=lab is not one.
  const registeredOnly: KnownDevice[] = [{ id: "pi-1", labels: { site: "x" } }];
  const wanted = targets([
    manifest("web", { labels: { site: "lab" } }),
    manifest("all", { labels: {} }),
    manifest("pinned", { devices: ["pi-claims-lab"] }),
  ], registeredOnly);
  assertEquals([...wanted.keys()].sort(), ["pi-1.all", "pi-claims-lab.pinned"]);
});

Deno.test("diff: the manifest revision is written with changed content, never alone", () => {
  const lab = { labels: { site: "lab" } };
  const v27 = targets([manifest("web", lab, "busybox:1")], devices, new Map([["web", 27]]));
  const first = diff(v27, new Map());
  assertEquals(JSON.parse(first.put.get("pi-1.web")!.value).deployment_revision, 27);
  assertEquals(first.put.get("pi-1.web")!.deploymentRevision, 27);
  const bucket = stored(first.put);
  // Revision 28 only widens the selector: pi-3 gets it (as 28), pi-1 and pi-2 are not rewritten.
  const v28 = targets(
    [manifest("web", { labels: {} }, "busybox:1")],
    devices,
    new Map([["web", 28]]),
  );
  const widened = diff(v28, bucket);
  assertEquals([...widened.put.keys()], ["pi-3.web"]);
  assertEquals(widened.put.get("pi-3.web")!.deploymentRevision, 28);
  for (const [k, v] of widened.put) bucket.set(k, v);
  // Revision 29 changes the image: every device is rewritten, named 29.
  const v29 = targets(
    [manifest("web", { labels: {} }, "busybox:2")],
    devices,
    new Map([["web", 29]]),
  );
  const changed = diff(v29, bucket);
  assertEquals([...changed.put.keys()].sort(), ["pi-1.web", "pi-2.web", "pi-3.web"]);
  assert([...changed.put.values()].every((w) => w.deploymentRevision === 29));
});

Deno.test("diff: a stored value without a deployment revision (or a higher one) is named once", () => {
  const wanted = targets([manifest("web", { devices: ["pi-1"] })], devices, new Map([["web", 5]]));
  const content = desiredContent(wanted.get("pi-1.web")!);
  const before = stored(new Map([["pi-1.web", content]]));
  assertEquals([...diff(wanted, before).put.keys()], ["pi-1.web"]);
  const recreated = stored(new Map([["pi-1.web", { canonical: content, deploymentRevision: 90 }]]));
  assertEquals([...diff(wanted, recreated).put.keys()], ["pi-1.web"]);
  const named = stored(new Map([["pi-1.web", { canonical: content, deploymentRevision: 3 }]]));
  assertEquals(diff(wanted, named).put.size, 0);
});
