/**
 * Bad input from KV fails only its own deployment; other devices' keys are
 * ignored; a burst of updates to one key ends in the last one.
 */
import { sleepDeployment, startAgentEnv, waitFor } from "./_agent_harness.ts";
import { LABELS } from "@drover/contracts";
import { assert, assertEquals } from "../support/assert.ts";

Deno.test("agent: invalid values fail only their deployment; other devices ignored; 50 rapid updates", async () => {
  await using env = await startAgentEnv();
  env.startAgent();

  const goodRev = await env.putDesired("good", sleepDeployment("good"));
  await env.waitForDeployment(
    "good",
    (d) => d.phase === "running" && d.revision === goodRev,
    "good running",
  );
  const goodId = (await env.containersOf("good"))[0]?.Id;

  // Invalid JSON.
  const jsonRev = await env.putDesired("broken", '{"deployment": "broken", "score": ');
  const broken = await env.waitForDeployment(
    "broken",
    (d) => d.phase === "failed" && d.revision === jsonRev,
    "broken JSON fails",
  );
  assert(broken.message?.includes("invalid JSON"), `message: ${broken.message}`);

  // Schema-invalid: a bad port string names the field.
  const bad = sleepDeployment("badport");
  (bad.score.services[0] as { ports?: string[] }).ports = ["99999:80"];
  const schemaRev = await env.putDesired("badport", bad);
  const badport = await env.waitForDeployment(
    "badport",
    (d) => d.phase === "failed" && d.revision === schemaRev,
    "schema-invalid fails",
  );
  assert(badport.message?.includes("ports"), `message: ${badport.message}`);

  // Key and value disagree on the deployment name.
  const mismatchRev = await env.putDesired("named", sleepDeployment("other-name"));
  const named = await env.waitForDeployment(
    "named",
    (d) => d.phase === "failed" && d.revision === mismatchRev,
    "name mismatch fails",
  );
  assert(named.message?.includes("other-name"), `message: ${named.message}`);

  // Another device's keys are ignored.
  await env.putDesired("foreign", sleepDeployment("foreign"), "pi-2");

  // The healthy deployment was never touched, nothing of the bad ones exists.
  const status = (await env.status())!;
  assertEquals(status.deployments.good?.phase, "running");
  assertEquals(status.status, "degraded");
  assertEquals(status.deployments.foreign, undefined);
  const all = await env.containers();
  assertEquals(all.map((c) => c.Labels?.[LABELS.deployment]), ["good"]);
  assertEquals(all[0]?.Id, goodId);

  // Fixing a bad value brings it up.
  const fixedRev = await env.putDesired("broken", sleepDeployment("broken"));
  await env.waitForDeployment(
    "broken",
    (d) => d.phase === "running" && d.revision === fixedRev,
    "fixed value runs",
  );

  // 50 rapid updates of one key: the last one wins, one container.
  let lastRev = 0;
  for (let i = 1; i <= 50; i++) {
    lastRev = await env.putDesired("burst", sleepDeployment("burst", ["main"], String(i)));
  }
  await env.waitForDeployment(
    "burst",
    (d) => d.phase === "running" && d.revision === lastRev,
    "burst converges on the last revision",
  );
  await waitFor(async () => {
    const list = await env.containersOf("burst");
    return list.length === 1 && list[0]?.State === "running" ? list : undefined;
  }, { timeoutMs: 30_000, message: "exactly one burst container" });
  const inspect = await env.podman.cli([
    "inspect",
    "burst_main",
    "--format",
    "{{range .Config.Env}}{{println .}}{{end}}",
  ]);
  assert(inspect.stdout.split("\n").includes("MARKER=50"), `env: ${inspect.stdout}`);
  assertEquals((await env.containersOf("burst"))[0]?.Labels?.[LABELS.revision], String(lastRev));
  assertEquals((await env.containersOf("good"))[0]?.Id, goodId);
  // Long after pi-2's key was written, still nothing of it here.
  assertEquals((await env.containersOf("foreign")).length, 0);
  assertEquals((await env.status())?.deployments.foreign, undefined);
});
