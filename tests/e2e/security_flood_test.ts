/**
 * A stolen device floods what its creds let it publish, against a real
 * nats-server with the generated JWT config, a real `operator serve` and a
 * victim device running the real agent code (a hollow device: the real agent
 * with its real NATS session and desired-state follower, over the FAKE
 * in-memory container runtime, which this attack never reaches — the podman
 * path is tested in security_agent_test.ts).
 *
 * 1. Every device-facing subject at once for 20 s (artifact `target`
 *    requests, snapshot requests, heartbeats, status puts, all with one
 *    reused reply subject, and forged change hints aimed at the victim):
 *    the victim's next change still lands, the operator keeps its lease,
 *    reports the device as flooding (/metrics) and logs a bounded number of
 *    lines about it. Positive control: the same change without the flood.
 * 2. 150 000 forged change hints aimed at the victim: its memory stays
 *    flat and a real change still lands.
 *
 * Timings and RSS are printed (and kept loosely bounded, the machines are
 * shared); the goals (3 s, 2× RSS) are stated in docs/security.md.
 */
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  AgentStatus,
  ARTIFACT_ERROR_HEADER,
  ARTIFACT_RETRY_AFTER_HEADER,
  BUCKET_AGENT_STATUS,
  BUCKET_OPERATOR_LEASES,
  decodeJson,
} from "@drover/contracts";
import { HOLLOW_IMAGES } from "../../agent/hollow.ts";
import { sampleProcess } from "../../bench/machine.ts";
import { type SecureNats, startSecureNats } from "./_security_env.ts";
import {
  type OperatorService,
  runOperatorCli,
  startOperatorService,
} from "../support/operator_process.ts";
import { freePort } from "../support/ports.ts";
import { tempDir, waitFor } from "../support/mod.ts";
import { assert, assertEquals } from "../support/assert.ts";

const REPO_ROOT = new URL("../../", import.meta.url).pathname;
const VICTIM = "fl-00000";
const ATTACKER = "fl-00001";
const DEPLOYMENT = "flood-app";
const FLOOD_MS = 20_000;
/** Messages published between flushes: the attacker's own buffer stays bounded. */
const BATCH = 1_000;

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

async function rssMiB(pid: number): Promise<number> {
  const sample = await sampleProcess(pid);
  if (sample === undefined) throw new Error(`process ${pid} is gone`);
  return sample.rssMiB;
}

/** The V8 flags the `agent` task runs the agent with (deno.json), so that its RSS is the agent's. */
async function agentV8Flags(): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}deno.json`));
  const flags = (config.tasks.agent as string).split(/\s+/).find((w) =>
    w.startsWith("--v8-flags=")
  );
  if (flags === undefined) throw new Error("the agent task names no --v8-flags");
  return flags;
}

/** The victim: `deno task hollow --devices 1` with its creds from `device add`. */
async function startVictim(env: SecureNats): Promise<AsyncDisposable & { pid: number }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      await agentV8Flags(),
      "-A",
      `${REPO_ROOT}scripts/hollow.ts`,
      "--devices",
      "1",
      "--prefix",
      "fl",
      "--nats",
      env.nats.url,
      "--creds-dir",
      env.authDir.path,
      "--heartbeat",
      "2",
    ],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) out += chunk;
  })();
  const errText = new Response(child.stderr).text();
  const stop = async () => {
    try {
      child.kill("SIGINT");
    } catch { /* gone */ }
    await child.status;
    await reading;
    await errText;
  };
  try {
    await waitFor(() => out.includes("hollow: 1/1 connected, 1 reporting"), {
      timeoutMs: 30_000,
      message: "the victim is connected and reporting",
    });
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n${out}\n${await errText}`);
  }
  return { pid: child.pid, [Symbol.asyncDispose]: stop };
}

/** Applies the victim's deployment at `version`; resolves when the CLI has written it. */
async function apply(env: SecureNats, dir: string, version: number): Promise<void> {
  const path = `${dir}/app-${version}.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      name: DEPLOYMENT,
      selector: { labels: { fleet: "victim" } },
      score: {
        type: "PodmanV0",
        services: [{ name: "app", image: HOLLOW_IMAGES[0], env: { VERSION: String(version) } }],
      },
    }),
  );
  const out = await runOperatorCli(env.nats.url, [
    "apply",
    "-f",
    path,
    "--creds",
    env.path("operator.creds"),
  ]);
  assertEquals(out.code, 0, out.stderr);
}

/** Milliseconds until the victim reports `version` of the deployment running. */
async function landed(status: KV, manifestRevision: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  await waitFor(async () => {
    const entry = await status.get(VICTIM);
    if (entry === null || entry.operation !== "PUT") return false;
    const decoded = decodeJson(AgentStatus, entry.value);
    const d = decoded.ok ? decoded.value.deployments[DEPLOYMENT] : undefined;
    return d?.deployment_revision === manifestRevision && d.phase === "running";
  }, { timeoutMs, intervalMs: 50, message: `the victim runs revision ${manifestRevision}` });
  return Math.round(performance.now() - started);
}

async function leaseHolder(nc: NatsConnection): Promise<string> {
  const kv = await new Kvm(nc).open(BUCKET_OPERATOR_LEASES);
  const entry = await kv.get("serve");
  return entry === null ? "" : (entry.json() as { holder: string }).holder;
}

/** What one flooding round publishes: every subject the attacker's creds allow. */
function floodBatch(attacker: NatsConnection, reply: string, i: number): void {
  for (let j = 0; j < BATCH; j++) {
    attacker.publish(`drover.artifact.${ATTACKER}`, enc({ op: "target", arch: "x86_64" }), {
      reply,
    });
    attacker.publish(`drover.desired.snapshot.${ATTACKER}`, new Uint8Array(), { reply });
    attacker.publish(
      `drover.heartbeat.${ATTACKER}`,
      enc({ status: "ready", status_revision: i * BATCH + j }),
    );
    attacker.publish(`$KV.agent-status.${ATTACKER}`, enc({ junk: j }), { reply });
    // A forged change hint at the victim (its direct get's answer, aimed there).
    attacker.publish(
      `$JS.API.DIRECT.GET.KV_desired-state.$KV.desired-state.${ATTACKER}.x`,
      new Uint8Array(),
      { reply: `$KV.desired-state.${VICTIM}.forged-${(i * BATCH + j) % 5_000}` },
    );
  }
}

interface FloodSetup {
  env: SecureNats;
  operator: OperatorService;
  status: KV;
  admin: NatsConnection;
  dir: string;
}

async function withFleet(test: (s: FloodSetup) => Promise<void>): Promise<void> {
  await using env = await startSecureNats({
    devices: { [VICTIM]: { fleet: "victim" }, [ATTACKER]: { fleet: "attacker" } },
  });
  await using dir = await tempDir("drover-flood-");
  await using operator = await startOperatorService(env.nats.url, await freePort(), [
    "--creds",
    env.path("operator.creds"),
  ]);
  const admin = await env.operator();
  try {
    const status = await new Kvm(admin).open(BUCKET_AGENT_STATUS);
    await test({ env, operator, status, admin, dir: dir.path });
  } finally {
    await admin.close();
  }
}

Deno.test({
  name: "flood: one device floods every subject it may publish; another's change still lands",
  sanitizeResources: false,
  async fn() {
    await withFleet(async ({ env, operator, status, admin, dir }) => {
      await using _victim = await startVictim(env);
      // Positive control: a change without the flood.
      await apply(env, dir, 1);
      const quietMs = await landed(status, 1, 30_000);
      const holder = await leaseHolder(admin);
      assert(holder !== "", "the operator holds the lease");
      await new Promise((r) => setTimeout(r, 2_000));
      const idleRss = await rssMiB(operator.pid);

      const attacker = await env.device(ATTACKER);
      let published = 0;
      let maxRss = idleRss;
      const logStart = operator.logs().length;
      let floodLandedMs = -1;
      let metricsText = "";
      try {
        const reply = `_INBOX_${ATTACKER}.reused`;
        const floodEnd = Date.now() + FLOOD_MS;
        const flood = (async () => {
          for (let i = 0; Date.now() < floodEnd; i++) {
            floodBatch(attacker, reply, i);
            published += BATCH * 5;
            await attacker.flush();
          }
        })();
        const sampling = (async () => {
          while (Date.now() < floodEnd) {
            maxRss = Math.max(maxRss, await rssMiB(operator.pid));
            await new Promise((r) => setTimeout(r, 250));
          }
        })();
        // The victim's change, in the middle of the flood.
        await new Promise((r) => setTimeout(r, 5_000));
        await apply(env, dir, 2);
        floodLandedMs = await landed(status, 2, 60_000);
        await Promise.all([flood, sampling]);
        const res = await fetch(`${operator.apiUrl}/metrics`);
        metricsText = await res.text();
      } finally {
        await attacker.close();
      }
      const floodLog = operator.logs().slice(logStart);
      const linesAboutIt = floodLog.split("\n").filter((l) => l.includes(ATTACKER)).length;
      console.log(
        `flood: ${published} messages in ${FLOOD_MS / 1000} s; victim's change landed in ` +
          `${floodLandedMs} ms (${quietMs} ms without the flood); operator RSS ${
            idleRss.toFixed(1)
          } MiB idle, ${maxRss.toFixed(1)} MiB max; ${linesAboutIt} log lines about ${ATTACKER}`,
      );
      // Goal 3 s (docs/security.md); loosely here, the machines are shared.
      assert(floodLandedMs < 20_000, `the change landed ${floodLandedMs} ms after apply`);
      assertEquals(await leaseHolder(admin), holder, "the operator kept its lease");
      assert(!floodLog.includes("Lost the operator lease"), "no lease lost");
      assert(maxRss < idleRss * 3, `operator RSS ${maxRss} MiB vs ${idleRss} MiB idle`);
      assert(linesAboutIt < 60, `${linesAboutIt} log lines about ${ATTACKER} in 20 s`);
      assert(linesAboutIt >= 1, "the flood is logged");
      const aboutIt = floodLog.split("\n").filter((l) => l.includes(ATTACKER)).join("\n");
      assert(
        new RegExp(`operator device revoke "?${ATTACKER}`).test(floodLog),
        `the log says how to cut it off:\n${aboutIt}`,
      );
      assert(
        new RegExp(`drover_device_flooding\\{device="${ATTACKER}"`).test(metricsText),
        "/metrics names the flooding device",
      );
      assert(
        !new RegExp(`drover_device_flooding\\{device="${VICTIM}"`).test(metricsText),
        "and not the victim",
      );
      const refused = [
        ...metricsText.matchAll(/^drover_device_requests_refused_total\{.*\} (\d+)/gm),
      ]
        .reduce((sum, m) => sum + Number(m[1]), 0);
      assert(refused > 0, "refusals are counted");
    });
  },
});

Deno.test({
  name: "flood: 150 000 forged change hints leave the victim's memory flat; a change lands",
  sanitizeResources: false,
  async fn() {
    await withFleet(async ({ env, operator: _operator, status, dir }) => {
      await using victim = await startVictim(env);
      await apply(env, dir, 1);
      await landed(status, 1, 30_000);
      await new Promise((r) => setTimeout(r, 2_000));
      const before = await rssMiB(victim.pid);
      const attacker = await env.device(ATTACKER);
      let maxRss = before;
      const series: number[] = [];
      try {
        for (let i = 0; i < 150_000; i++) {
          attacker.publish(
            `$JS.API.DIRECT.GET.KV_desired-state.$KV.desired-state.${ATTACKER}.x`,
            new Uint8Array(),
            { reply: `$KV.desired-state.${VICTIM}.forged-${i}` },
          );
          if (i % 1_000 === 999) {
            await attacker.flush();
            if (i % 10_000 === 9_999) {
              const rss = await rssMiB(victim.pid);
              series.push(Math.round(rss));
              maxRss = Math.max(maxRss, rss);
            }
          }
        }
        await attacker.flush();
      } finally {
        await attacker.close();
      }
      // Positive control: a real change after the flood.
      await apply(env, dir, 2);
      const landedMs = await landed(status, 2, 60_000);
      // What stays: measured once the hints still queued were read (the change landed after them).
      await new Promise((r) => setTimeout(r, 2_000));
      const after = await rssMiB(victim.pid);
      maxRss = Math.max(maxRss, after);
      console.log(
        `forged hints: victim RSS ${before.toFixed(1)} MiB before, ${maxRss.toFixed(1)} MiB ` +
          `max during, ${after.toFixed(1)} MiB after (+${(after - before).toFixed(1)}); ` +
          `the change landed ${landedMs} ms after apply; every 10 000: ${series.join(" ")} MiB`,
      );
      assert(after - before < 10, `the victim grew by ${after - before} MiB`);
      assert(landedMs < 20_000, `the change landed ${landedMs} ms after apply`);
    });
  },
});

Deno.test({
  name: "flood: a device over its artifact rate is told when to ask again, and then answered",
  sanitizeResources: false,
  async fn() {
    await withFleet(async ({ env }) => {
      const device = await env.device(ATTACKER);
      try {
        const ask = () =>
          device.request(`drover.artifact.${ATTACKER}`, enc({ op: "target", arch: "x86_64" }), {
            timeout: 10_000,
          });
        const replies = await Promise.all(Array.from({ length: 300 }, ask));
        const refused = replies.filter((m) => m.headers?.get(ARTIFACT_ERROR_HEADER));
        const answered = replies.length - refused.length;
        assert(refused.length > 0, "300 requests at once exceed the device's burst");
        assert(answered > 0, "those within it are answered");
        for (const m of refused) {
          assertEquals(m.headers?.get(ARTIFACT_RETRY_AFTER_HEADER), "1000", "told when to retry");
        }
        await new Promise((r) => setTimeout(r, 1_000));
        // Positive control: after the wait it is answered again (no release wanted: null).
        const again = await ask();
        assertEquals(again.headers?.get(ARTIFACT_ERROR_HEADER) ?? "", "");
        assertEquals(again.json(), { version: null });
      } finally {
        await device.close();
      }
    });
  },
});
