import { assertEquals } from "../../tests/support/assert.ts";
import type { ObservedContainer } from "../runtime/runtime.ts";
import { concernsDevice, ownContainers } from "./ownership.ts";

function c(name: string, deployment: string, device?: string): ObservedContainer {
  return {
    id: name,
    name,
    deployment,
    service: "web",
    revision: 1,
    specHash: "h",
    state: "running",
    image: "busybox:1",
    labels: {},
    ...(device !== undefined ? { device } : {}),
  };
}

Deno.test("ownContainers: own label yes, another device's never, unlabelled only if claimed", () => {
  const observed = [
    c("mine", "shop", "pi-1"),
    c("theirs", "shop", "pi-2"),
    c("old-claimed", "blog", undefined),
    c("old-unknown", "wiki", undefined),
    c("theirs-claimed", "blog", "pi-2"),
  ];
  const claimed = (d: string) => d === "shop" || d === "blog";
  assertEquals(ownContainers(observed, "pi-1", claimed).map((x) => x.name), [
    "mine",
    "old-claimed",
  ]);
  // The other agent sees the mirror image; nobody ever gets the other's labelled containers.
  assertEquals(ownContainers(observed, "pi-2", () => false).map((x) => x.name), [
    "theirs",
    "theirs-claimed",
  ]);
});

Deno.test("concernsDevice: events of another device's containers are ignored", () => {
  const event = (device?: string) => ({
    kind: "container" as const,
    action: "died",
    deployment: "shop",
    ...(device ? { device } : {}),
  });
  assertEquals(concernsDevice(event("pi-1"), "pi-1"), true);
  assertEquals(concernsDevice(event(), "pi-1"), true);
  assertEquals(concernsDevice(event("pi-2"), "pi-1"), false);
  assertEquals(concernsDevice({ kind: "resync", reason: "x" }, "pi-1"), true);
});
