/**
 * Failures that say why: a crash-looping service is
 * `failed` with its exit code and restart count and stays failed while it
 * keeps dying, instead of flipping between running and pending; a device
 * whose podman socket is wrong is `degraded` with the reason in its status.
 */
import type { AgentStatus } from "@drover/contracts";
import {
  podmanDeployment,
  sleepDeployment,
  startAgentEnv,
  TEST_IMAGE,
  waitFor,
} from "./_agent_harness.ts";
import { AgentProcess } from "../support/agent_process.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";

Deno.test("agent: a crash-looping deployment is failed with exit code and restarts, and stays so", async () => {
  await using env = await startAgentEnv({ heartbeatSeconds: 1 });
  const agent = env.startAgent();
  const rev = await env.putDesired(
    "crashy",
    podmanDeployment("crashy", [{
      name: "main",
      image: TEST_IMAGE,
      command: ["sh", "-c", "exit 3"],
      restart: "always",
    }]),
  );
  const restartsIn = (s: AgentStatus) =>
    Number(/, (\d+) restarts\)/.exec(s.deployments.crashy?.message ?? "")?.[1]);
  const failed = await waitFor(async () => {
    const s = await env.status();
    return s?.deployments.crashy?.phase === "failed" && restartsIn(s) > 0 ? s : undefined;
  }, { timeoutMs: 60_000, message: `crashy failed (logs: ${env.dir.path})` });
  const first = failed.deployments.crashy;
  assertEquals(first?.revision, rev);
  assertStringIncludes(first?.message!, 'service "main" keeps exiting (exit code 3, ');
  assertStringIncludes(first?.message!, "failed until it runs 30 s without a restart");
  assertEquals(failed.status, "degraded");
  assertStringIncludes(failed.message ?? "", "crashy failed");

  // Every status published while podman restarts it another 20 times says failed.
  const seen: string[] = [];
  await waitFor(async () => {
    const s = (await env.status())!;
    const d = s.deployments.crashy;
    seen.push(`${s.status}/${d?.phase}`);
    return restartsIn(s) >= restartsIn(failed) + 20;
  }, { timeoutMs: 60_000, intervalMs: 100, message: "20 more restarts reported" });
  assertEquals([...new Set(seen)], ["degraded/failed"]);

  // A fixed value runs, and the device is ready again with no message.
  const fixed = await env.putDesired("crashy", sleepDeployment("crashy"));
  await env.waitForDeployment("crashy", (d) => d.phase === "running" && d.revision === fixed, "ok");
  await waitFor(async () => (await env.status())?.status === "ready", {
    timeoutMs: 30_000,
    message: "ready after the fix",
  });
  assertEquals((await env.status())?.message, undefined);
  assertEquals(await agent.stop(), 0);
});

Deno.test("agent: with the podman socket wrong the device is degraded and says why", async () => {
  await using env = await startAgentEnv({ heartbeatSeconds: 1 });
  const configPath = `${env.dir.path}/agent-bad-socket.toml`;
  const config = await Deno.readTextFile(env.configPath);
  const wrong = `${env.dir.path}/no-such-podman.sock`;
  assert(config.includes(env.podman.socket), "the config names the podman socket");
  await Deno.writeTextFile(configPath, config.replace(env.podman.socket, wrong));
  await env.putDesired("app", sleepDeployment("app"));
  const agent = AgentProcess.start({ configPath, logPath: `${env.dir.path}/agent-bad.log` });
  try {
    const status = await waitFor(async () => {
      const s = await env.status();
      return s?.status === "degraded" && s.message ? s : undefined;
    }, { timeoutMs: 60_000, message: `degraded with a message (logs: ${env.dir.path})` });
    assertStringIncludes(status.message!, "container runtime unreachable");
    assertStringIncludes(status.message!, wrong);
  } finally {
    await agent.kill();
  }
});
