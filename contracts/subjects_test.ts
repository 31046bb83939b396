import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import {
  DESIRED_SNAPSHOT_PREFIX,
  DESIRED_SNAPSHOT_QUEUE,
  DesiredSnapshot,
  DesiredSnapshotReply,
  desiredSnapshotSubject,
  desiredStateChangesSubject,
  desiredStateGetSubject,
  directGetSubject,
  Heartbeat,
  HEARTBEAT_PREFIX,
  heartbeatSubject,
  InvalidNameError,
  kvStream,
  kvSubject,
  MAX_SNAPSHOT_DEPLOYMENTS,
  statusSubject,
} from "./mod.ts";

// These literals are a contract with nats-server's KV conventions and with other
// Drover processes (the account exports in operator/auth): changing one must fail here.
Deno.test("subjects are locked", () => {
  assertEquals(kvStream("desired-state"), "KV_desired-state");
  assertEquals(kvSubject("agent-status", "pi-1"), "$KV.agent-status.pi-1");
  assertEquals(directGetSubject("KV_x", "$KV.x.k"), "$JS.API.DIRECT.GET.KV_x.$KV.x.k");
  assertEquals(statusSubject("pi-1"), "$KV.agent-status.pi-1");
  assertEquals(desiredStateChangesSubject("pi-1"), "$KV.desired-state.pi-1.*");
  assertEquals(
    desiredStateGetSubject("pi-1", "hello"),
    "$JS.API.DIRECT.GET.KV_desired-state.$KV.desired-state.pi-1.hello",
  );
  assertEquals(DESIRED_SNAPSHOT_PREFIX, "drover.desired.snapshot");
  assertEquals(DESIRED_SNAPSHOT_QUEUE, "drover-operator");
  assertEquals(desiredSnapshotSubject("pi-1"), "drover.desired.snapshot.pi-1");
  assertEquals(HEARTBEAT_PREFIX, "drover.heartbeat");
  assertEquals(heartbeatSubject("pi-1"), "drover.heartbeat.pi-1");
});

Deno.test("subjects refuse names that would widen them", () => {
  for (const bad of ["a.b", "*", ">", "A", ""]) {
    assertThrows(() => statusSubject(bad), InvalidNameError);
    assertThrows(() => desiredStateChangesSubject(bad), InvalidNameError);
    assertThrows(() => desiredSnapshotSubject(bad), InvalidNameError);
    assertThrows(() => heartbeatSubject(bad), InvalidNameError);
    assertThrows(() => desiredStateGetSubject("pi-1", bad), InvalidNameError);
  }
});

Deno.test("snapshot reply: a listing or an error, bounded and validated", () => {
  const ok = { device: "pi-1", as_of_revision: 12, deployments: { hello: 7, db: 12 } };
  assertEquals(DesiredSnapshot.parse(ok), ok);
  assertEquals(DesiredSnapshotReply.parse({ error: "starting" }), { error: "starting" });
  assert(!DesiredSnapshot.safeParse({ ...ok, deployments: { "Bad.Name": 1 } }).success);
  assert(!DesiredSnapshot.safeParse({ ...ok, deployments: { hello: 0 } }).success);
  assert(!DesiredSnapshot.safeParse({ ...ok, as_of_revision: -1 }).success);
  const many = Object.fromEntries(
    Array.from({ length: MAX_SNAPSHOT_DEPLOYMENTS + 1 }, (_, i) => [`d${i}`, 1]),
  );
  assert(!DesiredSnapshot.safeParse({ ...ok, deployments: many }).success);
});

Deno.test("heartbeat: status word and status revision, newer fields stripped", () => {
  assertEquals(Heartbeat.parse({ status: "ready", status_revision: 7, extra: 1 }), {
    status: "ready",
    status_revision: 7,
  });
  assert(!Heartbeat.safeParse({ status: "fine", status_revision: 7 }).success);
  assert(!Heartbeat.safeParse({ status: "ready", status_revision: -1 }).success);
});
