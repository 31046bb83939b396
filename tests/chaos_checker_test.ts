/**
 * The chaos checker (bench/chaos/checker.ts) over hand-made histories: a clean
 * one passes, and each invariant reports the history that breaks it (a checker
 * that cannot fail would prove nothing).
 */
import { check, type Invariant } from "../bench/chaos/checker.ts";
import {
  type ChaosHistory,
  holderPid,
  type KvRecord,
  parseOperatorLog,
  reduceValue,
} from "../bench/chaos/history.ts";
import { renderChaosSection, rssFamilies, summariseRun } from "../bench/chaos/report.ts";
import { assert, assertEquals } from "./support/assert.ts";

const T0 = Date.parse("2026-12-06T12:00:00Z");
const at = (s: number) => T0 + s * 1000;
const HOLDER = "operator-100-abcd1234";

const lease = (s: number, holder = HOLDER): KvRecord => ({
  t: at(s),
  bucket: "operator-leases",
  key: "serve",
  revision: 0,
  op: "PUT",
  value: { kind: "lease", holder, ttlMs: 8_000 },
});
const status = (s: number, device: string, revision: number, phase = "running"): KvRecord => ({
  t: at(s),
  bucket: "agent-status",
  key: device,
  revision: 0,
  op: "PUT",
  value: { kind: "status", deployments: { web: { revision, phase } } },
});
const rollout = (s: number, revision: number, state: string): KvRecord => ({
  t: at(s),
  bucket: "rollouts",
  key: "web",
  revision: 0,
  op: "PUT",
  value: { kind: "rollout", revision, state },
});
const desired = (s: number, device: string, revision: number, op: "PUT" | "DEL" = "PUT") =>
  ({
    t: at(s),
    bucket: "desired-state",
    key: `${device}.web`,
    revision,
    op,
  }) satisfies KvRecord;

/** A clean run: one deployment, revision 10 then 20 (a fault in between), everything agrees. */
function cleanHistory(): ChaosHistory {
  const leases = Array.from({ length: 30 }, (_, i) => lease(i * 2));
  return {
    seed: 1,
    minutes: 1,
    windowStart: at(0),
    windowEnd: at(50),
    endedAt: at(60),
    devices: [{ id: "agent-0", real: true }, { id: "h-0", real: false }],
    services: { web: ["app"] },
    constantServices: [{ deployment: "web", service: "app" }],
    selectors: { web: { fleet: "yes" } },
    deviceLabels: { "agent-0": { fleet: "yes" }, "h-0": { fleet: "yes", extra: "1" } },
    kv: [
      ...leases,
      { t: at(1), bucket: "deployments", key: "web", revision: 5, op: "PUT" },
      rollout(1.5, 5, "progressing"),
      desired(2, "agent-0", 10),
      desired(2, "h-0", 11),
      status(3, "agent-0", 10),
      status(3, "h-0", 11),
      rollout(3.5, 5, "complete"),
      { t: at(30), bucket: "deployments", key: "web", revision: 6, op: "PUT" },
      rollout(30.5, 6, "progressing"),
      desired(31, "agent-0", 20),
      desired(31, "h-0", 21),
      status(32, "h-0", 21),
      status(45, "agent-0", 20),
      rollout(46, 6, "complete"),
    ],
    heartbeats: [{ t: at(44), device: "agent-0" }],
    ops: [
      {
        seq: 1,
        deployment: "web",
        kind: "apply",
        version: 2,
        startedAt: at(29),
        endedAt: at(30.2),
        code: 0,
        attempts: 1,
        output: "",
      },
    ],
    faults: [{ id: 1, kind: "agent-kill", target: "agent-0", startedAt: at(33), healedAt: at(40) }],
    containers: [
      { t: at(10), device: "agent-0", containers: [c("c1")] },
      { t: at(50), device: "agent-0", containers: [c("c1")] },
    ],
    finalContainers: [{ t: at(55), device: "agent-0", containers: [c("c1")] }],
    rss: [],
    schemaFailures: [],
    operatorLog: [
      { t: at(2.1), pid: 100, kind: "pass", put: 2, deleted: 0, ms: 50 },
      { t: at(31.1), pid: 100, kind: "pass", put: 2, deleted: 0, ms: 50 },
    ],
    deploymentViews: [{ source: "operator-a", deployment: "web", targeted: 2, ready: 2 }],
    deviceViews: [{ source: "operator-a", device: "agent-0", online: true }],
    historyListings: [{ deployment: "web", revisions: [5, 6] }],
    notes: [],
  };
}

function c(id: string, service = "app", deployment = "web") {
  return { id, deployment, service, state: "running" };
}

const BOUND = { boundMs: 60_000 };

function invariantsOf(history: ChaosHistory): Invariant[] {
  return [...new Set(check(history, BOUND).violations.map((v) => v.invariant))].sort();
}

Deno.test("chaos checker: a clean history has no violation and measures recovery", () => {
  const result = check(cleanHistory(), BOUND);
  assertEquals(result.violations, []);
  // The agent was killed and healed at 40 s; it reported the desired revision at 45 s
  // (its heartbeat at 44 s says it is back; the fleet is in sync at 45 s).
  assertEquals(result.recoveries, [{ faultId: 1, kind: "agent-kill", ms: 5_000 }]);
  assertEquals(result.rollouts.complete, 2);
  assertEquals(result.writes, { kv: 4, logged: 4, handovers: 0 });
  // Settled at the last heal (40 s); strictly converged at 45 s.
  assertEquals(result.convergenceMs, 5_000);
});

Deno.test("chaos checker: a device that never reports the desired revision breaks convergence", () => {
  const h = cleanHistory();
  h.kv = h.kv.filter((r) =>
    !(r.bucket === "agent-status" && r.key === "agent-0" && r.t === at(45))
  );
  assertEquals(invariantsOf(h), ["convergence"]);
  const late = cleanHistory();
  // Converged, but 70 s after the last heal: over the bound.
  late.kv.find((r) => r.bucket === "agent-status" && r.t === at(45))!.t = at(110);
  late.endedAt = at(120);
  assert(
    check(late, BOUND).violations.some((v) =>
      v.invariant === "convergence" && v.message.includes("bound")
    ),
  );
  // A device the selector picks must hold the key, and one it does not must not.
  const unselected = cleanHistory();
  unselected.deviceLabels["h-0"] = { fleet: "no" };
  assert(
    check(unselected, BOUND).violations.some((v) =>
      v.message === "h-0 is not selected by web but holds its desired-state key at the end"
    ),
  );
  const offline = cleanHistory();
  offline.deviceViews[0]!.online = false;
  assertEquals(invariantsOf(offline), ["convergence"]);
});

Deno.test("chaos checker: an operator view that disagrees is reported", () => {
  const h = cleanHistory();
  h.deploymentViews.push({ source: "operator-b", deployment: "web", targeted: 2, ready: 1 });
  assertEquals(invariantsOf(h), ["operator-view"]);
});

Deno.test("chaos checker: two containers for one service; a stray one; a missing one", () => {
  const dup = cleanHistory();
  dup.containers.push({ t: at(20), device: "agent-0", containers: [c("c1"), c("c2")] });
  assertEquals(invariantsOf(dup), ["duplicate-container"]);
  const stray = cleanHistory();
  stray.finalContainers[0]!.containers.push(c("c9", "x", "gone"));
  assertEquals(invariantsOf(stray), ["stray-container"]);
  const missing = cleanHistory();
  missing.finalContainers[0]!.containers = [];
  assertEquals(invariantsOf(missing), ["stray-container"]);
});

Deno.test("chaos checker: a constant service whose container changed id, unless its deployment left", () => {
  const h = cleanHistory();
  h.containers[1]!.containers = [c("c2")];
  h.finalContainers[0]!.containers = [c("c2")];
  assertEquals(invariantsOf(h), ["container-replaced"]);
  // The same change is fine when the key was deleted (and put back) in between.
  const left = cleanHistory();
  left.containers[1]!.containers = [c("c2")];
  left.finalContainers[0]!.containers = [c("c2")];
  left.kv.push(desired(20, "agent-0", 15, "DEL"));
  left.kv.push(desired(25, "agent-0", 16));
  left.kv.push(status(26, "agent-0", 16));
  left.operatorLog.push({ t: at(25.1), pid: 100, kind: "pass", put: 1, deleted: 1, ms: 10 });
  assertEquals(invariantsOf(left), []);
});

Deno.test("chaos checker: a rollout completed twice, and one that never ended", () => {
  const twice = cleanHistory();
  twice.kv.push(rollout(47, 6, "progressing"), rollout(48, 6, "complete"));
  const v = check(twice, BOUND).violations;
  assert(v.some((x) => x.invariant === "rollout" && x.message.includes("complete to progressing")));
  const lost = cleanHistory();
  lost.kv = lost.kv.filter((r) => !(r.bucket === "rollouts" && r.t === at(46)));
  assertEquals(invariantsOf(lost), ["rollout"]);
  // Superseded by a newer revision before ending: not lost.
  const superseded = cleanHistory();
  superseded.kv = superseded.kv.filter((r) => !(r.bucket === "rollouts" && r.t === at(3.5)));
  const result = check(superseded, BOUND);
  assertEquals(result.violations, []);
  assertEquals(result.rollouts.superseded, 1);
  // history must list every revision since the deployment was created.
  const forgotten = cleanHistory();
  forgotten.historyListings = [{ deployment: "web", revisions: [6] }];
  assertEquals(invariantsOf(forgotten), ["rollout"]);
});

Deno.test("chaos checker: writes by the standby, or with no lease, or a lease taken too early", () => {
  const standby = cleanHistory();
  standby.operatorLog.push({ t: at(40), pid: 200, kind: "pass", put: 1, deleted: 0, ms: 5 });
  assertEquals(invariantsOf(standby), ["single-writer"]);
  const noLease = cleanHistory();
  noLease.kv = noLease.kv.filter((r) => r.bucket !== "operator-leases" || r.t < at(20));
  assert(
    check(noLease, BOUND).violations.some((v) =>
      v.invariant === "single-writer" && v.message.includes("no operator held the lease")
    ),
  );
  const early = cleanHistory();
  early.kv.push(lease(41, "operator-200-ffff0000"));
  assert(
    check(early, BOUND).violations.some((v) =>
      v.invariant === "single-writer" && v.message.includes("took the lease")
    ),
  );
  // The checker cannot be blinded: writes with no logged pass at all are a violation.
  const unlogged = cleanHistory();
  unlogged.operatorLog = [];
  assertEquals(invariantsOf(unlogged), ["single-writer"]);
});

Deno.test("chaos checker: a schema failure on the wire and a growing process are reported", () => {
  const schema = cleanHistory();
  schema.schemaFailures.push({ t: at(5), subject: "agent-status/agent-0", error: "status: bad" });
  assertEquals(invariantsOf(schema), ["schema"]);
  const leak = cleanHistory();
  leak.rss = Array.from({ length: 40 }, (_, i) => ({
    t: at(i * 30),
    process: "agent-0#1",
    rssMiB: 60 + i * 3,
  }));
  const result = check(leak, { ...BOUND, rssMinMs: 10 * 60_000 });
  assert(result.violations.some((v) => v.invariant === "rss"), "a leak is reported");
  const flat = cleanHistory();
  flat.rss = leak.rss.map((s) => ({ ...s, rssMiB: 60 + (s.t % 7) }));
  assertEquals(check(flat, { ...BOUND, rssMinMs: 10 * 60_000 }).violations, []);
});

Deno.test("chaos history: values are reduced to what the checker reads; operator logs parsed", () => {
  assertEquals(
    reduceValue("agent-status", {
      device_id: "a",
      deployments: { web: { revision: 3, phase: "running", services: {} } },
    }),
    { kind: "status", deployments: { web: { revision: 3, phase: "running" } } },
  );
  assertEquals(reduceValue("rollouts", { revision: 4, state: "paused" }), {
    kind: "rollout",
    revision: 4,
    state: "paused",
  });
  assertEquals(reduceValue("agent-status", "garbage"), { kind: "other" });
  assertEquals(holderPid("operator-4242-abcd"), 4242);
  assertEquals(holderPid("someone"), undefined);
  const log = [
    JSON.stringify({
      "@timestamp": "2026-12-06T12:00:01.000Z",
      message: "Holding the operator lease: acting",
      properties: {},
    }),
    "not json",
    JSON.stringify({
      "@timestamp": "2026-12-06T12:00:02.000Z",
      message: "Reconciled desired state: 3 written, 1 deleted, 0 failed in 12 ms",
      properties: { put: 3, deleted: 1, failed: 0, ms: 12 },
    }),
  ].join("\n");
  assertEquals(parseOperatorLog(log, 7), [
    { t: at(1), pid: 7, kind: "acting" },
    { t: at(2), pid: 7, kind: "pass", put: 3, deleted: 1, ms: 12 },
  ]);
});

Deno.test("chaos report: the summary counts faults and recoveries; the section shows violations", () => {
  const h = cleanHistory();
  h.schemaFailures.push({ t: at(5), subject: "agent-status/agent-0", error: "status: a|b" });
  const result = check(h, BOUND);
  const report = summariseRun(h, result, [{ kind: "agent-kill" }, { kind: "nats-kill" }], [
    "agent-kill",
    "nats-kill",
  ], "2026-12-06T12:00");
  assertEquals(report.faults, {
    "agent-kill": { planned: 1, injected: 1, skipped: 0 },
    "nats-kill": { planned: 1, injected: 0, skipped: 0 },
  });
  assertEquals(report.recovery.n, 1);
  assertEquals(report.recovery.p50, 5);
  assertEquals(report.violationCount, 1);
  const md = renderChaosSection([report]);
  assert(md.startsWith("<!-- chaos:start -->") && md.trimEnd().endsWith("<!-- chaos:end -->"));
  assert(md.includes("**1 invariant violation(s).**"), md);
  assert(md.includes("| schema | 5 | agent-status/agent-0: status: a\\|b |"), md);
  assert(md.includes("--seed 1"), "the section says how to reproduce");
});

Deno.test("chaos report: RSS grouped by process, incarnations together, the longest shown", () => {
  const trend = (process: string, minutes: number, judged = false) => ({
    process,
    samples: 10,
    firstMiB: 80,
    lastMiB: 82,
    maxMiB: 90 + minutes,
    minutes,
    judged,
    grew: false,
  });
  const families = rssFamilies([
    trend("agent-0#2", 12, true),
    trend("agent-0#10", 3),
    trend("operator-a#1", 1),
  ]);
  assertEquals(
    families.map((f) => [f.name, f.incarnations, f.longest.minutes, f.maxMiB, f.judged]),
    [
      ["agent-0", 2, 12, 102, 1],
      ["operator-a", 1, 1, 91, 0],
    ],
  );
});
