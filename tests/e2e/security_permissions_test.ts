/**
 * Per-device NATS identities against a real nats-server that includes the
 * fragment written by `operator auth init`: what device A's creds allow, what
 * they refuse (with "Permissions Violation", the connection staying up), and
 * that a revoked device is cut off after a server reload.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { deviceRevoke } from "../../operator/auth/mod.ts";
import { waitFor } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import {
  createBuckets,
  openAsDevice,
  startSecureNats,
  tolerateAuthFailureResets,
} from "./_security_env.ts";

tolerateAuthFailureResets();

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const PERMISSION_TIMEOUT_MS = 10_000;

/** Runs `op` expecting a permissions refusal; returns the error message. */
async function refused(what: string, op: () => Promise<unknown>): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const result = await Promise.race([
      op(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: neither allowed nor refused`)),
          PERMISSION_TIMEOUT_MS,
        );
      }),
    ]);
    throw new Error(`${what}: expected a permissions violation, got ${JSON.stringify(result)}`);
  } catch (e) {
    const message = (e as Error).message;
    if (message.startsWith(`${what}:`)) throw e;
    assertStringIncludes(message, "Permissions Violation", `${what}: ${message}`);
    return message;
  } finally {
    clearTimeout(timer);
  }
}

/** The first entry of a watch, or a refusal. */
async function firstWatched(kv: Awaited<ReturnType<typeof openAsDevice>>["desired"], key: string) {
  const watch = await kv.watch({ key });
  for await (const entry of watch) {
    watch.stop();
    return entry.key;
  }
  return undefined;
}

async function stillUsable(nc: NatsConnection, what: string): Promise<void> {
  assert(!nc.isClosed(), `connection closed after ${what}`);
  await nc.flush();
}

Deno.test("security: device creds reach only the device's own keys; the rest is refused", async () => {
  await using env = await startSecureNats({ devices: { a: { site: "lab" }, b: {} } });
  const op = await env.operator();
  const dev = await env.device("a");
  try {
    const { desired } = await createBuckets(op);
    await desired.put("a.web", enc({ for: "a" }));
    await desired.put("b.web", enc({ for: "b", secret: "b's env" }));

    const a = await openAsDevice(dev);
    // Allowed: read and watch its own keys, write and read its own status.
    assertEquals((await a.desired.get("a.web"))?.json(), { for: "a" });
    assertEquals(await firstWatched(a.desired, "a.>"), "a.web");
    await a.status.put("a", enc({ device_id: "a" }));
    assertEquals((await a.status.get("a"))?.json(), { device_id: "a" });

    // Refused, and the connection stays up after each.
    const checks: Array<[string, () => Promise<unknown>]> = [
      ["get B's key", () => a.desired.get("b.web")],
      ["watch B's keys", () => firstWatched(a.desired, "b.>")],
      ["watch all keys", () => firstWatched(a.desired, ">")],
      ["write B's status", () => a.status.put("b", enc({ device_id: "b" }))],
      ["read B's status", () => a.status.get("b")],
      ["write own desired state", () => a.desired.put("a.web", enc({ evil: true }))],
      ["write B's desired state", () => a.desired.put("b.web", enc({ evil: true }))],
      ["delete own desired state", () => a.desired.delete("a.web")],
      ["create a bucket", () => new Kvm(dev).create("evil")],
      ["delete a bucket", async () => {
        const jsm = await jetstreamManager(dev, { checkAPI: false });
        return await jsm.streams.delete("KV_desired-state");
      }],
      ["read via STREAM.MSG.GET", async () => {
        const jsm = await jetstreamManager(dev, { checkAPI: false });
        return await jsm.streams.getMessage("KV_desired-state", { seq: 2 });
      }],
      ["list streams", async () => {
        const jsm = await jetstreamManager(dev, { checkAPI: false });
        return await jsm.streams.names().next();
      }],
      ["subscribe outside its inbox", async () => {
        const sub = dev.subscribe("$KV.desired-state.>");
        for await (const m of sub) return m.subject;
      }],
    ];
    for (const [what, op] of checks) {
      await refused(what, op);
      await stillUsable(dev, what);
    }

    // Nothing was changed by the refused writes.
    assertEquals((await desired.get("b.web"))?.json(), { for: "b", secret: "b's env" });
    assertEquals((await desired.get("a.web"))?.json(), { for: "a" });
    assertEquals(await new Kvm(op).open("agent-status").then((kv) => kv.get("b")), null);
    // And the device still does its job on the same connection.
    await a.status.put("a", enc({ device_id: "a", after: "violations" }));
    assertEquals((await a.status.get("a"))?.json(), { device_id: "a", after: "violations" });
  } finally {
    await dev.close();
    await op.close();
  }
});

Deno.test("security: a device without the right inbox prefix cannot even get replies", async () => {
  await using env = await startSecureNats({ devices: { a: {} } });
  const op = await env.operator();
  const dev = await env.device("a", undefined, { inboxPrefix: "_INBOX" });
  try {
    await createBuckets(op);
    await refused("subscribe to the shared _INBOX", async () => {
      const sub = dev.subscribe("_INBOX.>");
      for await (const m of sub) return m.subject;
    });
    await stillUsable(dev, "inbox violation");
  } finally {
    await dev.close();
    await op.close();
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

Deno.test("security: a revoked device is disconnected and refused after a server reload", async () => {
  await using env = await startSecureNats({ devices: { a: {}, b: {} } });
  const op = await env.operator({ maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  await createBuckets(op);
  const bCreds = await Deno.readFile(env.path("b.creds"));
  const b = await env.device("b", bCreds, { maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const a = await env.device("a", undefined, { maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  try {
    const bStatus = (await openAsDevice(b)).status;
    await bStatus.put("b", enc({ device_id: "b" }));

    const result = await deviceRevoke(env.authDir.path, "b");
    assert(result.changed);
    // Before the reload the server still knows the old account JWT.
    await bStatus.put("b", enc({ device_id: "b", before: "reload" }));

    await env.reload();
    // The open connection is closed by the server and cannot come back.
    await waitFor(async () => {
      try {
        await b.flush();
        return false;
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
    const aStatus = (await openAsDevice(a)).status;
    await waitFor(async () => {
      try {
        await aStatus.put("a", enc({ device_id: "a" }));
        return true;
      } catch {
        return false;
      }
    }, { timeoutMs: 20_000, message: "device a writes its status after the reload" });
    const opStatus = await new Kvm(op).open("agent-status");
    assertEquals((await opStatus.get("a"))?.json(), { device_id: "a" });
    assertEquals((await opStatus.get("b"))?.json(), { device_id: "b", before: "reload" });
  } finally {
    await b.close().catch(() => {});
    await a.close();
    await op.close();
  }
});
