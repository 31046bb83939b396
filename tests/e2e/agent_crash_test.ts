/**
 * Crashes and runtime outages: `kill -9` of the agent in the middle of a
 * reconcile, then a restart, converges with no duplicate containers; the
 * podman service going away and coming back is survived, and drift after it
 * is still noticed.
 */
import { LABELS } from "@drover/contracts";
import { sleepDeployment, startAgentEnv, waitFor } from "./_agent_harness.ts";
import { assert, assertEquals, assertExists } from "../support/assert.ts";

const SERVICES = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"];

Deno.test("agent: kill -9 mid-reconcile, then restart, converges without duplicates", async () => {
  await using env = await startAgentEnv();
  const first = env.startAgent();
  const rev1 = await env.putDesired("many", sleepDeployment("many", SERVICES, "1"));
  await env.waitForDeployment("many", (d) => d.phase === "running" && d.revision === rev1, "v1");

  // Update every service, and kill the agent as soon as the replacement has begun.
  const rev2 = await env.putDesired("many", sleepDeployment("many", SERVICES, "2"));
  const seenMidway = await waitFor(async () => {
    const list = await env.containersOf("many");
    const replaced = list.filter((c) => c.Labels?.[LABELS.revision] === String(rev2)).length;
    return replaced >= 1 || list.length < SERVICES.length
      ? { replaced, total: list.length }
      : undefined;
  }, { timeoutMs: 30_000, intervalMs: 10, message: "replacement starts" });
  await first.kill();
  const afterKill = await env.containersOf("many");
  console.log(
    `killed with ${seenMidway.replaced} replaced of ${SERVICES.length}; ` +
      `${afterKill.length} containers left behind`,
  );

  const second = env.startAgent();
  await env.waitForDeployment(
    "many",
    (d) => d.phase === "running" && d.revision === rev2,
    "converges after restart",
  );
  const list = await waitFor(async () => {
    const l = await env.containersOf("many");
    return l.length === SERVICES.length && l.every((c) => c.State === "running") ? l : undefined;
  }, { timeoutMs: 30_000, message: "exactly one running container per service" });
  const services = list.map((c) => c.Labels?.[LABELS.service]).sort();
  assertEquals(services, SERVICES);
  assert(list.every((c) => c.Labels?.[LABELS.revision] === String(rev2)), "all at revision 2");
  assertEquals(await second.stop(), 0);
});

Deno.test("agent: podman service restart is survived; changes during the outage apply", async () => {
  await using env = await startAgentEnv();
  const agent = env.startAgent();
  const rev1 = await env.putDesired("steady", sleepDeployment("steady"));
  await env.waitForDeployment("steady", (d) => d.phase === "running" && d.revision === rev1, "s");
  const steadyId = (await env.containersOf("steady"))[0]?.Id;
  assertExists(steadyId, "steady has a container");

  await env.podman.stop();
  // Desired state changes while podman is away; the agent keeps running and says it is degraded.
  const rev2 = await env.putDesired("later", sleepDeployment("later"));
  await waitFor(async () => (await env.status())?.status === "degraded", {
    timeoutMs: 30_000,
    message: "device reports degraded while podman is down",
  });
  await env.podman.start();
  await env.waitForDeployment(
    "later",
    (d) => d.phase === "running" && d.revision === rev2,
    "later runs once podman is back",
  );
  assertEquals((await env.containersOf("steady"))[0]?.Id, steadyId, "steady kept running");

  // Drift after the restart is still seen (the event stream resumed).
  const rm = await env.podman.cli(["rm", "-f", steadyId]);
  assertEquals(rm.code, 0, rm.stderr);
  await waitFor(async () => {
    const l = await env.containersOf("steady");
    return l.length === 1 && l[0]?.Id !== steadyId && l[0]?.State === "running";
  }, { timeoutMs: 30_000, message: "removed container recreated after podman restart" });
  assertEquals(await agent.stop(), 0);
});
