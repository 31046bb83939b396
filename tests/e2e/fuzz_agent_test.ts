/**
 * Fuzz: thousands of seeded, mutated desired-state values written to KV for a
 * running agent, while a healthy deployment runs beside them. The agent must
 * stay up with bounded memory, leave the healthy container alone (same id),
 * and report every bad value as `failed` with a short, readable message.
 * Replay a failure with the printed seed: `DROVER_FUZZ_SEED=<seed>`.
 */
import {
  decodeJson,
  type DeploymentStatus,
  DesiredState,
  desiredStateKey,
} from "@drover/contracts";
import { assert, assertEquals, assertExists } from "../support/assert.ts";
import { sleepDeployment, startAgentEnv, TEST_IMAGE, waitFor } from "./_agent_harness.ts";
import { badValue, fuzzSeed, Rng } from "./_fuzz.ts";

/** Deployments written to in each round (each gets one bad value per round). */
const KEYS = 40;
/** Stop after this many values or this much time, whichever comes first. */
const MAX_VALUES = 2_400;
const TIME_BUDGET_MS = 40_000;
/**
 * Generous: the point is "bounded", not "small". Rounds carry up to 40 values
 * of up to 1 MB; V8 grows its heap for them and measured RSS plateaus at
 * about 75 + 200 MB (it does not keep growing with more rounds).
 */
const RSS_GROWTH_LIMIT_KB = 300 * 1024;
/** A status message a person can read in a table. */
const MAX_MESSAGE_CHARS = 2_000;

function rssKb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = status.match(/^VmRSS:\s+(\d+) kB/m);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** The valid document every mutation starts from. */
function baseDesired(deployment: string) {
  return {
    deployment,
    score: {
      type: "PodmanV0",
      services: [
        {
          name: "web",
          image: TEST_IMAGE,
          command: ["sh", "-c", "sleep 3600"],
          env: { GREETING: "hi" },
          ports: ["127.0.0.1:18080:80"],
          volumes: ["data:/data"],
          restart: "always",
          labels: { "app.example/tier": "front" },
        },
        { name: "side", image: TEST_IMAGE, command: ["sleep", "3600"] },
      ],
    },
  };
}

function checkMessage(deployment: string, status: DeploymentStatus): void {
  const message = status.message;
  assert(typeof message === "string" && message.trim() !== "", `${deployment}: no message`);
  // "<field path>: <problem>", "invalid JSON: …", or "value is not valid UTF-8 …" (bytes that are
  // not text have no field): it names what is wrong.
  assert(
    /^[^\n]+: \S/.test(message) || /^value is not valid UTF-8/.test(message),
    `${deployment}: message names no field: ${message}`,
  );
  assert(
    message.length <= MAX_MESSAGE_CHARS,
    `${deployment}: message of ${message.length} chars: ${message.slice(0, 300)}…`,
  );
}

Deno.test("fuzz: thousands of bad desired states never crash the agent or touch a healthy deployment", async () => {
  const seed = fuzzSeed();
  console.log(`fuzz seed ${seed} (replay: DROVER_FUZZ_SEED=${seed})`);
  const rng = new Rng(seed);
  await using env = await startAgentEnv({ heartbeatSeconds: 1 });
  const agent = env.startAgent({ DROVER_LOG_LEVEL: "warning" });

  const healthyRev = await env.putDesired("healthy", sleepDeployment("healthy"));
  await env.waitForDeployment(
    "healthy",
    (d) => d.phase === "running" && d.revision === healthyRev,
    "healthy running",
  );
  const [healthy] = await env.containersOf("healthy");
  assertEquals(healthy?.State, "running");
  const rssBefore = rssKb(agent.pid);

  const deployments = Array.from({ length: KEYS }, (_, i) => `fuzz-${i}`);
  const started = Date.now();
  let sent = 0;
  let rounds = 0;
  while (sent < MAX_VALUES && Date.now() - started < TIME_BUDGET_MS) {
    rounds++;
    const expected = new Map<string, number>();
    const kv = await env.desiredKv();
    for (const deployment of deployments) {
      const value = badValue(rng, baseDesired(deployment), (bytes) => {
        const decoded = decodeJson(DesiredState, bytes);
        return !decoded.ok || decoded.value.deployment !== deployment;
      });
      expected.set(deployment, await kv.put(desiredStateKey(env.deviceId, deployment), value));
      sent++;
    }
    // Keys the agent cannot even parse into a deployment name: ignored, not fatal.
    await kv.put(`${env.deviceId}.Bad_Key`, "{}");
    await kv.put(`${env.deviceId}.a.b.c`, "{}");

    await waitFor(async () => {
      const status = await env.status();
      if (!agentRunning()) throw new Error(`agent exited during round ${rounds}`);
      for (const [deployment, revision] of expected) {
        const d = status?.deployments[deployment];
        if (d === undefined || d.revision !== revision) return false;
      }
      return true;
    }, { timeoutMs: 60_000, message: `round ${rounds}: every bad value reported (seed ${seed})` });
    if (Deno.env.get("DROVER_FUZZ_TRACE")) console.log(`round ${rounds} rss ${rssKb(agent.pid)}`);
    const status = (await env.status())!;
    for (const deployment of deployments) {
      const d = status.deployments[deployment];
      assertExists(d, `${deployment} reported (round ${rounds}, seed ${seed})`);
      assertEquals(d.phase, "failed", `${deployment} (round ${rounds}, seed ${seed})`);
      assertEquals(Object.keys(d.services), [], `${deployment}: nothing was created`);
      checkMessage(deployment, d);
    }
  }
  console.log(`fuzz: ${sent} bad values in ${rounds} rounds, ${Date.now() - started} ms`);
  assert(sent >= 1_000, `only ${sent} values fit in the time budget`);

  // The agent is still up, its memory bounded, the healthy deployment untouched.
  assert(agentRunning(), "agent still running");
  const rssAfter = rssKb(agent.pid);
  console.log(`agent RSS ${rssBefore} kB before, ${rssAfter} kB after`);
  assert(
    rssAfter - rssBefore < RSS_GROWTH_LIMIT_KB,
    `RSS grew from ${rssBefore} kB to ${rssAfter} kB`,
  );
  const after = await env.containersOf("healthy");
  assertEquals(after.map((c) => [c.Id, c.State]), [[healthy?.Id, "running"]]);
  assertEquals(
    (await env.containers()).length,
    1,
    "no container exists but the healthy one",
  );
  assertEquals((await env.status())?.deployments.healthy?.phase, "running");
  assertEquals(await agent.stop(), 0, "clean exit");

  function agentRunning(): boolean {
    try {
      Deno.readTextFileSync(`/proc/${agent.pid}/status`);
      return !Deno.readTextFileSync(`/proc/${agent.pid}/status`).includes("State:\tZ");
    } catch {
      return false;
    }
  }
});
