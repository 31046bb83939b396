/**
 * Health checks and stop timeouts with a real agent and a real podman service
 * (which has no systemd: nothing but the agent runs the checks). A service
 * whose check passes becomes `running` with health `healthy`; one whose check
 * never passes ends `failed` naming the service and the check's output, and is
 * never reported `running`; a container that ignores SIGTERM is killed after
 * its `stop_timeout` when its deployment is removed.
 */
import type { AgentStatus, DeploymentStatus } from "@drover/contracts";
import { podmanDeployment, startAgentEnv, TEST_IMAGE, waitFor } from "./_agent_harness.ts";
import { assert, assertEquals, assertExists, assertStringIncludes } from "../support/assert.ts";

/** Every status of `deployment` the agent publishes, as seen by polling its key. */
function recordStatuses(
  status: () => Promise<AgentStatus | undefined>,
  deployment: string,
  signal: AbortSignal,
): DeploymentStatus[] {
  const seen: DeploymentStatus[] = [];
  (async () => {
    while (!signal.aborted) {
      const d = (await status().catch(() => undefined))?.deployments[deployment];
      if (d && JSON.stringify(d) !== JSON.stringify(seen.at(-1))) seen.push(d);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return seen;
}

Deno.test("agent: a passing health check makes the service healthy and the deployment running", async () => {
  await using env = await startAgentEnv();
  const agent = env.startAgent();
  const stop = new AbortController();
  const seen = recordStatuses(() => env.status(), "ready", stop.signal);
  // Ready only after a second: the first checks fail, so "starting" must come first.
  const rev = await env.putDesired(
    "ready",
    podmanDeployment("ready", [{
      name: "main",
      image: TEST_IMAGE,
      command: ["sh", "-c", "trap 'exit 0' TERM; (sleep 2; touch /tmp/ready) & sleep 3600 & wait"],
      healthcheck: {
        test: ["CMD-SHELL", "test -e /tmp/ready"],
        interval: "1s",
        timeout: "5s",
        retries: 10,
      },
    }]),
  );
  const running = await env.waitForDeployment(
    "ready",
    (d) => d.revision === rev && d.phase === "running",
    "deployment with a passing health check runs",
  );
  stop.abort();
  assertEquals(running.services.main?.health, "healthy");
  assertEquals(running.services.main?.state, "running");
  assert(
    seen.some((d) => d.services.main?.health === "starting" && d.phase === "pending"),
    `a pending "starting" status came first: ${JSON.stringify(seen)}`,
  );
  for (const d of seen) {
    if (d.phase === "running") assertEquals(d.services.main?.health, "healthy", JSON.stringify(d));
  }
  assertEquals(await agent.stop(), 0);
});

Deno.test("agent: a health check that never passes fails the deployment with its output", async () => {
  await using env = await startAgentEnv();
  const agent = env.startAgent();
  const stop = new AbortController();
  const seen = recordStatuses(() => env.status(), "sick", stop.signal);
  const rev = await env.putDesired(
    "sick",
    podmanDeployment("sick", [{
      name: "main",
      image: TEST_IMAGE,
      command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
      healthcheck: {
        test: ["CMD-SHELL", "echo database unreachable; exit 3"],
        interval: "1s",
        timeout: "5s",
        retries: 2,
      },
    }]),
  );
  const failed = await env.waitForDeployment(
    "sick",
    (d) => d.revision === rev && d.phase === "failed",
    "deployment with a failing health check fails",
  );
  stop.abort();
  assertEquals(failed.services.main?.health, "unhealthy");
  assertStringIncludes(failed.message ?? "", 'service "main" is unhealthy');
  // Podman 4.3 records any failing check as exit code 1 (docs/podman-api.md).
  assertStringIncludes(failed.message ?? "", "(exit code 1: database unreachable)");
  assert(seen.length > 0);
  assert(seen.every((d) => d.phase !== "running"), `never running: ${JSON.stringify(seen)}`);
  // The device says why it is not ready.
  assertStringIncludes((await env.status())?.message ?? "", "sick failed");
  assertEquals(await agent.stop(), 0);
});

Deno.test("agent: a container ignoring SIGTERM is killed after its stop_timeout", async () => {
  await using env = await startAgentEnv();
  const agent = env.startAgent();
  const rev = await env.putDesired(
    "stubborn",
    podmanDeployment("stubborn", [{
      name: "main",
      image: TEST_IMAGE,
      // SIGTERM is ignored: only SIGKILL, after the stop timeout, ends it.
      command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
      stop_timeout: "3s",
    }]),
  );
  await env.waitForDeployment(
    "stubborn",
    (d) => d.revision === rev && d.phase === "running",
    "stubborn runs",
  );
  const [container] = await env.containersOf("stubborn");
  assertExists(container, "stubborn has a container");
  const inspect = await env.podman.cli([
    "inspect",
    "--format",
    "{{.Config.StopTimeout}}",
    container.Id,
  ]);
  assertEquals(inspect.stdout.trim(), "3", inspect.stderr);

  const deletedAt = Date.now();
  await env.deleteDesired("stubborn");
  await waitFor(async () => (await env.containersOf("stubborn")).length === 0, {
    timeoutMs: 60_000,
    intervalMs: 100,
    message: "stubborn container removed",
  });
  const tookMs = Date.now() - deletedAt;
  console.log(`removal of a container ignoring SIGTERM with stop_timeout 3s took ${tookMs} ms`);
  // SIGKILL comes no earlier than the stop timeout after SIGTERM.
  assert(tookMs >= 3000, `killed before its stop timeout: ${tookMs} ms`);
  assertEquals(await agent.stop(), 0);
});
