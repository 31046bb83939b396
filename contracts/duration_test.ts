import { assertEquals, assertStringIncludes } from "../tests/support/assert.ts";
import {
  composeDuration,
  durationProblem,
  formatDuration,
  formatZodIssues,
  parseComposeDuration,
  parseDuration,
} from "./mod.ts";

Deno.test("parseComposeDuration: parts add up; anything else is undefined", () => {
  assertEquals(parseComposeDuration("10s"), 10_000);
  assertEquals(parseComposeDuration("1m30s"), 90_000);
  assertEquals(parseComposeDuration("500ms"), 500);
  assertEquals(parseComposeDuration("1.5h"), 5_400_000);
  assertEquals(parseComposeDuration("2s500ms"), 2500);
  assertEquals(parseComposeDuration("0s"), 0);
  assertEquals(parseComposeDuration("1500us"), 1.5);
  for (const bad of ["5", "", "-1s", "1 s", "s", "1d", "1m 30s", "1.s"]) {
    assertEquals(parseComposeDuration(bad), undefined, bad);
  }
});

Deno.test("formatDuration: the shortest compose spelling", () => {
  assertEquals(formatDuration(0), "0s");
  assertEquals(formatDuration(90_000), "1m30s");
  assertEquals(formatDuration(3_600_000), "1h");
  assertEquals(formatDuration(1500), "1s500ms");
  assertEquals(parseComposeDuration(formatDuration(5_430_250)), 5_430_250);
});

Deno.test("durationProblem: bounds and whole seconds, with the value quoted", () => {
  assertEquals(durationProblem("10s"), undefined);
  assertStringIncludes(durationProblem("10")!, 'got "10"');
  assertStringIncludes(durationProblem("0s")!, "at least 1ms");
  assertEquals(durationProblem("0s", { minMs: 0 }), undefined);
  assertStringIncludes(
    durationProblem("500ms", { minMs: 1000 })!,
    '"500ms" is too short: at least 1s',
  );
  assertStringIncludes(durationProblem("2h", { maxMs: 3_600_000 })!, "at most 1h");
  assertStringIncludes(
    durationProblem("1500ms", { wholeSeconds: true })!,
    "whole number of seconds",
  );
  assertEquals(durationProblem("2m", { wholeSeconds: true }), undefined);
});

Deno.test("composeDuration: one message per bad value", () => {
  const schema = composeDuration({ minMs: 1000 });
  assertEquals(schema.parse("1m"), "1m");
  for (
    const [value, expected] of [["ten", "expected a duration"], ["10ms", "too short"]] as const
  ) {
    const result = schema.safeParse(value);
    assertEquals(result.success, false, value);
    if (!result.success) {
      assertEquals(result.error.issues.length, 1, formatZodIssues(result.error));
      assertStringIncludes(formatZodIssues(result.error), expected);
    }
  }
});

Deno.test("parseDuration: one grammar; days and bare seconds only where asked for", () => {
  assertEquals(parseDuration("1m30s"), 90_000);
  assertEquals(parseDuration("90"), undefined);
  assertEquals(parseDuration("2d"), undefined);
  const cli = { days: true, bareSeconds: true };
  assertEquals(parseDuration("90", cli), 90_000);
  assertEquals(parseDuration("1.5", cli), 1_500);
  assertEquals(parseDuration("2d", cli), 172_800_000);
  assertEquals(parseDuration("1d12h", cli), 129_600_000);
  assertEquals(parseDuration("", cli), undefined);
  assertEquals(parseDuration("10x", cli), undefined);
  assertEquals(parseComposeDuration("2d"), undefined, "compose files have no days");
});
