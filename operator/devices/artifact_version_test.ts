import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { AGENT_VERSION } from "../../agent/version.ts";
import { artifactVersionProblem, declaredAgentVersions } from "./artifact_version.ts";

const encode = (text: string) => new TextEncoder().encode(text);

Deno.test("artifact version: the AGENT_VERSION literal decides; a mismatch or none is refused", async () => {
  // The real source the artifacts embed carries the marker (the control for the scan).
  const source = await Deno.readFile(new URL("../../agent/version.ts", import.meta.url));
  assertEquals(declaredAgentVersions(source), [AGENT_VERSION]);
  assertEquals(artifactVersionProblem(source, AGENT_VERSION), undefined);
  assertStringIncludes(
    artifactVersionProblem(source, "9.9.9") ?? "",
    `it reports agent version ${AGENT_VERSION}, not 9.9.9`,
  );
  assertStringIncludes(
    artifactVersionProblem(encode("#!/bin/sh\nexit 3\n"), "1.0.0") ?? "",
    "does not say which agent version",
  );
  // Binary around it, and two different stamps, are both handled.
  const mixed = new Uint8Array([0, 255, ...encode('x AGENT_VERSION = "1.2.0";'), 0, 7]);
  assertEquals(declaredAgentVersions(mixed), ["1.2.0"]);
  const two = encode('AGENT_VERSION = "1.2.0"; AGENT_VERSION = "1.3.0"');
  assertStringIncludes(artifactVersionProblem(two, "1.2.0") ?? "", "1.2.0, 1.3.0");
});
