/**
 * The agent's basic life cycle against real nats-server and podman: first
 * deploy serving on a published port with env applied, an update that
 * replaces exactly one container, drift undone, deletion, heartbeats and the status refresh.
 */
import { AgentStatus, Heartbeat, heartbeatSubject, LABELS } from "@drover/contracts";
import {
  freePort,
  sleepDeployment,
  startAgentEnv,
  waitFor,
  waitForPage,
  webDeployment,
} from "./_agent_harness.ts";
import { assert, assertEquals, assertExists } from "../support/assert.ts";

Deno.test("agent: deploy, update one service, undo drift, delete, heartbeat", async () => {
  await using env = await startAgentEnv({ heartbeatSeconds: 1 });
  const agent = env.startAgent();
  const port = await freePort();

  // First deploy: served on the published port with the env applied.
  const rev1 = await env.putDesired("web", webDeployment("web", port, "hello one"));
  await waitForPage(port, "hello one");
  const running = await env.waitForDeployment(
    "web",
    (d) => d.phase === "running" && d.revision === rev1,
    "web running at first revision",
  );
  assertEquals(running.services.web?.state, "running");
  const status = (await env.status())!;
  assertEquals(status.device_id, "pi-1");
  assertEquals(status.labels, { site: "lab" });
  assertEquals(status.heartbeat_seconds, 1);

  // Update of one service out of two replaces exactly that container.
  const revA = await env.putDesired("pair", sleepDeployment("pair", ["a", "b"], "1"));
  await env.waitForDeployment("pair", (d) => d.phase === "running" && d.revision === revA, "pair");
  const before = await env.containersOf("pair");
  assertEquals(before.length, 2);
  const idOf = (list: typeof before, svc: string) =>
    list.find((c) => c.Labels?.[LABELS.service] === svc)!.Id;
  const changed = sleepDeployment("pair", ["a", "b"], "1");
  const serviceB = changed.score.services[1];
  assert(serviceB !== undefined, "the pair has a service b");
  serviceB.env = { MARKER: "2" };
  const revB = await env.putDesired("pair", changed);
  await env.waitForDeployment(
    "pair",
    (d) => d.phase === "running" && d.revision === revB,
    "pair v2",
  );
  const after = await env.containersOf("pair");
  assertEquals(after.length, 2);
  assertEquals(idOf(after, "a"), idOf(before, "a"), "service a was left alone");
  assert(idOf(after, "b") !== idOf(before, "b"), "service b was replaced");

  // Manual `podman rm -f` is undone.
  const webId = (await env.containersOf("web"))[0]?.Id;
  assertExists(webId, "web has a container");
  const rm = await env.podman.cli(["rm", "-f", webId]);
  assertEquals(rm.code, 0, `podman rm -f: ${rm.stderr}`);
  await waitFor(async () => {
    const list = await env.containersOf("web");
    return list.length === 1 && list[0]?.Id !== webId && list[0]?.State === "running";
  }, { timeoutMs: 30_000, message: "removed container recreated" });
  await waitForPage(port, "hello one");

  // Manual `podman stop` is undone.
  const aId = idOf(await env.containersOf("pair"), "a");
  const stop = await env.podman.cli(["stop", "-t", "1", aId]);
  assertEquals(stop.code, 0, `podman stop: ${stop.stderr}`);
  await waitFor(async () => {
    const list = await env.containersOf("pair");
    return list.length === 2 && list.every((c) => c.State === "running");
  }, { timeoutMs: 30_000, message: "stopped container started again" });

  // Deleting the key removes the containers (and only those).
  await env.deleteDesired("pair");
  await waitFor(async () => (await env.containersOf("pair")).length === 0, {
    timeoutMs: 30_000,
    message: "pair removed",
  });
  await waitFor(async () => (await env.status())?.deployments.pair === undefined, {
    timeoutMs: 10_000,
    message: "pair gone from status",
  });
  assertEquals((await env.containersOf("web")).length, 1);

  // Liveness while nothing changes: core-NATS heartbeats naming the last status revision
  // (nothing stored), and the full status refreshed every 6 heartbeats (docs/nats-kv.md).
  // Nothing changes once the recreated web container has run its min_ready (10 s).
  await waitFor(async () => (await env.status())?.status === "ready", {
    timeoutMs: 30_000,
    message: "ready once every container has run its min_ready",
  });
  const kv = await env.statusKv();
  const stored = (await kv.get("pi-1"))!;
  assertEquals(AgentStatus.parse(stored.json()).status_refresh_seconds, 6);
  const beats = (await env.nc()).subscribe(heartbeatSubject("pi-1"), { max: 2 });
  const giveUp = setTimeout(() => beats.unsubscribe(), 10_000);
  const heard: Heartbeat[] = [];
  for await (const m of beats) heard.push(Heartbeat.parse(m.json()));
  clearTimeout(giveUp);
  assertEquals(heard.length, 2, "two heartbeats within 10 s");
  assert(
    heard.every((h) => h.status === "ready" && h.status_revision >= stored.revision),
    JSON.stringify(heard),
  );
  await waitFor(async () => (await kv.get("pi-1"))!.revision > stored.revision, {
    timeoutMs: 15_000,
    message: "the full status refreshed",
  });

  // SIGTERM: exits 0, final status "stopped", containers keep running.
  assertEquals(await agent.stop(), 0);
  assertEquals((await env.status())?.status, "stopped");
  await waitForPage(port, "hello one");
  const logs = await agent.logs();
  assert(logs.includes("device=pi-1"), "logs carry the device field");
});
