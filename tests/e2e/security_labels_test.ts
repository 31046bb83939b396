/**
 * Issue 17, attack 2: a stolen device claims labels to receive another site's
 * deployment (and its secrets). Device `thief` is provisioned with `site=x`
 * but its agent config says `site=bank`, so its status reports `site=bank`;
 * device `teller` is registered `site=bank` (positive control). With real
 * agents under their own `device add` creds, a real `operator serve` under
 * the operator's creds and a real nats-server trusting the auth directory:
 * the `bank` deployment reaches the teller only, and the thief can neither
 * receive it nor rewrite its own registry entry.
 */

import { parse, stringify } from "smol-toml";
import { jetstream } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { BUCKET_DESIRED_STATE, BUCKET_DEVICES, canonicalJson } from "@drover/contracts";
import { buildBusyboxImage, freePort, startPodman, waitFor } from "../support/mod.ts";
import type { PodmanService } from "../support/mod.ts";
import { assert, assertEquals, assertExists, assertRejects } from "../support/assert.ts";
import { runOperatorCli, startOperatorService } from "../support/operator_process.ts";
import { readRegistration } from "../../operator/fleet/registry.ts";
import { tolerateTransportResets } from "@drover/common";
import { AgentProcess } from "../support/agent_process.ts";
import { type SecureNats, startSecureNats } from "./_security_env.ts";

// These tests provoke refused connections on purpose (see tolerateTransportResets).
tolerateTransportResets();

const IMAGE = "localhost/drover/busybox:labels";
const SECRET = "bank-vault-password";

/** The `device add` config of `id`, completed with what only the test knows, claiming `labels`. */
async function agentConfig(
  env: SecureNats,
  id: string,
  podman: PodmanService,
  labels: Record<string, string>,
): Promise<string> {
  const path = env.path(`${id}.toml`);
  const config = parse(await Deno.readTextFile(path)) as Record<string, Record<string, unknown>>;
  // The tables are the same objects as in `config`: changing them changes what is written back.
  const { agent, nats } = config;
  assertExists(agent, `${path} has an [agent] table`);
  assertExists(nats, `${path} has a [nats] table`);
  agent.labels = labels;
  agent.state_dir = env.path(`${id}-state`);
  agent.heartbeat_seconds = 1;
  nats.servers = [env.nats.url];
  nats.creds = env.path(`${id}.creds`);
  config.secrets = { key: env.path(`${id}.xk`) };
  config.podman = { socket: podman.socket };
  await Deno.writeTextFile(path, stringify(config));
  return path;
}

interface DeviceJson {
  device_id: string;
  labels: Record<string, string>;
  reported_labels: Record<string, string> | null;
  online: boolean;
}

async function keysOf(kv: KV): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of await kv.keys()) keys.push(key);
  return keys.sort();
}

async function containers(podman: PodmanService): Promise<string[]> {
  const ps = await podman.cli(["ps", "-a", "--format", "{{.Names}}"]);
  assertEquals(ps.code, 0, ps.stderr);
  return ps.stdout.split("\n").filter((l) => l !== "").sort();
}

Deno.test({
  name:
    "security: a device claiming site=bank in its own config does not receive the bank deployment",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using env = await startSecureNats({
      devices: { thief: { site: "x" }, teller: { site: "bank" } },
    });
    await using podThief = await startPodman();
    await using podTeller = await startPodman();
    await Promise.all([podThief, podTeller].map((p) => buildBusyboxImage(p, IMAGE)));
    const creds = ["--creds", env.path("operator.creds")];
    await using operator = await startOperatorService(env.nats.url, await freePort(), creds);
    const cli = (...args: string[]) => runOperatorCli(env.nats.url, [...args, ...creds]);

    // Both agents claim site=bank; only the teller was registered so.
    await using thief = AgentProcess.start({
      configPath: await agentConfig(env, "thief", podThief, { site: "bank" }),
      logPath: env.path("thief.log"),
    });
    await using teller = AgentProcess.start({
      configPath: await agentConfig(env, "teller", podTeller, { site: "bank" }),
      logPath: env.path("teller.log"),
    });
    const op = await env.operator();
    try {
      await waitFor(async () => {
        const out = await cli("get", "devices", "-o", "json");
        if (out.code !== 0) return false;
        const devices: DeviceJson[] = JSON.parse(out.stdout);
        return devices.filter((d) => d.online && d.reported_labels?.site === "bank").length === 2;
      }, {
        timeoutMs: 60_000,
        message: "both agents report site=bank",
      }).catch(async (e) => {
        throw new Error(
          `${e.message}\nthief:\n${await thief.logTail()}\nteller:\n${await teller.logTail()}`,
        );
      });

      await Deno.writeTextFile(
        env.path("bank.json"),
        JSON.stringify({
          name: "bank",
          selector: { labels: { site: "bank" } },
          score: {
            type: "PodmanV0",
            services: [{
              name: "db",
              image: IMAGE,
              command: ["sleep", "3600"],
              env: { DB_PASSWORD: SECRET },
            }],
          },
        }),
      );
      const apply = await cli("apply", "-f", env.path("bank.json"), "--wait", "--timeout", "90s");
      assertEquals(
        apply.code,
        0,
        `${apply.stdout}${apply.stderr}\n${operator.logs()}\nteller:\n${await teller.logTail()}`,
      );
      // Positive control: the registered device runs it; the rollout counted only that one.
      assert(apply.stdout.includes("bank: 1/1 ready"), apply.stdout);
      assertEquals(await containers(podTeller), ["bank_db"]);

      // The pass that wrote teller.bank decided the thief's fate too: no key, no container.
      const desired = await new Kvm(op).open(BUCKET_DESIRED_STATE);
      assertEquals(await keysOf(desired), ["teller.bank"]);
      assertEquals(await containers(podThief), []);
      assert(!(await thief.logs()).includes(SECRET), "the thief's agent saw the bank secret");

      // Shown, not trusted: the registry's site=x decides, the claimed site=bank is displayed.
      const devices: DeviceJson[] = JSON.parse((await cli("get", "devices", "-o", "json")).stdout);
      const shown = devices.find((d) => d.device_id === "thief")!;
      assertEquals([shown.labels, shown.reported_labels], [{ site: "x" }, { site: "bank" }]);

      // Nor can the thief promote itself: its own creds cannot write the registry.
      const registry = await new Kvm(op).open(BUCKET_DEVICES);
      const before = await readRegistration(registry, "thief");
      const dev = await env.device("thief");
      try {
        const forged = canonicalJson({
          labels: { site: "bank" },
          updated_at: new Date().toISOString(),
        });
        await assertRejects(() =>
          jetstream(dev, { checkAPI: false, timeout: 5_000 }).publish(
            `$KV.${BUCKET_DEVICES}.thief`,
            forged,
          )
        );
      } finally {
        await dev.close();
      }
      assertEquals(await readRegistration(registry, "thief"), before);
      assertEquals(before?.registration.labels, { site: "x" });
    } finally {
      await op.close();
    }
  },
});
