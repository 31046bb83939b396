/**
 * The shipped examples (examples/agent.toml, examples/hello.yaml) are what people copy first:
 * they must validate against the contracts' schemas, including every optional setting shown only
 * as a comment, and the example device — registered with the labels its config reports, as the
 * README's `device register pi-kitchen site=home arch=arm64` does — must be selected by the example
 * deployment.
 */

import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import {
  AgentConfig,
  DeploymentManifest,
  formatZodIssues,
  labelsMatch,
  parsePortMapping,
} from "@drover/contracts";
import { assert, assertEquals } from "../support/assert.ts";

const examplesDir = new URL("../../examples/", import.meta.url);
const agentTomlText = await Deno.readTextFile(new URL("agent.toml", examplesDir));
const helloYamlText = await Deno.readTextFile(new URL("hello.yaml", examplesDir));

function validAgentConfig(text: string): AgentConfig {
  const result = AgentConfig.safeParse(parseToml(text));
  assert(
    result.success,
    `agent config invalid: ${!result.success && formatZodIssues(result.error)}`,
  );
  return result.data;
}

/**
 * Turns every commented-out setting (`# key = value`) and table header (`# [registries."…"]`)
 * into a live line, keeping prose comments (they contain no " = " or do not start with a key).
 */
function uncommentSettings(text: string): string {
  return text.split("\n").map((line) => {
    const setting = /^# ([a-z_]+ = .*|\[[^\]]+\])$/.exec(line);
    if (!setting) return line;
    return setting[1]?.replace(/\s+#.*$/, "");
  }).join("\n");
}

Deno.test("examples/agent.toml is a valid AgentConfig", () => {
  const config = validAgentConfig(agentTomlText);
  assertEquals(config.agent.device_id, "pi-kitchen");
  assertEquals(config.podman.socket, "/run/podman/podman.sock");
  assertEquals(config.nats.servers, ["nats://127.0.0.1:4222"]);
});

Deno.test("examples/agent.toml stays valid with every commented-out setting enabled", () => {
  const everything = uncommentSettings(agentTomlText);
  // Make sure the transformation really enabled the optional sections, or this test proves nothing.
  for (const line of ["creds = ", "tls_key = ", "[registries.", "max_containers = "]) {
    assert(everything.split("\n").some((l) => l.startsWith(line)), `did not enable ${line}`);
  }
  const config = validAgentConfig(everything);
  assertEquals(Object.keys(config.registries), ["registry.example.com:5000"]);
  assertEquals(config.policy.max_containers, 20);
});

Deno.test("examples/hello.yaml is a valid DeploymentManifest that selects the example device once registered", async () => {
  const result = DeploymentManifest.safeParse(parseYaml(helloYamlText));
  assert(result.success, `manifest invalid: ${!result.success && formatZodIssues(result.error)}`);
  const manifest = result.data;
  assertEquals(manifest.name, "hello");
  // Selectors match registry labels; the README registers the labels agent.toml reports.
  const device = validAgentConfig(agentTomlText).agent;
  assert(labelsMatch(manifest.selector.labels ?? {}, device.labels), "example device not selected");
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const registered = Object.entries(device.labels).map(([k, v]) => `${k}=${v}`).join(" ");
  assert(
    readme.includes(`device register ${device.device_id} ${registered}`),
    `README registers ${device.device_id} with ${registered}`,
  );
  const [web] = manifest.score.services;
  assertEquals(parsePortMapping(web?.ports?.[0] ?? "(no port)"), {
    hostIp: "127.0.0.1",
    hostPort: 8088,
    containerPort: 8080,
    protocol: "tcp",
  });
});

Deno.test("the examples' checks reject a broken copy (the schemas are really applied)", () => {
  const typo = agentTomlText.replace("heartbeat_seconds =", "heartbeat_secs =");
  const result = AgentConfig.safeParse(parseToml(typo));
  assert(!result.success, "a misspelt key was accepted");
  assert(formatZodIssues(result.error).includes("heartbeat_secs"), formatZodIssues(result.error));
  const badPort = helloYamlText.replace("127.0.0.1:8088:8080", "127.0.0.1:99999:8080");
  assert(!DeploymentManifest.safeParse(parseYaml(badPort)).success, "a bad port was accepted");
});

/** Whether a `--allow-<kind>=a,b` flag in `flags` grants `value` (paths by prefix, hosts by name). */
function granted(flags: string[], kind: string, value: string): boolean {
  const allowed = flags.filter((f) => f.startsWith(`--allow-${kind}=`))
    .flatMap((f) => f.slice(`--allow-${kind}=`.length).split(","));
  return allowed.some((entry) =>
    kind === "net"
      ? entry === value || (!entry.includes(":") && value.startsWith(`${entry}:`))
      : value === entry || value.startsWith(`${entry.replace(/\/$/, "")}/`)
  );
}

Deno.test("the example config (all settings enabled) needs nothing beyond the agent task's permissions", async () => {
  const { readAgentTask } = await import("../../scripts/compile.ts");
  const { requiredPermissions } = await import("../../agent/permissions.ts");
  const task = await readAgentTask(new URL("../../deno.json", import.meta.url).pathname);
  const config = validAgentConfig(uncommentSettings(agentTomlText));
  const required = requiredPermissions(config);
  assert(required.length > 5, "no permissions computed");
  for (const { descriptor, flag } of required) {
    const value = "path" in descriptor
      ? String(descriptor.path)
      : "host" in descriptor
      ? String(descriptor.host)
      : "";
    assert(granted(task.runtimeFlags, descriptor.name, value), `the agent task lacks ${flag}`);
  }
});
