/**
 * Sealed secrets end to end, with real agents (each on its own podman
 * service), a real `operator serve` and nats-server with the generated auth
 * config: `secret set`, a deployment that prints hashes of a secret file and
 * an env secret (the hashes match: the value arrived), then the plaintext
 * searched for in every stream of every bucket, every file of the auth and
 * device directories (offline caches, state, agent logs), the operator's log,
 * the CLI's output and the HTTP API — and found nowhere. Then: another
 * device's key cannot open a device's value; a new secret version goes out
 * through the canary batch first and replaces only the containers that mount
 * it; one the service cannot use fails the canary's health check and is rolled
 * back to the previous version (kept sealed in the store) without touching the
 * other device; a config change replaces only the container that mounts it; an agent
 * restarted offline re-creates its container from the sealed cache; delete
 * takes the podman secrets with it.
 */

import { parse, stringify } from "smol-toml";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { BUCKET_DESIRED_STATE, DesiredState } from "@drover/contracts";
import { openFrom, sealingKeyFromSeed, tolerateTransportResets } from "@drover/common";
import {
  buildBusyboxImage,
  freePort,
  type PodmanService,
  startPodman,
  tempDir,
  waitFor,
} from "../support/mod.ts";
import { assert, assertEquals, assertExists, assertStringIncludes } from "../support/assert.ts";
import { AgentProcess } from "../support/agent_process.ts";
import { runOperatorCli, startOperatorService } from "../support/operator_process.ts";
import { DEVICE_SEALING_KEY_PATH } from "../../operator/auth/mod.ts";
import { type SecureNats, startSecureNats } from "./_security_env.ts";

tolerateTransportResets();

const IMAGE = "localhost/drover/busybox:secrets";
/** pi-c carries the canary label: the first batch takes it although it sorts last. */
const DEVICES = { "pi-a": "lab", "pi-c": "canary" } as const;
type DeviceId = keyof typeof DEVICES;
const IDS = Object.keys(DEVICES) as DeviceId[];

/** Prints the hashes (never the values) of the secret file, the env secret, and the config. */
const REPORT = [
  'echo "file=$(sha256sum /run/secrets/db-password | cut -c1-64)',
  'env=$(printf %s "$API_KEY" | sha256sum | cut -c1-64)',
  'config=$(cat /etc/app/app.conf) mode=$(stat -c %a /etc/app/app.conf)"',
].join(" ");

function manifest(config: string): string {
  return JSON.stringify({
    name: "web",
    selector: { labels: { fleet: "yes" } },
    score: {
      type: "PodmanV0",
      services: [
        {
          name: "app",
          image: IMAGE,
          command: ["sh", "-c", `${REPORT}; sleep 3600`],
          secrets: ["db-password", { source: "api-key", type: "env", target: "API_KEY" }],
          configs: [{ source: "app-conf", target: "/etc/app/app.conf" }],
          // A value starting "bad-" is one the service cannot work with.
          healthcheck: {
            test: ["CMD-SHELL", "! grep -q '^bad-' /run/secrets/db-password"],
            interval: "1s",
            timeout: "5s",
            retries: 2,
          },
        },
        // Mounts nothing: no secret or config change may touch it. Ready after 1 s up (no health
        // check; the default min_ready would add 10 s to every batch of this test).
        { name: "side", image: IMAGE, command: ["sleep", "3600"], min_ready: "1s" },
      ],
      configs: { "app-conf": { content: config } },
    },
    rollout: {
      batches: [{ limit: 1, selector: { labels: { site: "canary" } } }],
      batch_timeout: "60s",
      // Long enough that the second batch starts visibly later than the canary.
      min_ready: "3s",
    },
  });
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The report line of the running `web_app` container, if it printed one yet. */
async function report(podman: PodmanService): Promise<string | undefined> {
  const logs = await podman.cli(["logs", "web_app"]);
  return logs.code === 0 ? logs.stdout.trim().split("\n").at(-1) : undefined;
}

async function containerId(podman: PodmanService, name: string): Promise<string> {
  const out = await podman.cli(["inspect", "--format", "{{.Id}}", name]);
  assertEquals(out.code, 0, out.stderr);
  return out.stdout.trim();
}

async function podmanSecrets(podman: PodmanService): Promise<string[]> {
  const out = await podman.cli(["secret", "ls", "--format", "{{.Name}}"]);
  assertEquals(out.code, 0, out.stderr);
  return out.stdout.split("\n").filter((l) => l.startsWith("drover_")).sort();
}

/** The value in the forms a leak would take: as is, and base64 (how podman's store keeps it). */
function forms(value: string): string[] {
  return [value, btoa(value)];
}

/** Every place outside podman and the containers where a plaintext must not be. */
async function leaks(
  env: SecureNats,
  texts: string[],
  extra: Record<string, string>,
): Promise<string[]> {
  const found: string[] = [];
  const check = (where: string, text: string) => {
    for (const t of texts.flatMap(forms)) {
      if (text.includes(t)) found.push(`${where} contains ${JSON.stringify(t.slice(0, 6))}…`);
    }
  };
  // Every message of every stream: the KV buckets with their history, the revision store.
  const nc = await env.operator();
  try {
    const jsm = await jetstreamManager(nc);
    for await (const info of jsm.streams.list()) {
      const { first_seq: first, last_seq: last } = info.state;
      for (let seq = first; seq > 0 && seq <= last; seq++) {
        const msg = await jsm.streams.getMessage(info.config.name, { seq }).catch(() => null);
        if (msg !== null) check(`${info.config.name} #${seq} (${msg.subject})`, msg.string());
      }
    }
  } finally {
    await nc.close();
  }
  // Every file of the auth directory and the devices' directories (caches, state, agent logs).
  const walk = async (dir: string): Promise<void> => {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (e.isFile) check(path, new TextDecoder().decode(await Deno.readFile(path)));
    }
  };
  await walk(env.authDir.path);
  for (const [where, text] of Object.entries(extra)) check(where, text);
  return found;
}

Deno.test({
  name:
    "security: sealed secrets reach the container and nowhere else, rotate by canary, survive offline",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using env = await startSecureNats({
      devices: Object.fromEntries(IDS.map((id) => [id, { site: DEVICES[id], fleet: "yes" }])),
    });
    await using outside = await tempDir("drover-secret-input-");
    await using podA = await startPodman();
    await using podC = await startPodman();
    const pods: Record<DeviceId, PodmanService> = { "pi-a": podA, "pi-c": podC };
    await Promise.all(Object.values(pods).map((p) => buildBusyboxImage(p, IMAGE)));

    const cliEnv = {
      NATS_CREDS: env.path("operator.creds"),
      DROVER_AUTH_DIR: env.authDir.path,
    };
    const outputs: Record<string, string> = {};
    const cli = async (...args: string[]) => {
      const out = await runOperatorCli(env.nats.url, args, cliEnv);
      outputs[`operator ${args.join(" ")} #${Object.keys(outputs).length}`] = out.stdout +
        out.stderr;
      return out;
    };
    const ok = async (...args: string[]) => {
      const out = await cli(...args);
      assertEquals(out.code, 0, `${args.join(" ")}: ${out.stdout}${out.stderr}`);
      return out.stdout;
    };

    // Each device's config as `device add` wrote it, completed with what only the test knows.
    const configs: Record<DeviceId, string> = { "pi-a": "", "pi-c": "" };
    const writeConfig = async (id: DeviceId, natsUrl: string) => {
      const config = parse(await Deno.readTextFile(env.path(`${id}.toml`))) as Record<
        string,
        Record<string, unknown>
      >;
      assertEquals(
        config.secrets?.key,
        DEVICE_SEALING_KEY_PATH,
        "device add names the sealing key",
      );
      const deviceDir = env.path(`${id}-device`);
      await Deno.mkdir(deviceDir, { recursive: true, mode: 0o700 });
      // The files where this test keeps them rather than where install.sh puts them on a device.
      config.secrets = { key: env.path(`${id}.xk`) };
      config.nats = { ...config.nats, servers: [natsUrl], creds: env.path(`${id}.creds`) };
      config.agent = { ...config.agent, state_dir: `${deviceDir}/state`, heartbeat_seconds: 1 };
      config.podman = { socket: pods[id].socket };
      configs[id] = `${deviceDir}/agent.toml`;
      await Deno.writeTextFile(configs[id], stringify(config));
    };
    const agents: Partial<Record<DeviceId, AgentProcess>> = {};
    const startAgentOf = (id: DeviceId) => {
      agents[id] = AgentProcess.start({
        configPath: configs[id],
        logPath: env.path(`${id}-device/agent.log`),
      });
    };
    const operator = await startOperatorService(env.nats.url, await freePort(), [
      "--creds",
      env.path("operator.creds"),
      "--dir",
      env.authDir.path,
    ]);
    try {
      for (const id of IDS) {
        await writeConfig(id, env.nats.url);
        startAgentOf(id);
      }

      // 1. Secrets set from a literal and from a file; a deployment that uses them.
      const dbPassword1 = `db-${crypto.randomUUID()}`;
      const apiKey = `api-${crypto.randomUUID()}`;
      const apiKeyFile = `${outside.path}/api-key`;
      await Deno.writeTextFile(apiKeyFile, apiKey);
      assertStringIncludes(
        await ok("secret", "set", "db-password", "--from-literal", dbPassword1),
        'secret "db-password" set (version 1)',
      );
      await ok("secret", "set", "api-key", "--from-file", apiKeyFile);
      await Deno.remove(apiKeyFile);
      const path = `${outside.path}/web.json`;
      await Deno.writeTextFile(path, manifest("listen=80\n"));
      await ok("apply", "-f", path, "--wait", "--timeout", "120s");

      // Positive control: the container got both values and the config, mode 0444.
      const expected = async (db: string, config: string) =>
        `file=${await sha256(db)} env=${await sha256(apiKey)} config=${config} mode=444`;
      for (const id of IDS) {
        await waitFor(
          async () => (await report(pods[id])) === await expected(dbPassword1, "listen=80"),
          {
            timeoutMs: 30_000,
            message: `${id} reports the hashes of the values it was given`,
          },
        );
        // The main process's environment (`podman exec` does not get secret env on 4.3).
        const environ = await pods[id].cli([
          "exec",
          "web_app",
          "sh",
          "-c",
          "tr '\\0' '\\n' </proc/1/environ",
        ]);
        assert(
          environ.stdout.split("\n").includes(`API_KEY=${apiKey}`),
          "the env secret is in the container",
        );
      }
      const listed = JSON.parse(await ok("secret", "list", "-o", "json"));
      assertEquals(
        listed.map((s: { name: string; version: number; used_by: string[] }) => [
          s.name,
          s.version,
          s.used_by,
        ]),
        [["api-key", 1, ["web"]], ["db-password", 1, ["web"]]],
      );

      // 2. Another device's key cannot open this device's value; its own can.
      const nc = await env.operator();
      try {
        const desired = await new Kvm(nc).open(BUCKET_DESIRED_STATE);
        const entry = await desired.get("pi-a.web");
        assertExists(entry);
        const sealed = DesiredState.parse(entry.json()).secrets?.find((s) =>
          s.name === "db-password"
        );
        assertExists(sealed?.sealed);
        assertExists(sealed.sender);
        const keyOf = async (id: DeviceId) =>
          sealingKeyFromSeed(await Deno.readTextFile(env.path(`${id}.xk`)));
        const own = openFrom(await keyOf("pi-a"), sealed.sender, sealed.sealed);
        assertEquals(own && new TextDecoder().decode(own), dbPassword1);
        assertEquals(openFrom(await keyOf("pi-c"), sealed.sender, sealed.sealed), undefined);
      } finally {
        await nc.close();
      }

      // 3. A new version: a new revision, the canary batch first, only `app` replaced.
      const sideBefore = Object.fromEntries(
        await Promise.all(IDS.map(async (id) => [id, await containerId(pods[id], "web_side")])),
      );
      const dbPassword2 = `db-${crypto.randomUUID()}`;
      const set2 = await ok("secret", "set", "db-password", "--from-literal", dbPassword2);
      assertStringIncludes(set2, 'secret "db-password" set (version 2)');
      const set2Revision = Number(/deployment "web" revision (\d+)/.exec(set2)?.[1]);
      assert(set2Revision > 1, set2);
      const changedAt: Partial<Record<DeviceId, number>> = {};
      const want2 = await expected(dbPassword2, "listen=80");
      await waitFor(async () => {
        for (const id of IDS) {
          if (changedAt[id] === undefined && (await report(pods[id])) === want2) {
            changedAt[id] = Date.now();
          }
        }
        return IDS.every((id) => changedAt[id] !== undefined);
      }, { timeoutMs: 90_000, message: "both devices run the new version", intervalMs: 200 });
      assert(
        changedAt["pi-c"]! < changedAt["pi-a"]!,
        `the canary pi-c got it first: ${JSON.stringify(changedAt)}`,
      );
      for (const id of IDS) {
        assertEquals(await containerId(pods[id], "web_side"), sideBefore[id], `${id}: side kept`);
      }
      const history = await ok("history", "web");
      assertStringIncludes(history, "secret db-password v2");
      const rolloutState = async () =>
        JSON.parse((await cli("rollout", "status", "web", "-o", "json")).stdout);
      // Complete once the last batch stayed ready for min_ready: v2 is then the stable revision.
      const rollout = await waitFor(async () => {
        const r = await rolloutState();
        return r.state === "complete" ? r : undefined;
      }, { timeoutMs: 30_000, message: "the rollout of secret db-password v2 completes" });
      assertEquals([rollout.revision, rollout.batches], [set2Revision, 2], JSON.stringify(rollout));

      // 3b. A version the service cannot work with: the canary fails its health check and the
      // rollout rolls it back to v2 (still kept, sealed, in the store); pi-a is never touched.
      const appA = await containerId(pods["pi-a"], "web_app");
      const dbPasswordBad = `bad-${crypto.randomUUID()}`;
      await ok("secret", "set", "db-password", "--from-literal", dbPasswordBad);
      const rolledBack = await waitFor(async () => {
        const r = await rolloutState();
        return r.state === "rolled_back" ? r : undefined;
      }, { timeoutMs: 90_000, message: "the rollout of secret db-password v3 is rolled back" });
      assertEquals(
        [rolledBack.batch, rolledBack.stable_revision, rolledBack.batch_devices],
        [1, set2Revision, ["pi-c"]],
        JSON.stringify(rolledBack),
      );
      await waitFor(async () => (await report(pods["pi-c"])) === want2, {
        timeoutMs: 60_000,
        message: "the canary runs v2 again",
      });
      assertEquals(await containerId(pods["pi-a"], "web_app"), appA, "pi-a kept v2 throughout");
      assertStringIncludes(await ok("history", "web"), "secret db-password v3");
      // A good value again: v4 goes out to both.
      const dbPassword4 = `db-${crypto.randomUUID()}`;
      await ok("secret", "set", "db-password", "--from-literal", dbPassword4);
      const want4 = await expected(dbPassword4, "listen=80");
      for (const id of IDS) {
        await waitFor(async () => (await report(pods[id])) === want4, {
          timeoutMs: 90_000,
          message: `${id} runs v4`,
        });
      }

      // 4. A config change replaces only the container that mounts it.
      const appBefore = await containerId(pods["pi-a"], "web_app");
      await Deno.writeTextFile(path, manifest("listen=8080\n"));
      await ok("apply", "-f", path, "--wait", "--timeout", "120s");
      for (const id of IDS) {
        await waitFor(
          async () => (await report(pods[id])) === await expected(dbPassword4, "listen=8080"),
          { timeoutMs: 30_000, message: `${id} runs the new config` },
        );
        assertEquals(await containerId(pods[id], "web_side"), sideBefore[id], `${id}: side kept`);
      }
      assert(appBefore !== await containerId(pods["pi-a"], "web_app"), "app was replaced");
      // Old versions' podman secrets are gone once nothing mounts them.
      await waitFor(async () => (await podmanSecrets(pods["pi-a"])).length === 3, {
        timeoutMs: 30_000,
        message: "pi-a keeps exactly the three podman secrets its containers mount",
      });
      assert(
        (await podmanSecrets(pods["pi-a"])).some((n) => n.endsWith("secret_db-password_v4")),
        (await podmanSecrets(pods["pi-a"])).join(", "),
      );

      // 5. Offline: the agent restarts without NATS, the container and its podman secret
      // gone (a reinstalled podman); it re-creates both from the sealed cache.
      await agents["pi-a"]!.stop();
      for (const name of ["web_app"]) await pods["pi-a"].cli(["rm", "-f", "-t", "0", name]);
      for (const name of await podmanSecrets(pods["pi-a"])) {
        await pods["pi-a"].cli(["secret", "rm", name]);
      }
      await writeConfig("pi-a", `nats://127.0.0.1:${await freePort()}`);
      startAgentOf("pi-a");
      await waitFor(
        async () => (await report(pods["pi-a"])) === await expected(dbPassword4, "listen=8080"),
        { timeoutMs: 60_000, message: "pi-a re-created web_app offline from its sealed cache" },
      );

      // 6. The plaintexts are nowhere else: buckets, files, logs, CLI output, API.
      const api: Record<string, string> = {};
      for (
        const route of [
          "/api/deployments",
          "/api/deployments/web",
          "/api/devices",
          "/api/devices/pi-c/events",
          "/metrics",
          "/",
        ]
      ) {
        const res = await fetch(`${operator.apiUrl}${route}`);
        api[`GET ${route}`] = await res.text();
        assertEquals(res.status, 200, `${route}: ${api[`GET ${route}`]}`);
      }
      for (
        const args of [
          ["get", "deployments"],
          ["get", "devices", "-o", "json"],
          ["status", "web"],
          ["history", "web"],
          ["events", "pi-c"],
          ["secret", "list"],
        ]
      ) await cli(...args);
      // Positive control: the search does reach the buckets and the caches — the (non-secret)
      // config content is found there — and the API answers were read.
      const extra = { ...outputs, ...api, "operator log": operator.logs() };
      const control = (await leaks(env, ["listen=8080"], extra)).join("\n");
      for (const place of ["KV_desired-state", "KV_deployments", "/state/desired-cache.json"]) {
        assertStringIncludes(control, place);
      }
      assertStringIncludes(api["GET /api/devices"] ?? "", "pi-a");
      const plaintexts = [dbPassword1, dbPassword2, dbPasswordBad, dbPassword4, apiKey];
      assertEquals(await leaks(env, plaintexts, extra), []);

      // 7. A secret in use cannot be deleted; after the deployment, the podman secrets go.
      const refused = await cli("secret", "delete", "db-password");
      assertEquals(refused.code, 1, refused.stdout + refused.stderr);
      assertStringIncludes(refused.stderr, "web");
      await ok("delete", "web");
      await waitFor(async () => (await podmanSecrets(pods["pi-c"])).length === 0, {
        timeoutMs: 30_000,
        message: "pi-c removed its podman secrets with the deployment",
      });
      await ok("secret", "delete", "db-password");
      assertEquals(
        JSON.parse(await ok("secret", "list", "-o", "json")).map((s: { name: string }) => s.name),
        ["api-key"],
      );
    } finally {
      for (const agent of Object.values(agents)) await agent?.[Symbol.asyncDispose]();
      await operator[Symbol.asyncDispose]();
    }
  },
});
