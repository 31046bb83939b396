import { assertEquals } from "./support/assert.ts";
import { areaOf, type CpuProfile, renderSection, selfTimes } from "../bench/agent_cpu.ts";

Deno.test("agent-cpu: self time per function and area counts only busy samples inside the window", () => {
  const npm =
    "file:///root/.cache/deno/npm/registry.npmjs.org/@nats-io/nats-core/3.4.0/lib/parser.js";
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: { functionName: "(idle)", url: "", lineNumber: -1 } },
      { id: 2, callFrame: { functionName: "parse", url: npm, lineNumber: 83 } },
      {
        id: 3,
        callFrame: {
          functionName: "plan",
          url: "file:///r/agent/reconcile/plan.ts",
          lineNumber: 9,
        },
      },
      { id: 4, callFrame: { functionName: "(garbage collector)", url: "", lineNumber: -1 } },
    ],
    startTime: 1_000,
    // Sample times 2 000, 3 000, … 7 000 µs; the window is 2 500–6 500.
    samples: [2, 2, 3, 1, 4, 3],
    timeDeltas: [1_000, 1_000, 1_000, 1_000, 1_000, 1_000],
  };
  const t = selfTimes(profile, 2_500, 6_500);
  assertEquals(t.total, 3, "parse at 3 000, plan at 4 000, GC at 6 000");
  assertEquals(t.idle, 1);
  assertEquals(t.functions.map((f) => f.name), [
    "parse lib/parser.js:84",
    "plan reconcile/plan.ts:10",
    "(garbage collector)",
  ]);
  assertEquals(t.areas.map((a) => [a.name, a.percent]), [
    ["npm:@nats-io/nats-core", 33.3],
    ["agent/reconcile/", 33.3],
    ["garbage collector", 33.3],
  ]);
  assertEquals(areaOf("file:///r/agent/status.ts", "x"), "agent/status.ts");
  assertEquals(areaOf("ext:deno_node/net.ts", "x"), "ext:deno_node (deno runtime)");
});

Deno.test("agent-cpu: the section keeps every run's total and the newest profiles", () => {
  const entry = (label: string) => ({
    label,
    date: "2026-12-06T13:00:00Z",
    devices: 2,
    changes: 1,
    load: [1, 2] as [number, number],
    windowSeconds: 1,
    cpuMs: 10,
    idleMsPerSecond: 1,
    cpuMsPerChange: 4.5,
    profiledMsPerChange: 5,
    agentRoot: "/r",
    v8Flags: "--lite-mode",
    functions: [{ name: "a|b", ms: 1, percent: 50 }],
    areas: [{ name: "agent/", ms: 2, percent: 100 }],
  });
  const md = renderSection(["r1", "r2", "r3", "r4"].map(entry), "Machine: test.");
  assertEquals(md.startsWith("<!-- agent-cpu:start -->"), true);
  assertEquals(md.trimEnd().endsWith("<!-- agent-cpu:end -->"), true);
  assertEquals((md.match(/\| r\d \|/g) ?? []).length, 4);
  assertEquals(md.includes("### r1:"), false);
  assertEquals(md.includes("### r4: self time per change, by area"), true);
  assertEquals(md.includes("`a\\|b`"), true, "a pipe in a name does not break the table");
});
