/**
 * Both composition roots start and stop without a false alarm: the agent (real NATS, real
 * podman, with the optional parts that once referred to objects built after them — the
 * metrics endpoint and the self-updater) and `operator serve` (real NATS). Neither may log
 * an ERROR or FATAL line while nothing is wrong.
 */
import { freePort, sleepDeployment, startAgentEnv } from "./_agent_harness.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { startNats } from "../support/nats.ts";
import { runOperatorCli, startOperatorService } from "../support/operator_process.ts";
import { tempDir } from "../support/temp_dir.ts";
import { createReleaseKey } from "../../operator/auth/release_key.ts";

/** Lines at level error or fatal, in the agent's text format and in logtape's default one. */
function errorLines(log: string): string[] {
  return log.split("\n").filter((line) => /^(ERROR|FATAL) |\[(ERR|FTL)\]/.test(line));
}

Deno.test("agent: starts (metrics, self-update, a deployment) and stops without an ERROR line", async () => {
  await using keys = await tempDir("drover-startup-keys-");
  const key = await createReleaseKey(keys.path);
  const metricsPort = await freePort();
  await using env = await startAgentEnv({
    extraToml: `[metrics]\nlisten = "127.0.0.1:${metricsPort}"\n\n` +
      `[update]\nrelease_key = "${key.publicKey}"\n`,
  });
  await env.putDesired("idle", sleepDeployment("idle"));
  const agent = env.startAgent();
  await env.waitForDeployment("idle", (d) => d.phase === "running", "idle deployment runs");
  const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assertEquals(metrics.status, 200);
  await metrics.body?.cancel();
  assertEquals(await agent.stop(), 0);
  const logs = await agent.logs();
  // Positive controls: the log is the one of a start and a clean stop.
  assert(logs.includes("Serving Prometheus metrics"), logs);
  assert(logs.includes("First reconcile pass done"), logs);
  assert(logs.includes("Published final status"), logs);
  assertEquals(errorLines(logs), [], logs);
});

Deno.test("operator serve: starts, answers /healthz and stops without an ERROR line", async () => {
  await using nats = await startNats();
  const service = await startOperatorService(nats.url, await freePort());
  try {
    const health = await fetch(`${service.apiUrl}/healthz`);
    assertEquals(health.status, 200);
    await health.body?.cancel();
  } finally {
    assertEquals(await service.stop(), 0);
  }
  const logs = service.logs();
  assert(logs.includes("Ready:"), logs);
  assert(logs.includes("Stopping"), logs);
  assertEquals(errorLines(logs), [], logs);
});

Deno.test("operator serve: a port in use fails the start, stops what started and exits 1", async () => {
  await using nats = await startNats();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: await freePort() });
  // runOperatorCli waits for the process to exit: a connection left open would hang it.
  const r = await runOperatorCli(nats.url, ["serve", "--listen", `127.0.0.1:${taken.addr.port}`], {
    DROVER_LOG_LEVEL: "info",
  });
  assertEquals(r.code, 1, r.stderr);
  assert(/address already in use|AddrInUse/i.test(r.stderr), r.stderr);
  // Positive control: it got as far as NATS before the HTTP part failed.
  assert(r.stderr.includes("connecting to"), r.stderr);
});
