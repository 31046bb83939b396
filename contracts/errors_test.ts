import { assert, assertStringIncludes } from "../tests/support/assert.ts";
import { DesiredState, formatZodIssues, MAX_ISSUE_LINE_CHARS } from "./mod.ts";

Deno.test("formatZodIssues clips a message that quotes a huge value", () => {
  const result = DesiredState.safeParse({
    deployment: "a.b/".repeat(100_000),
    score: { type: "PodmanV0", services: [{ name: "web", image: "x".repeat(500_000) }] },
  });
  assert(!result.success);
  const text = formatZodIssues(result.error);
  for (const line of text.split("\n")) assert(line.length <= MAX_ISSUE_LINE_CHARS, line);
  assertStringIncludes(text, "deployment: invalid name");
  assertStringIncludes(text, "score.services[0].image:");
  assertStringIncludes(text, "chars in all)");
});
