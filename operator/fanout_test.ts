import { canonicalJson, DeploymentManifest, type DeploymentManifestInput } from "@drover/contracts";
import { assert, assertEquals } from "../tests/support/assert.ts";
import { diff, type KnownDevice, targetedDevices, targets } from "./fanout.ts";

function manifest(name: string, selector: DeploymentManifestInput["selector"], image = "busybox") {
  return DeploymentManifest.parse({
    name,
    selector,
    score: { type: "PodmanV0", services: [{ name: "web", image }] },
  });
}

/** Key → canonical text, as the bucket would hold after the writes. */
function stored(puts: Map<string, string>): Map<string, { canonical: string }> {
  return new Map([...puts].map(([k, canonical]) => [k, { canonical }]));
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
