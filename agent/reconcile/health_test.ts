import { DesiredState, PodmanService } from "@drover/contracts";
import { assert, assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import type { ObservedContainer } from "../runtime/runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import {
  HEALTH_ABANDONED_MAX_INTERVALS,
  healthCheckSpec,
  healthTargets,
  nextCheckDelayMs,
  serviceHealth,
  stopTimeoutSeconds,
  unhealthyMessage,
} from "./health.ts";
import { hashKey } from "./plan.ts";
import { deploymentStatus } from "./status.ts";

const CHECK = { test: ["CMD", "true"], interval: "1s", timeout: "2s", retries: 2 };

function entry(services: unknown[]): DesiredEntry {
  const state = DesiredState.parse({ deployment: "shop", score: { type: "PodmanV0", services } });
  return { kind: "valid", deployment: "shop", revision: 3, state };
}

function container(service: string, extra: Partial<ObservedContainer> = {}): ObservedContainer {
  return {
    id: `id-${service}`,
    name: `shop_${service}`,
    deployment: "shop",
    service,
    revision: 3,
    specHash: `h-${service}`,
    state: "running",
    image: "busybox:1",
    startedAtMs: 1000,
    labels: {},
    ...extra,
  };
}

const hashes = new Map(([["web", "h-web"], ["db", "h-db"], ["plain", "h-plain"]] as const).map((
  [s, h],
) => [hashKey("shop", s), h]));

function status(services: unknown[], observed: ObservedContainer[], reports = new Map()) {
  return deploymentStatus({
    deployment: "shop",
    entry: entry(services),
    observed,
    specHashes: hashes,
    nowMs: 100_000,
    health: reports,
  })!;
}

Deno.test("healthCheckSpec and stopTimeoutSeconds: compose strings to numbers", () => {
  const service = PodmanService.parse({
    name: "web",
    image: "busybox:1",
    healthcheck: { ...CHECK, start_period: "1m" },
  });
  assertEquals(healthCheckSpec(service.healthcheck), {
    test: ["CMD", "true"],
    intervalMs: 1000,
    timeoutMs: 2000,
    retries: 2,
    startPeriodMs: 60_000,
  });
  assertEquals(healthCheckSpec(undefined), undefined);
  assertEquals(stopTimeoutSeconds(service), 10);
  assertEquals(stopTimeoutSeconds({ ...service, stop_timeout: "1m" }), 60);
  assertEquals(stopTimeoutSeconds({ ...service, stop_timeout: "0s" }), 0);
});

Deno.test("healthTargets: running containers of the desired spec whose check runs a command", () => {
  const e = entry([
    { name: "web", image: "busybox:1", healthcheck: CHECK },
    { name: "db", image: "busybox:1", healthcheck: { test: ["NONE"] } },
    { name: "plain", image: "busybox:1" },
  ]);
  const of = (s: string) => hashes.get(hashKey("shop", s));
  assertEquals(
    healthTargets(e, [container("web"), container("db"), container("plain")], of),
    [{
      containerId: "id-web",
      deployment: "shop",
      service: "web",
      intervalMs: 1000,
      timeoutMs: 2000,
      startedAtMs: 1000,
    }],
  );
  // Stopped, or an outdated container about to be replaced: not checked.
  assertEquals(healthTargets(e, [container("web", { state: "exited" })], of), []);
  assertEquals(healthTargets(e, [container("web", { specHash: "old" })], of), []);
  assertEquals(healthTargets(undefined, [container("web")], of), []);
});

Deno.test("nextCheckDelayMs: one interval after the latest check or the start", () => {
  const interval = 10_000;
  // First check one interval after the start.
  assertEquals(nextCheckDelayMs({ intervalMs: interval, nowMs: 1000, startedAtMs: 0 }), 9000);
  // A container found long running (agent restart) is checked at once.
  assertEquals(nextCheckDelayMs({ intervalMs: interval, nowMs: 500_000, startedAtMs: 0 }), 0);
  // A check podman ran itself (systemd timer) moves the next one.
  assertEquals(
    nextCheckDelayMs({
      intervalMs: interval,
      nowMs: 50_000,
      startedAtMs: 0,
      lastEndedAtMs: 45_000,
    }),
    5000,
  );
  assertEquals(nextCheckDelayMs({ intervalMs: interval, nowMs: 7 }), interval);
  // Given-up calls back off, bounded.
  assertEquals(
    nextCheckDelayMs({ intervalMs: interval, nowMs: 0, lastEndedAtMs: 0, abandoned: 2 }),
    4 * interval,
  );
  assertEquals(
    nextCheckDelayMs({ intervalMs: interval, nowMs: 0, lastEndedAtMs: 0, abandoned: 30 }),
    HEALTH_ABANDONED_MAX_INTERVALS * interval,
  );
});

Deno.test("serviceHealth: absent without a check or a container, starting until a verdict", () => {
  const withCheck = PodmanService.parse({ name: "web", image: "b", healthcheck: CHECK });
  const none = PodmanService.parse({ name: "web", image: "b", healthcheck: { test: ["NONE"] } });
  const plain = PodmanService.parse({ name: "web", image: "b" });
  assertEquals(serviceHealth(withCheck, container("web")), "starting");
  assertEquals(serviceHealth(withCheck, container("web", { health: "healthy" })), "healthy");
  assertEquals(serviceHealth(withCheck, undefined), undefined);
  assertEquals(serviceHealth(none, container("web", { health: "healthy" })), undefined);
  assertEquals(serviceHealth(plain, container("web")), undefined);
});

Deno.test("deployment status: running only when every health check passes", () => {
  const services = [
    { name: "web", image: "busybox:1", healthcheck: CHECK },
    { name: "plain", image: "busybox:1" },
  ];
  const starting = status(services, [container("web"), container("plain")]);
  assertEquals(starting.phase, "pending");
  assertEquals(starting.services.web?.health, "starting");
  assertEquals(starting.services.plain?.health, undefined);
  assertEquals(starting.message, 'waiting for the health check of service "web" to pass');

  const healthy = status(services, [container("web", { health: "healthy" }), container("plain")]);
  assertEquals(healthy.phase, "running");
  assertEquals(healthy.message, undefined);
  assertEquals(healthy.services.web?.health, "healthy");
});

Deno.test("deployment status: unhealthy fails it, naming the service and the last output", () => {
  const services = [{ name: "web", image: "busybox:1", healthcheck: CHECK }];
  const reports = new Map([["id-web", {
    status: "unhealthy" as const,
    failingStreak: 2,
    lastExitCode: 7,
    lastOutput: "wget: can't connect\nto remote host",
  }]]);
  const failed = status(services, [container("web", { health: "unhealthy" })], reports);
  assertEquals(failed.phase, "failed");
  assertEquals(failed.services.web?.health, "unhealthy");
  assertEquals(
    failed.message,
    'service "web" is unhealthy: 2 failed health checks in a row ' +
      "(exit code 7: wget: can't connect to remote host)",
  );
  // Without a report yet (list first), still failed and named.
  const bare = status(services, [container("web", { health: "unhealthy" })]);
  assertEquals(bare.phase, "failed");
  assertStringIncludes(bare.message!, 'service "web" is unhealthy');
});

Deno.test("unhealthyMessage: a timeout says so; long output is cut", () => {
  const timedOut = unhealthyMessage("web", {
    status: "unhealthy",
    failingStreak: 1,
    lastExitCode: -1,
  });
  assertEquals(timedOut, 'service "web" is unhealthy: 1 failed health check in a row (timed out)');
  const long = unhealthyMessage("web", {
    status: "unhealthy",
    failingStreak: 3,
    lastExitCode: 1,
    lastOutput: "x".repeat(1000),
  });
  assert(long.length < 250, `${long.length}`);
  assert(long.endsWith("…)"));
});
