/**
 * Device-side policy end to end: the real agent with a `[policy]` section
 * refuses desired states that break it — whatever the operator sends — with
 * `failed` and a message naming the rule, creates nothing of them, and keeps
 * running what the policy allows.
 */
import type { DesiredStateInput } from "@drover/contracts";
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import {
  freePort,
  sleepDeployment,
  startAgentEnv,
  waitForPage,
  webDeployment,
} from "./_agent_harness.ts";

Deno.test("security: [policy] refuses registries, bind mounts, ports and too many containers", async () => {
  const allowedPort = await freePort();
  const otherPort = await freePort();
  await using env = await startAgentEnv({
    heartbeatSeconds: 1,
    extraToml: [
      "[policy]",
      'allowed_registries = ["localhost"]',
      'allowed_host_paths = ["/srv/drover-data"]',
      `allowed_host_ports = [${allowedPort}]`,
      "max_containers = 3",
      "",
    ].join("\n"),
  });
  env.startAgent();

  // Allowed: local image, allowed port.
  const webRev = await env.putDesired("web", webDeployment("web", allowedPort, "allowed"));
  await waitForPage(allowedPort, "allowed");
  await env.waitForDeployment("web", (d) => d.phase === "running" && d.revision === webRev, "web");
  const webId = (await env.containersOf("web"))[0].Id;

  const refused = async (name: string, value: DesiredStateInput, rule: string) => {
    const rev = await env.putDesired(name, value);
    const status = await env.waitForDeployment(
      name,
      (d) => d.revision === rev && d.phase === "failed",
      `${name} refused by ${rule}`,
    );
    assertStringIncludes(status.message ?? "", rule);
    assertEquals(await env.containersOf(name), [], `nothing of ${name} was created`);
  };

  const foreign = sleepDeployment("foreign");
  foreign.score.services[0].image = "quay.io/evil/miner:1";
  await refused("foreign", foreign, "policy.allowed_registries");

  const hostMount = sleepDeployment("mount");
  hostMount.score.services[0].volumes = ["data:/data", "/etc:/host-etc:ro"];
  await refused("mount", hostMount, "policy.allowed_host_paths");

  await refused("port", webDeployment("port", otherPort, "no"), "policy.allowed_host_ports");

  // web uses 1 container; 3 more would exceed max_containers = 3.
  await refused("many", sleepDeployment("many", ["a", "b", "c"]), "policy.max_containers");

  // What the policy allows still works beside the refusals: a named volume
  // (always allowed), within the container budget.
  const fine = sleepDeployment("fine", ["a", "b"]);
  fine.score.services[0].volumes = ["data:/data"];
  const fineRev = await env.putDesired("fine", fine);
  await env.waitForDeployment(
    "fine",
    (d) => d.phase === "running" && d.revision === fineRev,
    "fine running",
  );
  assertEquals((await env.containersOf("fine")).length, 2);
  assertEquals((await env.containersOf("web")).map((c) => c.Id), [webId], "web untouched");
});
