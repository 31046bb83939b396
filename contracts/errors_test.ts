import { z } from "zod";
import { assert, assertEquals, assertStringIncludes } from "../tests/support/assert.ts";
import {
  decodeJson,
  DeploymentManifest,
  DesiredState,
  editDistance,
  explainIssues,
  formatIssueMessage,
  formatPath,
  formatZodIssues,
  knownKeysAt,
  MAX_ISSUE_LINE_CHARS,
  suggestKey,
} from "./mod.ts";

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

Deno.test("decodeJson calls non-UTF-8 bytes that, not invalid JSON", () => {
  const result = decodeJson(DesiredState, new Uint8Array([0x7b, 0x22, 0xc3, 0x28, 0x7d]));
  assert(!result.ok);
  assertStringIncludes(result.error, "not valid UTF-8");
  assert(!result.error.includes("JSON:"), result.error);
});

Deno.test("formatZodIssues says a missing field is required, not the parser's type wording", () => {
  const result = DeploymentManifest.safeParse({
    name: "web",
    score: { type: "PodmanV0", services: [{ name: "web", image: "busybox:1" }] },
  });
  assert(!result.success);
  const text = formatZodIssues(result.error);
  assertEquals(text, "selector: required");
});

Deno.test("explainIssues puts each unknown key at its own path with a suggestion", () => {
  const result = DeploymentManifest.safeParse({
    name: "web",
    selector: { labels: {}, device: ["pi-1"] },
    score: {
      type: "PodmanV0",
      services: [{ name: "web", image: "busybox:1", enviroment: {}, zzz: 1 }],
    },
  });
  assert(!result.success);
  assertEquals(
    explainIssues(DeploymentManifest, result.error.issues).map((i) =>
      `${formatPath(i.path)}: ${formatIssueMessage(i)}`
    ).sort(),
    [
      'score.services[0].enviroment: unknown key; did you mean "env"?',
      "score.services[0].zzz: unknown key",
      'selector.device: unknown key; did you mean "devices"?',
    ],
  );
  // decodeJson knows its schema, so KV values get the same wording.
  const decoded = decodeJson(DesiredState, JSON.stringify({ deployment: "web", scor: {} }));
  assert(!decoded.ok);
  assertStringIncludes(decoded.error, "score: required");
});

Deno.test("suggestKey: close spellings and prefixes, nothing for unrelated words", () => {
  const service = ["name", "image", "command", "entrypoint", "env", "ports", "volumes", "labels"];
  assertEquals(suggestKey("enviroment", service), "env");
  assertEquals(suggestKey("environment", service), "env");
  assertEquals(suggestKey("imgae", service), "image");
  assertEquals(suggestKey("port", service), "ports");
  assertEquals(suggestKey("Labels", service), "labels");
  assertEquals(
    suggestKey("heartbeat_secs", ["device_id", "heartbeat_seconds"]),
    "heartbeat_seconds",
  );
  assertEquals(suggestKey("zzz", service), undefined);
  assertEquals(suggestKey("constructor", service), undefined);
  assertEquals(editDistance("kitten", "sitting"), 3);
  assertEquals(knownKeysAt(DeploymentManifest, ["constructor"]), []);
});

Deno.test("formatZodIssues: zod's own wording becomes plain words; a schema's own is kept", () => {
  const schema = z.object({
    list: z.array(z.string()).min(1),
    few: z.array(z.string()).max(2),
    text: z.string().min(1),
    count: z.number().int().min(1).max(10),
    positive: z.number().positive(),
    mode: z.enum(["a", "b", "c"]),
    kind: z.literal("k"),
    name: z.string(),
    whole: z.number().int(),
    either: z.union([z.string(), z.number()]),
    own: z.array(z.string()).min(1, "at least one thing is needed"),
  });
  const result = schema.safeParse({
    list: [],
    few: ["x", "y", "z"],
    text: "",
    count: 11,
    positive: 0,
    mode: "d",
    kind: "n",
    name: 5,
    whole: 1.5,
    either: true,
    own: [],
  });
  assert(!result.success);
  assertEquals(formatZodIssues(result.error, 20).split("\n"), [
    "list: must not be empty",
    "few: must have at most 2 items",
    "text: must not be empty",
    "count: must be at most 10",
    "positive: must be greater than 0",
    'mode: expected one of "a", "b" or "c"',
    'kind: expected "k"',
    "name: expected a string, got a number",
    "whole: must be a whole number",
    "either: expected a string or a number",
    "own: at least one thing is needed",
  ]);
  assert(!formatZodIssues(result.error, 20).includes("Too small"));
});
