import { DesiredState } from "@drover/contracts";
import { assertEquals } from "../../tests/support/assert.ts";
import type { ObservedContainer } from "../runtime/runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import { hashKey } from "./plan.ts";
import { deploymentStatus } from "./status.ts";

const state = (deploymentRevision?: number) =>
  DesiredState.parse({
    deployment: "web",
    score: { type: "PodmanV0", services: [{ name: "httpd", image: "busybox:1" }] },
    ...(deploymentRevision !== undefined ? { deployment_revision: deploymentRevision } : {}),
  });

const container: ObservedContainer = {
  id: "c1",
  name: "web_httpd",
  deployment: "web",
  service: "httpd",
  revision: 45,
  specHash: "h",
  state: "running",
  image: "busybox:1",
  labels: {},
};

const valid = (deploymentRevision?: number): DesiredEntry => ({
  kind: "valid",
  deployment: "web",
  revision: 45,
  state: state(deploymentRevision),
});

Deno.test("deploymentStatus: echoes the desired state's deployment revision", () => {
  const specHashes = new Map([[hashKey("web", "httpd"), "h"]]);
  const running = deploymentStatus({
    deployment: "web",
    entry: valid(28),
    observed: [container],
    specHashes,
  });
  assertEquals([running?.revision, running?.deployment_revision, running?.phase], [
    45,
    28,
    "running",
  ]);
  const refused = deploymentStatus({
    deployment: "web",
    entry: valid(28),
    observed: [],
    specHashes,
    violations: ["image registry docker.io is not allowed"],
  });
  assertEquals([refused?.deployment_revision, refused?.phase], [28, "failed"]);
  // A desired state written before deployment revisions existed: nothing is echoed.
  const old = deploymentStatus({ deployment: "web", entry: valid(), observed: [], specHashes });
  assertEquals(old !== undefined && "deployment_revision" in old, false);
});
