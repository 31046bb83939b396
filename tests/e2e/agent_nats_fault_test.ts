/**
 * NATS going away: the agent starts before the buckets exist, survives a
 * nats-server restart, and — restarted while NATS is down — keeps its
 * workloads from the cache and catches up afterwards, including a deletion
 * made while it was offline.
 */
import { LABELS } from "@drover/contracts";
import {
  freePort,
  sleepDeployment,
  startAgentEnv,
  waitFor,
  waitForPage,
  webDeployment,
} from "./_agent_harness.ts";
import { assert, assertEquals } from "../support/assert.ts";

Deno.test("agent: buckets created late, nats-server restart, later updates still apply", async () => {
  await using env = await startAgentEnv({ createBuckets: false });
  const agent = env.startAgent();
  // The agent is up without buckets (so the operator cannot list its keys yet)
  // and must keep retrying, not exit.
  await waitFor(async () => (await agent.logs()).includes("Cannot load desired state"), {
    timeoutMs: 30_000,
    message: "agent notices that desired state cannot be loaded yet",
  });
  await env.createBuckets();
  const rev1 = await env.putDesired("app", sleepDeployment("app", ["main"], "1"));
  await env.waitForDeployment("app", (d) => d.phase === "running" && d.revision === rev1, "app");

  await env.nats.restart();
  const rev2 = await env.putDesired("app", sleepDeployment("app", ["main"], "2"));
  await env.waitForDeployment(
    "app",
    (d) => d.phase === "running" && d.revision === rev2,
    "update after nats restart",
  );
  await env.nats.kill();
  await env.nats.restart();
  await env.deleteDesired("app");
  await waitFor(async () => (await env.containersOf("app")).length === 0, {
    timeoutMs: 60_000,
    message: "delete after nats kill -9 and restart",
  });
  assertEquals(await agent.stop(), 0);
});

Deno.test("agent: restarted while NATS is down, keeps workloads from cache and catches up", async () => {
  await using env = await startAgentEnv();
  const port = await freePort();
  let agent = env.startAgent();
  await env.putDesired("web", webDeployment("web", port, "v1"));
  const keepRev = await env.putDesired("keep", sleepDeployment("keep"));
  const doomedRev = await env.putDesired("doomed", sleepDeployment("doomed"));
  await waitForPage(port, "v1");
  await env.waitForDeployment("keep", (d) => d.phase === "running" && d.revision === keepRev, "k");
  await env.waitForDeployment(
    "doomed",
    (d) => d.phase === "running" && d.revision === doomedRev,
    "d",
  );
  const ids = new Map((await env.containers()).map((c) => [c.Names[0], c.Id]));
  assertEquals(await agent.stop(), 0);

  // NATS goes away; the agent comes back without it (a reboot with no network).
  await env.nats.stop();
  agent = env.startAgent();
  await waitFor(async () => (await agent.logs()).includes("First reconcile pass done"), {
    timeoutMs: 30_000,
    message: "agent finishes its first pass from the cache",
  });
  await waitFor(async () => (await agent.logs()).includes("Cannot connect to NATS"), {
    timeoutMs: 30_000,
    message: "agent reports NATS unreachable",
  });
  // Nothing was removed or replaced because NATS is unreachable.
  await waitForPage(port, "v1");
  const offline = new Map((await env.containers()).map((c) => [c.Names[0], c.Id]));
  assertEquals(offline, ids);
  const logs = await agent.logs();
  assert(logs.includes("from the cache"), "agent says it loaded its cache");

  // Changes made while the agent could not see them: a deletion and an update.
  await env.nats.stop(); // (already stopped; idempotent)
  // Bring NATS back and change desired state at the same moment the agent reconnects.
  await env.nats.restart();
  await env.deleteDesired("doomed");
  const webRev = await env.putDesired("web", webDeployment("web", port, "v2"));
  await waitForPage(port, "v2");
  await waitFor(async () => (await env.containersOf("doomed")).length === 0, {
    timeoutMs: 60_000,
    message: "deployment deleted while offline is removed",
  });
  await env.waitForDeployment("web", (d) => d.phase === "running" && d.revision === webRev, "w");
  assertEquals((await env.containersOf("keep"))[0]?.Id, ids.get("keep_main"), "keep untouched");
  assertEquals(await agent.stop(), 0);
});

Deno.test("agent: a deletion made while the agent was stopped and NATS down is applied", async () => {
  await using env = await startAgentEnv();
  let agent = env.startAgent();
  const rev = await env.putDesired("gone", sleepDeployment("gone"));
  await env.waitForDeployment("gone", (d) => d.phase === "running" && d.revision === rev, "gone");
  assertEquals(await agent.stop(), 0);
  // Deleted while the agent is off; then NATS is down when it starts.
  await env.deleteDesired("gone");
  await env.nats.stop();
  agent = env.startAgent();
  await waitFor(async () => (await agent.logs()).includes("First reconcile pass done"), {
    timeoutMs: 30_000,
    message: "first pass from cache",
  });
  assertEquals((await env.containersOf("gone")).length, 1, "cache keeps it while offline");
  await env.nats.restart();
  await waitFor(async () => (await env.containersOf("gone")).length === 0, {
    timeoutMs: 60_000,
    message: "authoritative snapshot removes it after reconnect",
  });
  assertEquals((await env.containers()).filter((c) => c.Labels?.[LABELS.managed]).length, 0);
  assertEquals(await agent.stop(), 0);
});
