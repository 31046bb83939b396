/**
 * Per-device NATS identities against a real nats-server that includes the
 * fragment written by `operator auth init`, attacked with one device's creds
 * (what a stolen Pi hands an attacker): what they allow (each attack beside
 * its positive control), what they refuse ("Permissions Violation", the
 * connection staying up), replies aimed at Drover's subjects landing nowhere,
 * rollups refused, limits, expiry, and revocation after a server reload.
 */
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import {
  BUCKET_AGENT_STATUS,
  BUCKET_DEPLOYMENTS,
  BUCKET_DESIRED_STATE,
  desiredSnapshotSubject,
  desiredStateGetSubject,
  HEARTBEAT_PREFIX,
  heartbeatSubject,
  statusSubject,
} from "@drover/contracts";
import { DEVICE_MAX_PAYLOAD_BYTES, DEVICE_MAX_SUBSCRIPTIONS } from "../../operator/auth/mod.ts";
import { deviceAdd, deviceRevoke } from "../../operator/auth/mod.ts";
import { decode, parseCreds } from "@nats-io/jwt";
import { tempDir, waitFor } from "../support/mod.ts";
import { runCommand } from "../support/_exec.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import {
  createBuckets,
  type SecureNats,
  startSecureNats,
  startSnapshots,
} from "./_security_env.ts";
import { commandRefusals } from "./_command_refusals.ts";
import { TIMED_OUT, tolerateTransportResets, withinMs } from "@drover/common";

// These tests provoke refused connections on purpose (see tolerateTransportResets).
tolerateTransportResets();

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const PERMISSION_TIMEOUT_MS = 10_000;
const EMPTY = new Uint8Array();

/** Runs `op` expecting a permissions refusal; returns the error message. */
async function refused(what: string, op: () => Promise<unknown>): Promise<string> {
  let result: unknown;
  try {
    result = await withinMs(op(), PERMISSION_TIMEOUT_MS);
  } catch (e) {
    const message = (e as Error).message;
    assertStringIncludes(message, "Permissions Violation", `${what}: ${message}`);
    return message;
  }
  if (result === TIMED_OUT) throw new Error(`${what}: neither allowed nor refused`);
  throw new Error(`${what}: expected a permissions violation, got ${JSON.stringify(result)}`);
}

/** The first message on `subject`, or a refusal. */
async function firstMessage(nc: NatsConnection, subject: string): Promise<string> {
  const sub = nc.subscribe(subject, { max: 1 });
  for await (const m of sub) return m.subject;
  throw new Error(`subscription to ${subject} ended without a message`);
}

async function stillUsable(nc: NatsConnection, what: string): Promise<void> {
  assert(!nc.isClosed(), `connection closed after ${what}`);
  await nc.flush();
}

/** Everything the operator can see of the buckets, to prove that nothing changed. */
async function bucketsState(op: NatsConnection) {
  const jsm = await jetstreamManager(op);
  const out: Record<string, unknown> = {};
  for (const bucket of [BUCKET_DESIRED_STATE, BUCKET_AGENT_STATUS, BUCKET_DEPLOYMENTS]) {
    const info = await jsm.streams.info(`KV_${bucket}`);
    out[bucket] = {
      messages: info.state.messages,
      last: info.state.last_seq,
      consumers: info.state.consumer_count,
    };
  }
  return out;
}

async function setUp(env: SecureNats) {
  const op = await env.operator();
  const { desired, status, deployments } = await createBuckets(op);
  await desired.put("a.web", enc({ for: "a" }));
  await desired.put("b.web", enc({ for: "b", secret: "b's env" }));
  await status.put("b", enc({ device_id: "b", mine: true }));
  const snapshots = await startSnapshots(op);
  return { op, desired, status, deployments, snapshots };
}

Deno.test("security: device creds reach only the device's own subjects; the rest is refused", async () => {
  await using env = await startSecureNats({ devices: { a: { site: "lab" }, b: {} } });
  const { op, desired, status, snapshots } = await setUp(env);
  const dev = await env.device("a");
  try {
    // Allowed: read its own key, see its own changes, write its own status, list its keys.
    const own = await dev.request(desiredStateGetSubject("a", "web"), EMPTY, { timeout: 5_000 });
    assertEquals(JSON.parse(dec(own.data)), { for: "a" });
    const live = firstMessage(dev, "$KV.desired-state.a.*");
    await dev.flush();
    await desired.put("a.web", enc({ for: "a", v: 2 }));
    assertEquals(await live, "$KV.desired-state.a.web");
    const ack = await dev.request(statusSubject("a"), enc({ device_id: "a" }), { timeout: 5_000 });
    assert(JSON.parse(dec(ack.data)).seq > 0, dec(ack.data));
    assertEquals((await status.get("a"))?.json(), { device_id: "a" });
    await waitFor(async () => {
      const r = await dev.request(desiredSnapshotSubject("a"), EMPTY, { timeout: 5_000 });
      return "deployments" in JSON.parse(dec(r.data));
    }, { timeoutMs: 15_000, message: "own snapshot answered" });

    const checks: Array<[string, () => Promise<unknown>]> = [
      ["get B's key", () => dev.request(desiredStateGetSubject("b", "web"), EMPTY)],
      ["watch B's keys", () => firstMessage(dev, "$KV.desired-state.b.*")],
      ["watch all keys", () => firstMessage(dev, "$KV.desired-state.>")],
      ["write B's status", () => dev.request(statusSubject("b"), enc({ device_id: "b" }))],
      ["ask for B's snapshot", () => dev.request(desiredSnapshotSubject("b"), EMPTY)],
      ["write own desired state", () => dev.request("$KV.desired-state.a.web", enc({}))],
      ["write a deployment", () => dev.request("$KV.deployments.evil", enc({}))],
      [
        "read B's status",
        () => dev.request("$JS.API.DIRECT.GET.KV_agent-status.$KV.agent-status.b", EMPTY),
      ],
      ["use the JetStream API", () => dev.request("$JS.API.INFO", EMPTY)],
      ["create a consumer", () => dev.request("$JS.API.CONSUMER.CREATE.KV_desired-state", EMPTY)],
      ["delete a stream", () => dev.request("$JS.API.STREAM.DELETE.KV_desired-state", EMPTY)],
      ["read by sequence", () => dev.request("$JS.API.STREAM.MSG.GET.KV_desired-state", EMPTY)],
      ["create a bucket", () => new Kvm(dev).create("evil")],
      ["subscribe outside its inbox", () => firstMessage(dev, "_INBOX.>")],
      ["subscribe to B's inbox", () => firstMessage(dev, "_INBOX_b.>")],
    ];
    for (const [what, check] of checks) {
      await refused(what, check);
      await stillUsable(dev, what);
    }

    // Nothing was changed by the refused writes.
    assertEquals((await desired.get("b.web"))?.json(), { for: "b", secret: "b's env" });
    assertEquals((await status.get("b"))?.json(), { device_id: "b", mine: true });
    // And the device still does its job on the same connection.
    await dev.request(statusSubject("a"), enc({ device_id: "a", after: "violations" }));
    assertEquals((await status.get("a"))?.json(), { device_id: "a", after: "violations" });
  } finally {
    await dev.close();
    await snapshots[Symbol.asyncDispose]();
    await op.close();
  }
});

Deno.test("security: a device's heartbeat reaches DROVER; another device's, or reading them, is refused", async () => {
  await using env = await startSecureNats({ devices: { a: {}, b: {} } });
  const op = await env.operator();
  const dev = await env.device("a");
  try {
    // DROVER (the operator's account) hears heartbeats through the devices' private export.
    const heard: string[] = [];
    const sub = op.subscribe(`${HEARTBEAT_PREFIX}.*`);
    const listening = (async () => {
      for await (const m of sub) heard.push(m.subject);
    })();
    await op.flush();
    const errors: string[] = [];
    void (async () => {
      for await (const s of dev.status()) {
        if (s.type === "error") errors.push(String((s.error as Error)?.message ?? s.error));
      }
    })();
    dev.publish(heartbeatSubject("b"), enc({ status: "ready", status_revision: 1 }));
    await waitFor(() => errors.some((e) => e.includes("Permissions Violation")), {
      timeoutMs: PERMISSION_TIMEOUT_MS,
      message: "publishing B's heartbeat refused",
    });
    assertStringIncludes(errors.join("\n"), heartbeatSubject("b"));
    // Its own heartbeat, sent after B's on the same connection, is the first DROVER hears:
    // B's never got through.
    dev.publish(heartbeatSubject("a"), enc({ status: "ready", status_revision: 1 }));
    await waitFor(() => heard.length > 0, { timeoutMs: 10_000, message: "own heartbeat heard" });
    assertEquals(heard, [heartbeatSubject("a")]);
    await refused("read heartbeats", () => firstMessage(dev, `${HEARTBEAT_PREFIX}.*`));
    await stillUsable(dev, "heartbeat refusals");
    sub.unsubscribe();
    await listening;
  } finally {
    await dev.close();
    await op.close();
  }
});

Deno.test("security: device commands with real creds — own only, no asking others, no forged answers", async () => {
  await using env = await startSecureNats({ devices: { a: {}, b: {} } });
  const op = await env.operator();
  const a = await env.device("a");
  const b = await env.device("b");
  try {
    await commandRefusals(op, a, b);
  } finally {
    await Promise.all([op.close(), a.close(), b.close()]);
  }
});

Deno.test("security: replies a device aims at Drover's subjects land in its own account and change nothing", async () => {
  await using env = await startSecureNats({ devices: { a: {}, b: {} } });
  const { op, desired, status, deployments, snapshots } = await setUp(env);
  const dev = await env.device("a");
  try {
    // The device's own status holds what it likes, e.g. a manifest; then it
    // reads its own key and its own status put's ack back to Drover's subjects.
    const manifest = { name: "pwn", selector: { labels: {} }, score: { type: "PodmanV0" } };
    await dev.request(statusSubject("a"), enc(manifest));
    await waitFor(async () => {
      const r = await dev.request(desiredSnapshotSubject("a"), EMPTY, { timeout: 5_000 });
      return "deployments" in JSON.parse(dec(r.data));
    }, { timeoutMs: 15_000, message: "snapshot service ready" });
    const before = await bucketsState(op);
    const aim = (request: string, body: Uint8Array, reply: string) =>
      dev.publish(request, body, { reply });
    const targets = [
      "$KV.deployments.pwn",
      "$KV.desired-state.b.evil",
      "$KV.desired-state.b.web",
      "$KV.agent-status.b",
      "$JS.API.STREAM.PURGE.KV_desired-state",
      "$JS.API.STREAM.DELETE.KV_deployments",
      "$JS.API.CONSUMER.CREATE.KV_desired-state",
      "$JS.API.CONSUMER.DURABLE.CREATE.KV_desired-state.evil",
      "$JS.API.DIRECT.GET.KV_desired-state.$KV.desired-state.b.web",
    ];
    for (const target of targets) {
      aim(desiredStateGetSubject("a", "web"), EMPTY, target);
      aim(statusSubject("a"), enc(manifest), target);
      aim(desiredSnapshotSubject("a"), EMPTY, target);
    }
    await dev.flush();
    // The same requests with the device's own inbox are answered: the server
    // did process every one of them.
    const answered = await dev.request(desiredStateGetSubject("a", "web"), EMPTY);
    assertEquals(JSON.parse(dec(answered.data)), { for: "a" });
    await op.flush();

    const after = await bucketsState(op);
    // Only a's own status puts were stored (one per aimed put).
    const statusBefore = before[BUCKET_AGENT_STATUS] as { last: number };
    assertEquals(after[BUCKET_DESIRED_STATE], before[BUCKET_DESIRED_STATE]);
    assertEquals(after[BUCKET_DEPLOYMENTS], before[BUCKET_DEPLOYMENTS]);
    assertEquals(
      (after[BUCKET_AGENT_STATUS] as { last: number }).last,
      statusBefore.last + targets.length,
    );
    assertEquals(await deployments.get("pwn"), null);
    assertEquals(await desired.get("b.evil"), null);
    assertEquals((await desired.get("b.web"))?.json(), { for: "b", secret: "b's env" });
    assertEquals((await status.get("b"))?.json(), { device_id: "b", mine: true });
  } finally {
    await dev.close();
    await snapshots[Symbol.asyncDispose]();
    await op.close();
  }
});

Deno.test("security: a rollup header on a device's status is refused; other statuses stay", async () => {
  await using env = await startSecureNats({ devices: { a: {}, b: {} } });
  const { op, status, snapshots } = await setUp(env);
  const dev = await env.device("a");
  try {
    const rollup = headers();
    rollup.set("Nats-Rollup", "all");
    const ack = await dev.request(statusSubject("a"), enc({ device_id: "a" }), {
      headers: rollup,
      timeout: 5_000,
    });
    assertStringIncludes(dec(ack.data), "rollup not permitted");
    assertEquals((await status.get("b"))?.json(), { device_id: "b", mine: true });
    // Positive control: the plain put is stored.
    await dev.request(statusSubject("a"), enc({ device_id: "a" }), { timeout: 5_000 });
    assertEquals((await status.get("a"))?.json(), { device_id: "a" });
  } finally {
    await dev.close();
    await snapshots[Symbol.asyncDispose]();
    await op.close();
  }
});

Deno.test("security: device limits: no consumers at all, few subscriptions, bounded payload", async () => {
  await using env = await startSecureNats({ devices: { a: {} } });
  const { op, snapshots } = await setUp(env);
  const dev = await env.device("a");
  try {
    const jsm = await jetstreamManager(op);
    const consumersBefore = (await jsm.streams.info("KV_desired-state")).state.consumer_count;
    for (let i = 0; i < 20; i++) {
      await refused(
        `durable consumer ${i}`,
        () => dev.request(`$JS.API.CONSUMER.DURABLE.CREATE.KV_desired-state.evil${i}`, EMPTY),
      );
    }
    assertEquals(
      (await jsm.streams.info("KV_desired-state")).state.consumer_count,
      consumersBefore,
    );

    // Subscriptions beyond the per-device limit are refused by the server.
    const subs = Array.from(
      { length: DEVICE_MAX_SUBSCRIPTIONS + 2 },
      (_, i) => dev.subscribe(`_INBOX_a.extra.${i}`),
    );
    const errors: string[] = [];
    (async () => {
      for await (const s of dev.status()) if (s.type === "error") errors.push(String(s.error));
    })();
    await dev.flush();
    await waitFor(() => errors.some((e) => /maximum subscriptions/i.test(e)), {
      timeoutMs: 10_000,
      message: `subscription limit enforced (errors: ${errors.join("; ")})`,
    });
    for (const s of subs) s.unsubscribe();
  } finally {
    await dev.close().catch(() => {});
  }

  // A status larger than the device payload limit is refused (the server
  // tells the client its limit, and the client refuses to send).
  const big = await env.device("a");
  try {
    assertEquals(big.info?.max_payload, DEVICE_MAX_PAYLOAD_BYTES);
    let error: Error | undefined;
    try {
      big.publish(statusSubject("a"), new Uint8Array(DEVICE_MAX_PAYLOAD_BYTES + 1));
    } catch (e) {
      error = e as Error;
    }
    assert(error !== undefined, "an oversized status was sent");
    // Positive control: a normal status fits.
    await big.request(statusSubject("a"), enc({ device_id: "a" }), { timeout: 5_000 });
  } finally {
    await big.close().catch(() => {});
    await snapshots[Symbol.asyncDispose]();
    await op.close();
  }
});

Deno.test("security: a device without the right inbox prefix cannot even get replies", async () => {
  await using env = await startSecureNats({ devices: { a: {} } });
  const dev = await env.device("a", undefined, { inboxPrefix: "_INBOX" });
  try {
    await refused("subscribe to the shared _INBOX", () => firstMessage(dev, "_INBOX.>"));
    await stillUsable(dev, "inbox violation");
  } finally {
    await dev.close();
  }
});

Deno.test("security: connecting without creds, or with creds of another operator, is refused", async () => {
  await using env = await startSecureNats({ devices: { a: {} } });
  await using other = await startSecureNats({ devices: { a: {} } });
  const { connect, credsAuthenticator } = await import("@nats-io/transport-node");
  let error: Error | undefined;
  try {
    await (await connect({ servers: env.nats.url, maxReconnectAttempts: 0 })).close();
  } catch (e) {
    error = e as Error;
  }
  assert(error !== undefined, "a connection without creds was accepted");
  assertStringIncludes(error.message.toLowerCase(), "authorization");

  error = undefined;
  try {
    await (await connect({
      servers: env.nats.url,
      maxReconnectAttempts: 0,
      authenticator: credsAuthenticator(await Deno.readFile(other.path("a.creds"))),
    })).close();
  } catch (e) {
    error = e as Error;
  }
  assert(error !== undefined, "creds signed by another operator's account were accepted");
  assertStringIncludes(error.message.toLowerCase(), "authorization");
});

Deno.test("security: expiring device creds connect until they expire, then are refused", async () => {
  await using env = await startSecureNats();
  await deviceAdd(env.authDir.path, "short", { expiresAt: new Date(Date.now() + 3_000) });
  const creds = await Deno.readFile(env.path("short.creds"));
  const nc = await env.device("short", creds, { maxReconnectAttempts: 0 });
  await nc.flush();
  // The server closes the connection when the JWT expires, and refuses a new one.
  await waitFor(() => nc.isClosed(), { timeoutMs: 15_000, message: "expired connection closed" });
  // The server compares whole seconds: within the second of expiry a connect may still pass.
  const error = await waitFor(async () => {
    try {
      await (await env.device("short", creds, { maxReconnectAttempts: 0 })).close();
      return undefined;
    } catch (e) {
      return e as Error;
    }
  }, { timeoutMs: 10_000, message: "expired creds refused" });
  // nats-server says "expired" or, on some connects, only "Authorization Violation".
  assert(/expired|authorization/i.test(error.message), error.message);
});

Deno.test("security: a revoked device is disconnected and refused after a server reload", async () => {
  await using env = await startSecureNats({ devices: { a: {}, b: {} } });
  const op = await env.operator({ maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const { status } = await createBuckets(op);
  const bCreds = await Deno.readFile(env.path("b.creds"));
  const b = await env.device("b", bCreds, { maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const a = await env.device("a", undefined, { maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  try {
    await b.request(statusSubject("b"), enc({ device_id: "b" }));

    const result = await deviceRevoke(env.authDir.path, "b");
    assert(result.changed);
    // Before the reload the server still knows the old account JWT.
    await b.request(statusSubject("b"), enc({ device_id: "b", before: "reload" }));

    await env.reload();
    // The open connection is closed by the server and cannot come back.
    // Dropped: a flush fails, or never completes because the client keeps trying to reconnect.
    await waitFor(async () => {
      try {
        return await withinMs(b.flush(), 1_000) === TIMED_OUT;
      } catch {
        return true;
      }
    }, { timeoutMs: 15_000, message: "revoked device's connection dropped" });

    let error: Error | undefined;
    try {
      await (await env.device("b", bCreds, { maxReconnectAttempts: 0 })).close();
    } catch (e) {
      error = e as Error;
    }
    assert(error !== undefined, "the revoked device could connect again");
    assertStringIncludes(error.message.toLowerCase(), "authorization");

    // Device a keeps working: the reload makes every client of the account
    // reconnect (nats-server 2.9 re-registers reloaded accounts), a is let back in.
    await waitFor(async () => {
      try {
        await a.request(statusSubject("a"), enc({ device_id: "a" }), { timeout: 2_000 });
        return true;
      } catch {
        return false;
      }
    }, { timeoutMs: 20_000, message: "device a writes its status after the reload" });
    assertEquals((await status.get("a"))?.json(), { device_id: "a" });
    assertEquals((await status.get("b"))?.json(), { device_id: "b", before: "reload" });
  } finally {
    await b.close().catch(() => {});
    await a.close();
    await op.close();
  }
});

const OPERATOR_MAIN = new URL("../../operator/main.ts", import.meta.url).pathname;
const operatorCli = (args: string[]) =>
  runCommand(Deno.execPath(), ["run", "-A", OPERATOR_MAIN, ...args]);

Deno.test("security CLI: auth init sizes the accounts; device add --expires issues expiring creds", async () => {
  await using dir = await tempDir("drover-auth-cli-");
  const init = await operatorCli([
    "auth",
    "init",
    "--dir",
    dir.path,
    "--max-devices",
    "5",
    "--max-storage",
    "1GiB",
  ]);
  assertEquals(init.code, 0, init.stderr);
  const conf = await Deno.readTextFile(`${dir.path}/nats-auth.conf`);
  const limits = [...conf.matchAll(/^ {2}A[A-Z0-9]+: "([^"]+)"$/gm)]
    .flatMap(([, jwt]) => jwt === undefined ? [] : [jwt])
    .map((jwt) => decode<{ limits?: Record<string, unknown> }>(jwt).nats.limits);
  // 5 devices and the pool's least headroom (16) for the connection guard's closes in flight.
  assert(limits.some((l) => l?.conn === 5 + 16), `devices' account limited to 21: ${conf}`);
  assert(limits.some((l) => l?.disk_storage === 1024 ** 3), "storage limited to 1 GiB");
  const bad = await operatorCli(["auth", "init", "--dir", `${dir.path}/x`, "--max-devices", "0"]);
  assertEquals(bad.code, 2, bad.stderr);
  assertStringIncludes(bad.stderr, "--max-devices");

  await using env = await startSecureNats();
  const add = await operatorCli([
    "device",
    "add",
    "pi-9",
    "--expires",
    "12h",
    "--dir",
    env.authDir.path,
    "--nats",
    env.nats.url,
  ]);
  assertEquals(add.code, 0, add.stderr);
  assertStringIncludes(add.stdout, "expires:");
  const creds = await parseCreds(await Deno.readFile(env.path("pi-9.creds")));
  const inHours = ((creds.uc.exp ?? 0) - Date.now() / 1000) / 3600;
  assert(inHours > 11.9 && inHours <= 12, `expires in 12 h, not ${inHours}`);
  const list = await operatorCli(["device", "list", "--dir", env.authDir.path, "-o", "json"]);
  assertEquals(list.code, 0, list.stderr);
  assert(JSON.parse(list.stdout)[0].expiresAt, list.stdout);
  const soon = await operatorCli([
    "device",
    "add",
    "pi-8",
    "--expires",
    "soon",
    "--dir",
    env.authDir.path,
    "--nats",
    env.nats.url,
  ]);
  assertEquals(soon.code, 2, soon.stderr);
  assertStringIncludes(soon.stderr, "Invalid duration");
});
