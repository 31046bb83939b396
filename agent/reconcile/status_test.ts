import { DesiredState } from "@drover/contracts";
import { assertEquals } from "../../tests/support/assert.ts";
import type { ObservedContainer } from "../runtime/runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import { hashKey } from "./plan.ts";
import {
  crashLoopRecheckMs,
  deploymentStatus,
  deviceMessage,
  minReadyRecheckMs,
  summariseDevice,
} from "./status.ts";

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
    violations: [{
      rule: "allowed_registries",
      message: "image registry docker.io is not allowed",
    }],
  });
  assertEquals([refused?.deployment_revision, refused?.phase], [28, "failed"]);
  // A desired state written before deployment revisions existed: nothing is echoed.
  const old = deploymentStatus({ deployment: "web", entry: valid(), observed: [], specHashes });
  assertEquals(old !== undefined && "deployment_revision" in old, false);
});

const hashes = new Map([[hashKey("web", "httpd"), "h"]]);
const NOW = 2_000_000_000_000;

Deno.test("deploymentStatus: a crash loop is failed with the exit code and restarts, even while up", () => {
  const looping = { ...container, restarts: 14, exitCode: 3, startedAtMs: NOW - 1_000 };
  for (const state of ["running", "stopped"]) {
    const s = deploymentStatus({
      deployment: "web",
      entry: valid(),
      observed: [{ ...looping, state }],
      specHashes: hashes,
      // The pass error a crash loop causes is less telling than the loop itself.
      error: 'Cannot converge deployment "web": still changing after 5 rounds',
      nowMs: NOW,
    })!;
    assertEquals(s.phase, "failed", state);
    assertEquals(
      s.message,
      'service "httpd" keeps exiting (exit code 3, 14 restarts); ' +
        "failed until it runs 30 s without a restart",
    );
  }
  // Healthy for the whole window: running again, the restarts stay in the service status.
  const healed = deploymentStatus({
    deployment: "web",
    entry: valid(),
    observed: [{ ...looping, startedAtMs: NOW - 30_000 }],
    specHashes: hashes,
    nowMs: NOW,
  })!;
  assertEquals([healed.phase, healed.message, healed.services.httpd?.restarts], [
    "running",
    undefined,
    14,
  ]);
  assertEquals(crashLoopRecheckMs([looping], NOW), 29_000);
  assertEquals(crashLoopRecheckMs([container], NOW), undefined);
});

Deno.test("deviceMessage: why a device is not ready, on one bounded line", () => {
  const running = deploymentStatus({
    deployment: "web",
    entry: valid(),
    observed: [container],
    specHashes: hashes,
  })!;
  const failed = {
    ...running,
    phase: "failed" as const,
    message: "policy.max_containers: no\nroom",
  };
  const pending = { ...running, phase: "pending" as const };
  assertEquals(deviceMessage({ a: running }, { device: "ready" }), undefined);
  assertEquals(
    deviceMessage({}, { device: "degraded", runtimeProblem: "container runtime unreachable: x" }),
    "container runtime unreachable: x",
  );
  assertEquals(
    deviceMessage({ a: running, b: failed, c: pending }, { device: "degraded" }),
    "2 of 3 deployments not running: b failed: policy.max_containers: no room; c pending",
  );
  assertEquals(deviceMessage({}, { device: "starting" }), "first reconcile pass not done yet");
  assertEquals(deviceMessage({}, { device: "stopped" }), "agent stopped; containers keep running");
  const long = deviceMessage({ b: { ...failed, message: "x".repeat(2_000) } }, {
    device: "degraded",
  })!;
  assertEquals(long.length, 500);
  assertEquals(long.at(-1), "…");
  // The device summary the message explains.
  assertEquals(
    summariseDevice([running, failed], { firstPassDone: true, runtimeAvailable: true }),
    "degraded",
  );
  assertEquals(
    summariseDevice([running], { firstPassDone: false, runtimeAvailable: true }),
    "starting",
  );
  assertEquals(
    summariseDevice([running], { firstPassDone: true, runtimeAvailable: false }),
    "degraded",
  );
  assertEquals(
    summariseDevice([running], { firstPassDone: true, runtimeAvailable: true }),
    "ready",
  );
});

Deno.test("deploymentStatus: runtime unreachable — unknown with the age, never running from stale data", () => {
  const problem = "container runtime unreachable: connect ENOENT /run/podman/podman.sock";
  const stale = deploymentStatus({
    deployment: "web",
    entry: valid(28),
    observed: [container],
    specHashes: hashes,
    waiting: problem,
    observedAtMs: NOW - 40_000,
    nowMs: NOW,
  })!;
  assertEquals([stale.phase, stale.deployment_revision], ["unknown", 28]);
  const at = new Date(NOW - 40_000).toISOString();
  assertEquals(stale.message, `${problem}; last observed ${at} (running)`);
  assertEquals(stale.observed_at, at);
  // The control: the same observation with the runtime there is running.
  const fresh = deploymentStatus({
    deployment: "web",
    entry: valid(28),
    observed: [container],
    specHashes: hashes,
    observedAtMs: NOW - 40_000,
    nowMs: NOW,
  })!;
  assertEquals(fresh.phase, "running");
  // A crash loop seen before the runtime went away stays failed: time alone cannot heal it
  // while nobody can see the container (40 s later it would have counted as healthy).
  const looping = { ...container, restarts: 9, exitCode: 3, startedAtMs: NOW - 41_000 };
  const loop = deploymentStatus({
    deployment: "web",
    entry: valid(28),
    observed: [looping],
    specHashes: hashes,
    waiting: problem,
    observedAtMs: NOW - 40_000,
    nowMs: NOW,
  })!;
  assertEquals(loop.phase, "failed");
  assertEquals(
    deploymentStatus({
      deployment: "web",
      entry: valid(28),
      observed: [looping],
      specHashes: hashes,
      observedAtMs: NOW - 40_000,
      nowMs: NOW,
    })!.phase,
    "running",
    "with the runtime there, the loop has healed by now",
  );
});

Deno.test("deploymentStatus: running counts as ready only after min_ready (default 10 s) or a passed check", () => {
  const at = (upMs: number, services: DesiredEntry = valid()) =>
    deploymentStatus({
      deployment: "web",
      entry: services,
      observed: [{ ...container, startedAtMs: NOW - upMs }],
      specHashes: hashes,
      nowMs: NOW,
    })!;
  const early = at(2_000);
  assertEquals(early.phase, "pending");
  assertEquals(early.message, 'service "httpd" runs for 2 s; ready after 10 s');
  assertEquals(at(10_000).phase, "running");
  // min_ready overrides the default.
  const quick = DesiredState.parse({
    deployment: "web",
    score: {
      type: "PodmanV0",
      services: [{ name: "httpd", image: "busybox:1", min_ready: "1s" }],
    },
  });
  assertEquals(
    at(2_000, { kind: "valid", deployment: "web", revision: 45, state: quick }).phase,
    "running",
  );
  // A passing health check is the proof: no waiting.
  const checked = DesiredState.parse({
    deployment: "web",
    score: {
      type: "PodmanV0",
      services: [{ name: "httpd", image: "busybox:1", healthcheck: { test: ["CMD", "true"] } }],
    },
  });
  const healthy = deploymentStatus({
    deployment: "web",
    entry: { kind: "valid", deployment: "web", revision: 45, state: checked },
    observed: [{ ...container, startedAtMs: NOW - 2_000, health: "healthy" }],
    specHashes: hashes,
    nowMs: NOW,
  })!;
  assertEquals(healthy.phase, "running");
  assertEquals(
    minReadyRecheckMs(valid(), [{ ...container, startedAtMs: NOW - 2_000 }], NOW),
    8_000,
  );
  assertEquals(
    minReadyRecheckMs(valid(), [{ ...container, startedAtMs: NOW - 20_000 }], NOW),
    undefined,
  );
});
