/**
 * Two agents (two device ids) on one real podman service: each creates,
 * updates and removes only its own containers (labelled `drover.device`), and
 * an unlabelled container left by an agent from before device labels is
 * adopted in place by the device whose deployment it is, and left alone by
 * the other.
 */
import { LABELS } from "@drover/contracts";
import { type PodmanPsEntry, sleepDeployment, startAgentEnv, waitFor } from "./_agent_harness.ts";
import { assert, assertEquals, assertExists } from "../support/assert.ts";

const A = "pi-a";
const B = "pi-b";

const byName = (list: PodmanPsEntry[], name: string) => list.find((c) => c.Names[0] === name);

Deno.test("agent: two devices on one podman host never touch each other's containers", async () => {
  await using env = await startAgentEnv({ deviceId: A, otherDevices: [B] });
  const revAlpha = await env.putDesired("alpha", sleepDeployment("alpha"), A);
  const revBeta = await env.putDesired("beta", sleepDeployment("beta"), B);
  const agentA = env.startAgent();
  await env.waitForDeployment(
    "alpha",
    (d) => d.phase === "running" && d.revision === revAlpha,
    "a",
  );
  const alpha = (await env.containersOf("alpha"))[0];
  assertEquals(alpha?.Labels?.[LABELS.device], A);

  // B's first pass is over once it reports ready: it has looked at every container it owns.
  const agentB = await env.startAgentFor(B);
  await waitFor(async () => {
    const s = await env.status(B);
    return s?.status === "ready" && s.deployments.beta?.revision === revBeta;
  }, { timeoutMs: 60_000, message: `device ${B} ready with beta (logs: ${env.dir.path})` });
  let list = await env.containers();
  assertEquals(byName(list, "alpha_main")?.Id, alpha?.Id, "B left A's container alone");
  assertEquals(byName(list, "beta_main")?.Labels?.[LABELS.device], B);
  assertEquals(Object.keys((await env.status(B))!.deployments), ["beta"]);
  assertEquals(Object.keys((await env.status(A))!.deployments), ["alpha"]);

  // Each one's deletion removes only its own.
  await env.deleteDesired("beta", B);
  await waitFor(async () => byName(await env.containers(), "beta_main") === undefined, {
    timeoutMs: 30_000,
    message: "beta removed by B",
  });
  list = await env.containers();
  assertEquals(byName(list, "alpha_main")?.Id, alpha?.Id);
  assertEquals(byName(list, "alpha_main")?.State, "running");

  assertEquals(await agentB.stop(), 0);
  assertEquals(await agentA.stop(), 0);
  const logs = (await agentA.logs()) + (await agentB.logs());
  assert(!logs.includes("Removed container alpha_main"), "nobody removed alpha_main");
});

Deno.test("agent: an unlabelled container from an older agent is adopted by its device only", async () => {
  await using env = await startAgentEnv({ deviceId: A, otherDevices: [B] });
  const rev = await env.putDesired("legacy", sleepDeployment("legacy"), A);
  const first = env.startAgent();
  await env.waitForDeployment("legacy", (d) => d.phase === "running" && d.revision === rev, "v1");
  assertEquals(await first.stop(), 0);

  // What an agent from before device labels left: the same container without drover.device.
  const [made] = await env.containersOf("legacy");
  assertExists(made, "the first agent made a container");
  const inspect = await env.podman.cli(["inspect", "--format", "json", made.Id]);
  assertEquals(inspect.code, 0, inspect.stderr);
  const config = JSON.parse(inspect.stdout)[0].Config as { Cmd: string[]; Env: string[] };
  const rm = await env.podman.cli(["rm", "-f", "-t", "0", made.Id]);
  assertEquals(rm.code, 0, rm.stderr);
  const labels = Object.entries(made.Labels ?? {}).filter(([k]) => k !== LABELS.device)
    .flatMap(([k, v]) => ["--label", `${k}=${v}`]);
  const marker = config.Env.find((e) => e.startsWith("MARKER="))!;
  const run = await env.podman.cli([
    "run",
    "-d",
    "--name",
    "legacy_main",
    "--restart",
    "always",
    "--env",
    marker,
    ...labels,
    made.Image,
    ...config.Cmd,
  ]);
  assertEquals(run.code, 0, run.stderr);
  const oldId = run.stdout.trim();

  // B never had "legacy": it must not remove it, though its view is authoritative.
  await env.putDesired("other", sleepDeployment("other"), B);
  await env.startAgentFor(B);
  await waitFor(async () => (await env.status(B))?.status === "ready", {
    timeoutMs: 60_000,
    message: `device ${B} ready (logs: ${env.dir.path})`,
  });
  // A (its cache and KV have "legacy") adopts it in place: same container, running.
  env.startAgent();
  await waitFor(async () => {
    const s = await env.status(A);
    return s?.status === "ready" && s.deployments.legacy?.phase === "running";
  }, { timeoutMs: 60_000, message: `device ${A} ready with legacy (logs: ${env.dir.path})` });
  const [adopted] = await env.containersOf("legacy");
  assertEquals([adopted?.Id, adopted?.State], [oldId, "running"], "adopted, not replaced");
  assertEquals(adopted?.Labels?.[LABELS.device], undefined);

  // It is A's now: deleting the deployment removes it.
  await env.deleteDesired("legacy", A);
  await waitFor(async () => (await env.containersOf("legacy")).length === 0, {
    timeoutMs: 30_000,
    message: "legacy removed by A",
  });
  assertEquals((await env.containersOf("other")).length, 1, "B's own container untouched");
});
