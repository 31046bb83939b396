import { assertEquals, assertStringIncludes } from "../tests/support/assert.ts";
import {
  DeploymentManifest,
  formatZodIssues,
  parseComposeDuration,
  percentOf,
  Rollout,
} from "./mod.ts";

const MANIFEST = {
  name: "web",
  selector: { labels: { site: "lab" } },
  score: { type: "PodmanV0", services: [{ name: "web", image: "nginx:1.27" }] },
};

function problems(value: unknown): string {
  const result = DeploymentManifest.safeParse(value);
  return result.success ? "" : formatZodIssues(result.error);
}

Deno.test("manifest without rollout keeps its shape (every device at once)", () => {
  const parsed = DeploymentManifest.parse(MANIFEST);
  assertEquals("rollout" in parsed, false);
});

Deno.test("rollout: the issue's example parses, defaults filled in", () => {
  const parsed = DeploymentManifest.parse({
    ...MANIFEST,
    rollout: {
      batches: [{ limit: 1, selector: { labels: { canary: "yes" } } }, { limit: "25%" }],
      success_threshold: "100%",
      batch_timeout: "5m",
      on_failure: "rollback",
    },
  });
  assertEquals(parsed.rollout?.batches[1]?.limit, "25%");
  assertEquals(Rollout.parse({ batches: [{ limit: 2 }] }), {
    batches: [{ limit: 2 }],
    success_threshold: "100%",
    batch_timeout: "5m",
    on_failure: "rollback",
  });
});

Deno.test("rollout: mistakes are rejected naming the field", () => {
  const cases: [unknown, string][] = [
    [{ batches: [] }, "rollout.batches: at least one batch is needed"],
    [{ batches: [{ limit: 0 }] }, "rollout.batches[0].limit"],
    [{ batches: [{ limit: "0%" }] }, 'expected a percentage from "1%" to "100%"'],
    [{ batches: [{ limit: "150%" }] }, "rollout.batches[0].limit"],
    [{ batches: [{ limit: 1.5 }] }, "rollout.batches[0].limit"],
    [{ batches: [{ limit: 1, selector: {} }] }, "rollout.batches[0].selector"],
    [{ batches: [{ limit: 1, size: 2 }] }, 'unknown key(s) "size"'],
    [{ batches: [{ limit: 1 }], success_threshold: "90" }, "rollout.success_threshold"],
    [{ batches: [{ limit: 1 }], batch_timeout: "5 minutes" }, "rollout.batch_timeout"],
    [{ batches: [{ limit: 1 }], batch_timeout: "0s" }, "at least 1ms"],
    [{ batches: [{ limit: 1 }], min_ready: "soon" }, "rollout.min_ready"],
    [{ batches: [{ limit: 1 }], on_failure: "retry" }, "rollout.on_failure"],
    [{ batches: [{ limit: 1 }], onFailure: "pause" }, 'unknown key(s) "onFailure"'],
  ];
  for (const [rollout, expected] of cases) {
    assertStringIncludes(problems({ ...MANIFEST, rollout }), expected, JSON.stringify(rollout));
  }
});

Deno.test("compose durations: parts add up; anything else is undefined", () => {
  assertEquals(parseComposeDuration("1m30s"), 90_000);
  assertEquals(parseComposeDuration("500ms"), 500);
  assertEquals(parseComposeDuration("1.5h"), 5_400_000);
  assertEquals(parseComposeDuration("2s500ms"), 2500);
  assertEquals(parseComposeDuration("5"), undefined);
  assertEquals(parseComposeDuration(""), undefined);
  assertEquals(parseComposeDuration("-1s"), undefined);
  assertEquals(percentOf("25%"), 25);
});

Deno.test("source: an optional name stored with the manifest; absent stays absent", () => {
  assertEquals("source" in DeploymentManifest.parse(MANIFEST), false);
  assertEquals(
    DeploymentManifest.parse({ ...MANIFEST, source: "fleet-repo" }).source,
    "fleet-repo",
  );
  assertStringIncludes(problems({ ...MANIFEST, source: "Fleet Repo" }), "source: invalid name");
  assertStringIncludes(problems({ ...MANIFEST, source: 3 }), "source");
});

Deno.test("rollout: a malformed batch_timeout is one problem, not two", () => {
  const text = problems({
    ...MANIFEST,
    rollout: { batches: [{ limit: 1 }], batch_timeout: "5 minutes" },
  });
  assertEquals(text.split("\n").filter((l) => l.startsWith("rollout.batch_timeout")).length, 1);
  assertStringIncludes(text, 'expected a duration such as "30s"');
});
