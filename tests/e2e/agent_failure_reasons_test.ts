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

/** A service that exits at once with code 3, restarted by podman again and again. */
function crashyDeployment() {
  return podmanDeployment("crashy", [{
    name: "main",
    image: TEST_IMAGE,
    command: ["sh", "-c", "exit 3"],
    restart: "always",
  }]);
}

Deno.test("agent: a crash-looping deployment is failed with exit code and restarts, and stays so", async () => {
  await using env = await startAgentEnv({ heartbeatSeconds: 1 });
  const agent = env.startAgent();
  const rev = await env.putDesired("crashy", crashyDeployment());
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

Deno.test("agent: podman stopped under a crash loop — the loop stays failed, the rest is unknown", async () => {
  await using env = await startAgentEnv({ heartbeatSeconds: 1 });
  const agent = env.startAgent();
  // The operator writes the deployment revision into each value: the container label shows it.
  const steadyKv = await env.putDesired("steady", {
    ...sleepDeployment("steady"),
    deployment_revision: 4,
  });
  await env.waitForDeployment("steady", (d) => d.phase === "running", "steady runs");
  const [steadyContainer] = await env.containersOf("steady");
  assertEquals(
    [steadyContainer?.Labels?.["drover.revision"], steadyContainer?.Labels?.["drover.kv-revision"]],
    ["4", String(steadyKv)],
  );
  await env.putDesired("crashy", crashyDeployment());
  await env.waitForDeployment("crashy", (d) => d.phase === "failed", "crashy fails");

  await env.podman.stop();
  const down = await waitFor(async () => {
    const s = await env.status();
    return s?.deployments.steady?.phase === "unknown" ? s : undefined;
  }, { timeoutMs: 60_000, message: `steady turns unknown (logs: ${env.dir.path})` });
  assertStringIncludes(down.deployments.steady?.message ?? "", "container runtime unreachable");
  assertStringIncludes(down.deployments.steady?.message ?? "", "last observed");
  assertStringIncludes(down.deployments.steady?.message ?? "", "(running)");
  const observedAt = Date.parse(down.deployments.steady?.observed_at ?? "");
  assert(Number.isFinite(observedAt), JSON.stringify(down.deployments.steady));
  assertEquals(down.deployments.crashy?.phase, "failed");
  // Past the crash loop's 30 s healing window: nobody saw it heal, so it is still failed,
  // and what ran is still not reported as running.
  await new Promise((resolve) => setTimeout(resolve, 32_000));
  const later = (await env.status())!;
  assertEquals(
    [later.deployments.crashy?.phase, later.deployments.steady?.phase],
    ["failed", "unknown"],
  );
  // The same last observation: from before podman stopped, not refreshed from nothing.
  assertEquals(Date.parse(later.deployments.steady?.observed_at ?? ""), observedAt);

  await env.podman.start();
  await env.waitForDeployment("steady", (d) => d.phase === "running", "steady seen running again");
  assertEquals((await env.status())?.deployments.crashy?.phase, "failed");
  assertEquals(await agent.stop(), 0);
});
