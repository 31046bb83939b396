/**
 * The real agent under a per-device identity made by the real CLI
 * (`operator device add`), against a nats-server that trusts the auth
 * directory: it reconciles as usual without a single permission violation,
 * ignores nothing it should see and sees nothing it should not; once revoked
 * it is cut off but stays up and leaves its workloads running. Then the same
 * over mutual TLS, with the operator CLI connecting through TLS as well.
 */
import { parse, stringify } from "smol-toml";
import { Kvm } from "@nats-io/kv";
import { AgentStatus, BUCKET_AGENT_STATUS } from "@drover/contracts";
import { deviceRevoke } from "../../operator/auth/mod.ts";
import { buildBusyboxImage, freePort, startPodman, waitFor } from "../support/mod.ts";
import { runCommand } from "../support/_exec.ts";
import { assert, assertEquals, assertExists, assertStringIncludes } from "../support/assert.ts";
import { createTestPki, natsTlsBlock } from "../support/tls.ts";
import { AgentProcess } from "../support/agent_process.ts";
import { tolerateTransportResets } from "@drover/common";
import { TEST_IMAGE, waitForPage, webDeployment } from "./_agent_harness.ts";
import {
  createBuckets,
  type SecureNats,
  startSecureNats,
  startSnapshots,
} from "./_security_env.ts";

// These tests provoke refused connections on purpose (see tolerateTransportResets).
tolerateTransportResets();

const OPERATOR_MAIN = new URL("../../operator/main.ts", import.meta.url).pathname;
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

/** Runs the operator CLI; returns exit code and output. */
function operatorCli(args: string[]) {
  return runCommand(Deno.execPath(), ["run", "-A", OPERATOR_MAIN, ...args]);
}

/**
 * Provisions `id` with the real CLI and completes the generated config with
 * what only the test knows (podman socket, state dir, a short heartbeat, and
 * the client certificate for mutual TLS).
 */
async function provisionAgent(
  env: SecureNats,
  id: string,
  podmanSocket: string,
  tls?: { ca: string; cert: string; key: string },
): Promise<string> {
  const add = await operatorCli([
    "device",
    "add",
    id,
    "--label",
    "site=lab",
    "--server",
    env.nats.url,
    // add registers the labels in the device registry: it connects (with DIR/operator.creds).
    "--nats",
    env.nats.url,
    ...(tls ? ["--tls-ca", tls.ca, "--tls-cert", tls.cert, "--tls-key", tls.key] : []),
    "--dir",
    env.authDir.path,
  ]);
  assertEquals(add.code, 0, add.stderr);
  const configPath = env.path(`${id}.toml`);
  const config = parse(await Deno.readTextFile(configPath)) as Record<
    string,
    Record<string, unknown>
  >;
  // The tables are the same objects as in `config`: changing them changes what is written back.
  const { agent, nats } = config;
  assertExists(agent, `${configPath} has an [agent] table`);
  assertExists(nats, `${configPath} has a [nats] table`);
  assertEquals(agent.device_id, id);
  assertEquals(nats.creds, "/etc/drover/nats.creds");
  if (tls) assertEquals(nats.tls_ca, tls.ca);
  // What the device keeps: its own copy of the creds (revoking removes the
  // operator's copy, a stolen device still has this one).
  const deviceDir = env.path(`${id}-device`);
  await Deno.mkdir(deviceDir, { mode: 0o700 });
  nats.creds = `${deviceDir}/${id}.creds`;
  await Deno.copyFile(env.path(`${id}.creds`), nats.creds as string);
  // And its sealing key, where the config names it on this test's "device".
  assertEquals(config.secrets?.key, "/etc/drover/sealing.xk");
  config.secrets = { key: `${deviceDir}/${id}.xk` };
  await Deno.copyFile(env.path(`${id}.xk`), `${deviceDir}/${id}.xk`);
  agent.state_dir = `${deviceDir}/state`;
  agent.heartbeat_seconds = 1;
  config.podman = { socket: podmanSocket };
  if (tls) Object.assign(nats, { tls_cert: tls.cert, tls_key: tls.key });
  await Deno.writeTextFile(configPath, stringify(config));
  return configPath;
}

async function statusOf(env: SecureNats, id: string): Promise<AgentStatus | undefined> {
  const nc = await env.operator();
  try {
    const entry = await (await new Kvm(nc).open(BUCKET_AGENT_STATUS)).get(id);
    return entry?.operation === "PUT" ? AgentStatus.parse(entry.json()) : undefined;
  } finally {
    await nc.close();
  }
}

Deno.test("security: the agent reconciles with `device add` creds, never trips a permission, survives revocation", async () => {
  await using env = await startSecureNats();
  await using podman = await startPodman();
  await buildBusyboxImage(podman, TEST_IMAGE);
  const op = await env.operator({ maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  let agent: AgentProcess | undefined;
  try {
    const { desired } = await createBuckets(op);
    await using _snapshots = await startSnapshots(op);
    // Provisioned after the server started: adding a device needs no server change.
    const configPath = await provisionAgent(env, "pi-1", podman.socket);
    agent = AgentProcess.start({ configPath, logPath: env.path("agent.log") });

    const port = await freePort();
    const otherPort = await freePort();
    const rev = await desired.put("pi-1.web", enc(webDeployment("web", port, "hello secure")));
    // Another device's desired state: pi-1 can neither see nor run it.
    await desired.put("pi-2.web", enc(webDeployment("web", otherPort, "not for pi-1")));
    await waitForPage(port, "hello secure");
    const status = await waitFor(async () => {
      const s = await statusOf(env, "pi-1");
      return s?.deployments.web?.phase === "running" && s.deployments.web.revision === rev
        ? s
        : undefined;
    }, { timeoutMs: 60_000, message: "pi-1 reports web running" });
    assertEquals(status.labels, { site: "lab" });
    assertEquals(Object.keys(status.deployments), ["web"]);
    const names = await podman.cli(["ps", "-a", "--format", "{{.Names}}"]);
    assertEquals(names.stdout.trim().split("\n"), ["web_web"]);

    // Delete goes through too.
    await desired.delete("pi-1.web");
    await waitFor(async () => (await podman.cli(["ps", "-aq"])).stdout.trim() === "", {
      timeoutMs: 30_000,
      message: "web removed after delete",
    });
    const logs = await agent.logs();
    assert(!logs.includes("Permissions Violation"), `the agent tripped a permission:\n${logs}`);
    assert(!logs.includes("Permission"), `the agent logged a permission problem:\n${logs}`);

    // Revocation: after the reload the agent is cut off, but stays up and
    // keeps its workloads (it cannot know whether NATS will come back).
    const rev2 = await desired.put("pi-1.web", enc(webDeployment("web", port, "still here")));
    await waitFor(async () => (await statusOf(env, "pi-1"))?.deployments.web?.revision === rev2, {
      timeoutMs: 60_000,
      message: "web redeployed before revocation",
    });
    await waitForPage(port, "still here");
    const before = (await podman.cli(["ps", "-q", "--no-trunc"])).stdout.trim();
    await deviceRevoke(env.authDir.path, "pi-1");
    await env.reload();
    const refusals = async () => (await agent!.logs()).split(/revoked|authorization/i).length - 1;
    await waitFor(async () => await refusals() > 0, {
      timeoutMs: 30_000,
      message: "the agent sees its authorization refused",
    });
    // A few more refused reconnect attempts, then it must still be running.
    const seen = await refusals();
    await waitFor(async () => await refusals() >= seen + 2 || !agent!.running, {
      timeoutMs: 60_000,
      message: "the agent keeps retrying while revoked",
    });
    assert(agent.running, `the revoked agent exited:\n${await agent.logTail()}`);
    assertEquals((await podman.cli(["ps", "-q", "--no-trunc"])).stdout.trim(), before);
    await waitForPage(port, "still here");
  } catch (e) {
    const tail = await agent?.logTail() ?? "";
    throw new Error(`${(e as Error).message}\nagent log tail:\n${tail}`, { cause: e });
  } finally {
    await agent?.[Symbol.asyncDispose]();
    await op.close();
  }
});

Deno.test("security: agent and operator CLI over mutual TLS; no CA, a wrong CA or no client cert fails", async () => {
  await using pki = await createTestPki();
  await using env = await startSecureNats({ extraConfig: natsTlsBlock(pki, { verify: true }) });
  await using podman = await startPodman();
  await buildBusyboxImage(podman, TEST_IMAGE);
  const tlsOptions = { caFile: pki.caCert, certFile: pki.clientCert, keyFile: pki.clientKey };
  const op = await env.operator({ tls: tlsOptions, maxReconnectAttempts: -1 });
  let agent: AgentProcess | undefined;
  try {
    const { desired } = await createBuckets(op);
    await using _snapshots = await startSnapshots(op);
    const configPath = await provisionAgent(env, "pi-1", podman.socket, {
      ca: pki.caCert,
      cert: pki.clientCert,
      key: pki.clientKey,
    });
    agent = AgentProcess.start({ configPath, logPath: env.path("agent.log") });
    const port = await freePort();
    await desired.put("pi-1.web", enc(webDeployment("web", port, "hello tls")));
    await waitForPage(port, "hello tls");

    const conn = ["--nats", env.nats.url, "--creds", env.path("operator.creds")];
    const tlsArgs = [
      "--tls-ca",
      pki.caCert,
      "--tls-cert",
      pki.clientCert,
      "--tls-key",
      pki.clientKey,
    ];
    const ok = await operatorCli(["get", "devices", "-o", "json", ...conn, ...tlsArgs]);
    assertEquals(ok.code, 0, ok.stderr);
    const devices = JSON.parse(ok.stdout) as Array<{ id?: string; device_id?: string }>;
    assert(JSON.stringify(devices).includes("pi-1"), `pi-1 listed: ${ok.stdout}`);

    // Without the CA the server's certificate is not trusted.
    const noCa = await operatorCli(["get", "devices", ...conn]);
    assertEquals(noCa.code, 1, noCa.stderr);
    assertStringIncludes(noCa.stderr, "Cannot connect to NATS");
    // A CA that did not sign the server certificate is no better.
    const wrongCa = await operatorCli([
      "get",
      "devices",
      ...conn,
      "--tls-ca",
      pki.otherCaCert,
      "--tls-cert",
      pki.clientCert,
      "--tls-key",
      pki.clientKey,
    ]);
    assertEquals(wrongCa.code, 1, wrongCa.stderr);
    // With verify on, the server wants a client certificate.
    const noClientCert = await operatorCli(["get", "devices", ...conn, "--tls-ca", pki.caCert]);
    assertEquals(noClientCert.code, 1, noClientCert.stderr);

    // The agent's connection really is TLS (the server lists it with a TLS version).
    const connz = await (await fetch(`${env.nats.monitorUrl}/connz`)).json() as {
      connections: Array<{ name?: string; tls_version?: string }>;
    };
    const agentConn = connz.connections.find((c) => c.name === "drover-agent-pi-1");
    assert(agentConn?.tls_version, `agent connection over TLS: ${JSON.stringify(connz)}`);
  } finally {
    await agent?.kill();
    await op.close();
  }
});
