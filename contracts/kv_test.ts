import { assertEquals, assertThrows } from "../tests/support/assert.ts";
import {
  BUCKET_AGENT_STATUS,
  BUCKET_DEPLOYMENT_HISTORY,
  BUCKET_DEPLOYMENTS,
  BUCKET_DESIRED_STATE,
  BUCKET_DEVICES,
  BUCKET_OPERATOR_LEASES,
  BUCKET_ROLLOUTS,
  containerName,
  deploymentKey,
  desiredStateFilter,
  desiredStateKey,
  deviceKey,
  historyFilter,
  historyKey,
  InvalidDesiredStateKeyError,
  InvalidNameError,
  LABELS,
  MANAGED_LABEL_VALUE,
  NAME_PATTERN,
  parseDesiredStateKey,
  rolloutKey,
  SERVE_LEASE_KEY,
  statusKey,
} from "./mod.ts";

// These literals are a contract with other software: changing one must fail here.
Deno.test("bucket names are locked", () => {
  assertEquals(BUCKET_DESIRED_STATE, "desired-state");
  assertEquals(BUCKET_AGENT_STATUS, "agent-status");
  assertEquals(BUCKET_DEPLOYMENTS, "deployments");
  assertEquals(BUCKET_DEVICES, "devices");
  assertEquals(BUCKET_ROLLOUTS, "rollouts");
  assertEquals(BUCKET_DEPLOYMENT_HISTORY, "deployment-history");
  assertEquals(BUCKET_OPERATOR_LEASES, "operator-leases");
  assertEquals(SERVE_LEASE_KEY, "serve");
});

Deno.test("rollout and history key formats are locked", () => {
  assertEquals(rolloutKey("web"), "web");
  assertEquals(historyKey("web", 12), "web.12");
  assertEquals(historyFilter("web"), "web.*");
  assertThrows(() => historyKey("web", 0), RangeError, "Invalid deployment revision 0");
  assertThrows(() => historyKey("Web", 1), InvalidNameError);
  assertThrows(() => rolloutKey("a.b"), InvalidNameError);
});

Deno.test("container labels and name format are locked", () => {
  assertEquals(LABELS, {
    managed: "drover.managed",
    deployment: "drover.deployment",
    service: "drover.service",
    revision: "drover.revision",
    kvRevision: "drover.kv-revision",
    specHash: "drover.spec-hash",
    device: "drover.device",
  });
  assertEquals(MANAGED_LABEL_VALUE, "true");
  assertEquals(containerName("hello", "web"), "hello_web");
});

Deno.test("key formats are locked", () => {
  assertEquals(desiredStateKey("pi-1", "hello"), "pi-1.hello");
  assertEquals(desiredStateFilter("pi-1"), "pi-1.>");
  assertEquals(statusKey("pi-1"), "pi-1");
  assertEquals(deploymentKey("hello"), "hello");
  assertEquals(deviceKey("pi-1"), "pi-1");
  assertEquals(parseDesiredStateKey("pi-1.hello"), { device: "pi-1", deployment: "hello" });
});

Deno.test("name pattern is locked", () => {
  assertEquals(NAME_PATTERN.source, "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$");
});

Deno.test("key helpers reject bad names and say which name and why", () => {
  const e1 = assertThrows(() => desiredStateKey("Pi", "hello"), InvalidNameError);
  assertEquals(e1.message, 'Invalid device id "Pi": must be lower-case');
  const e2 = assertThrows(() => desiredStateKey("pi", "a.b"), InvalidNameError);
  assertEquals(
    e2.message,
    `Invalid deployment name "a.b": may only contain a-z, 0-9 and '-', found "."`,
  );
  const e3 = assertThrows(() => statusKey("-x"), InvalidNameError);
  assertEquals(e3.message, 'Invalid device id "-x": must start and end with a letter or digit');
  assertThrows(() => deploymentKey("x".repeat(64)), InvalidNameError, "at most 63");
  assertThrows(() => containerName("ok", "*"), InvalidNameError, "service name");
  assertThrows(() => statusKey(""), InvalidNameError, "must not be empty");
  // A device key must never widen a subject (`$KV.devices.<key>`).
  for (const bad of ["pi.1", "pi-*", ">", "Pi"]) {
    assertThrows(() => deviceKey(bad), InvalidNameError, "device id");
  }
});

Deno.test("parseDesiredStateKey rejects keys that are not <device>.<deployment>", () => {
  for (const key of ["pi", "pi.a.b", "pi.", ".a", "PI.a", "pi.>", "pi.*"]) {
    assertThrows(() => parseDesiredStateKey(key), InvalidDesiredStateKeyError, JSON.stringify(key));
  }
});
