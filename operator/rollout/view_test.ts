import { DeploymentManifest } from "@drover/contracts";
import { assertEquals } from "../../tests/support/assert.ts";
import { FleetState } from "../fleet/state.ts";
import { RolloutBook } from "./store.ts";
import { deploymentRolloutInfo } from "./view.ts";

const manifest = (image: string) =>
  DeploymentManifest.parse({
    name: "web",
    selector: { devices: ["pi-1"] },
    score: { type: "PodmanV0", services: [{ name: "httpd", image }] },
  });

Deno.test("deploymentRolloutInfo: history without manifests, marked against the current revision", () => {
  const book = new RolloutBook();
  const fleet = new FleetState();
  assertEquals(deploymentRolloutInfo("web", book, fleet, Date.now()), {});
  book.recordHistory({
    deployment: "web",
    revision: 2,
    manifest: manifest("web:2"),
    created_at: "2026-12-01T10:00:00Z",
    summary: "httpd: image web:1 → web:2",
  });
  book.recordHistory({
    deployment: "web",
    revision: 1,
    manifest: manifest("web:1"),
    created_at: "2026-12-01T09:00:00Z",
    summary: "created",
  });
  fleet.manifests.set("web", { revision: 2, manifest: manifest("web:2") });
  const info = deploymentRolloutInfo("web", book, fleet, Date.now());
  assertEquals(info.rollout, undefined, "no rollout recorded");
  assertEquals(info.history?.map((h) => [h.revision, h.marker, h.summary]), [
    [1, null, "created"],
    [2, "current", "httpd: image web:1 → web:2"],
  ]);
  assertEquals(info.history?.some((h) => "manifest" in h), false);
});
