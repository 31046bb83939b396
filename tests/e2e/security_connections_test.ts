/**
 * A stolen device opens as many NATS connections as its creds allow, against
 * a real nats-server with the generated JWT config, creds from `device add`
 * and a real `operator serve` given the system account's creds (its connection
 * guard, operator/fleet/connection_guard.ts). The devices' account pool is
 * small here (`--max-devices 4`: 4 + 16 headroom = 20 connections).
 *
 * - nats-server 2.10+ (the server matrix's second pass): 50 connections at
 *   once, re-opened whenever closed, cannot keep another device out: the
 *   victim connects and stays connected, and once the attack stops re-opening
 *   the attacker holds at most the limit (CONNZ of the server's monitor).
 *   Positive control: the same attack against `serve` without system creds
 *   locks the victim out with the account-connections error. Connections open
 *   before `serve` started are found by its CONNZ read; on a 2-node cluster
 *   the limit holds over both nodes.
 * - nats-server 2.9 (no KICK): the guard reports the device (/metrics, a log
 *   line naming `operator device revoke`) and closes nothing.
 *
 * Timings are printed, not asserted tightly (the machines are shared).
 */
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from "@nats-io/transport-node";
import { CONNECTION_GUARD_INBOX_PREFIX } from "@drover/contracts";
import { authInit, deviceAdd, deviceInboxPrefix } from "../../operator/auth/mod.ts";
import { parseStartUs } from "../../operator/fleet/connection_guard.ts";
import { readAuthState } from "../../operator/auth/store.ts";
import { includeAbsolute, type SecureNats, startSecureNats } from "./_security_env.ts";
import {
  type OperatorService,
  runOperatorCli,
  startOperatorService,
} from "../support/operator_process.ts";
import { freePort } from "../support/ports.ts";
import { type ProcSample, sampleProcess } from "../../bench/machine.ts";
import { natsServerCommand, startNatsCluster, tempDir, waitFor } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";

const VICTIM = "cn-victim";
const ATTACKER = "cn-thief";
const LIMIT = 2;
/** Connections the attacker keeps trying to hold at once. */
const SLOTS = 50;
const ATTACK_MS = 8_000;

/** Whether the nats-server under test answers KICK (2.10+): the two passes test different things. */
async function serverKicks(): Promise<boolean> {
  const out = await new Deno.Command(natsServerCommand(), { args: ["--version"] }).output();
  const m = /v(\d+)\.(\d+)/.exec(new TextDecoder().decode(out.stdout));
  return m !== null && (Number(m[1]) > 2 || (Number(m[1]) === 2 && Number(m[2]) >= 10));
}
const KICKS = await serverKicks();

/** A plain device connection with `id`'s creds, as the agent makes it; never reconnects. */
async function deviceConnection(
  env: SecureNats,
  id: string,
  extra: Partial<NodeConnectionOptions> = {},
): Promise<NatsConnection> {
  return await connect({
    servers: env.nats.url,
    inboxPrefix: deviceInboxPrefix(id),
    authenticator: credsAuthenticator(await Deno.readFile(env.path(`${id}.creds`))),
    reconnect: false,
    timeout: 5_000,
    ...extra,
  });
}

/** The attacker's connections per user key now, from the server's own CONNZ. */
async function connectionsOf(env: SecureNats, user: string): Promise<number> {
  const account = (await readAuthState(env.authDir.path)).devices_account_public_key;
  const res = await fetch(`${env.nats.monitorUrl}/connz?acc=${account}&auth=true&limit=10000`);
  const connz = await res.json() as { connections: { authorized_user?: string }[] | null };
  return (connz.connections ?? []).filter((c) => c.authorized_user === user).length;
}

async function userKey(env: SecureNats, id: string): Promise<string> {
  const registry = JSON.parse(await Deno.readTextFile(env.path("devices.json")));
  return registry.devices[id].user_public_key;
}

/**
 * `SLOTS` loops, each opening a connection as the attacker, waiting until it is closed and
 * opening the next, until `stop` is called; open connections stay open until `close`.
 */
function attack(env: SecureNats) {
  let reopening = true;
  const open = new Set<NatsConnection>();
  const closedAfterMs: number[] = [];
  let opened = 0;
  let refused = 0;
  const slot = async () => {
    while (reopening) {
      let nc: NatsConnection;
      try {
        nc = await deviceConnection(env, ATTACKER);
      } catch {
        refused++;
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      if (!reopening) {
        await nc.close();
        return;
      }
      const at = performance.now();
      opened++;
      open.add(nc);
      await nc.closed();
      open.delete(nc);
      // Closed by the server while we held it: the guard's doing.
      if (reopening) closedAfterMs.push(performance.now() - at);
    }
  };
  const slots = Array.from({ length: SLOTS }, slot);
  return {
    stats: () => ({ opened, refused, closedAfterMs }),
    /** Stops re-opening; what is open stays open. */
    stop: () => {
      reopening = false;
    },
    async [Symbol.asyncDispose]() {
      reopening = false;
      await Promise.all([...open].map((nc) => nc.close()));
      await Promise.all(slots);
    },
  };
}

/** The victim's connection attempts from now until one succeeds or `withinMs` passes. */
async function victimConnects(env: SecureNats, withinMs: number) {
  const started = performance.now();
  // Every refusal's text: the server's "maximum account active connections" may reach the
  // client as a reset instead, when the server closes the socket before the client reads it.
  const errors = new Set<string>();
  let attempts = 0;
  while (performance.now() - started < withinMs) {
    attempts++;
    try {
      const nc = await deviceConnection(env, VICTIM);
      return { nc, ms: Math.round(performance.now() - started), attempts, errors };
    } catch (e) {
      errors.add((e as Error).message);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { nc: undefined, ms: Math.round(performance.now() - started), attempts, errors };
}

/**
 * How long each of the attacker's connections the guard closed was open, server-side: from its
 * connect event (sent once the server admitted it) to its close (the disconnect event's `stop`,
 * reason "Kicked"), heard with the guard's own system creds.
 */
async function kickedLifetimes(env: SecureNats, user: string) {
  const account = (await readAuthState(env.authDir.path)).devices_account_public_key;
  const nc = await connect({
    servers: env.nats.url,
    inboxPrefix: CONNECTION_GUARD_INBOX_PREFIX,
    authenticator: credsAuthenticator(await Deno.readFile(env.path("system.creds"))),
  });
  type Event = {
    timestamp: string;
    client: { id: number; user?: string; stop?: string };
    reason?: string;
  };
  const admitted = new Map<number, number>();
  const lifetimesMs: number[] = [];
  nc.subscribe(`$SYS.ACCOUNT.${account}.CONNECT`, {
    callback: (_err, msg) => {
      const e = msg.json<Event>();
      if (e.client.user === user) admitted.set(e.client.id, parseStartUs(e.timestamp));
    },
  });
  nc.subscribe(`$SYS.ACCOUNT.${account}.DISCONNECT`, {
    callback: (_err, msg) => {
      const e = msg.json<Event>();
      const at = admitted.get(e.client.id);
      if (e.client.user !== user || e.reason !== "Kicked" || at === undefined) return;
      lifetimesMs.push((parseStartUs(e.client.stop ?? "") - at) / 1000);
    },
  });
  await nc.flush();
  return { lifetimesMs, [Symbol.asyncDispose]: () => nc.close() };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN);
}

async function serve(env: SecureNats, extra: string[]): Promise<OperatorService> {
  return await startOperatorService(env.nats.url, await freePort(), [
    "--creds",
    env.path("operator.creds"),
    ...extra,
  ]);
}

async function metric(operator: OperatorService, pattern: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`${operator.apiUrl}/metrics`)).text();
  const m = pattern.exec(text);
  return m === null ? undefined : Number(m[1]);
}

Deno.test({
  name: "connections: 50 connections of one device cannot keep another out (nats-server 2.10+)",
  ignore: !KICKS,
  sanitizeResources: false,
  async fn() {
    await using env = await startSecureNats({
      devices: { [VICTIM]: {}, [ATTACKER]: {} },
      limits: { maxDevices: 4 },
    });
    await using operator = await serve(env, ["--system-creds", env.path("system.creds")]);
    await waitFor(() => operator.logs().includes("Connection guard: at most 2"), {
      timeoutMs: 10_000,
      message: "serve runs its connection guard",
    });
    const thief = await userKey(env, ATTACKER);
    await using kicked = await kickedLifetimes(env, thief);
    const victimStatus: string[] = [];
    let victim: NatsConnection | undefined;
    let held: Awaited<ReturnType<typeof victimConnects>>;
    let stats;
    const sample = async () => {
      const s = await sampleProcess(operator.pid);
      if (s === undefined) throw new Error("serve is gone");
      return s;
    };
    const idle: ProcSample = await sample();
    let maxRssMiB = idle.rssMiB;
    let attacked: ProcSample;
    {
      await using attacker = attack(env);
      const sampling = setInterval(async () => {
        maxRssMiB = Math.max(maxRssMiB, (await sampleProcess(operator.pid))?.rssMiB ?? 0);
      }, 250);
      await new Promise((r) => setTimeout(r, 1_000));
      held = await victimConnects(env, 20_000);
      victim = held.nc;
      assert(
        victim !== undefined,
        `the victim connects under the attack: ${[...held.errors].join(" | ")}`,
      );
      (async () => {
        for await (const s of victim.status()) victimStatus.push(s.type);
      })().catch(() => {});
      await new Promise((r) => setTimeout(r, ATTACK_MS));
      attacker.stop();
      clearInterval(sampling);
      attacked = await sample();
      stats = attacker.stats();
      // Settled: at most the limit of the attacker's, by the server's own count.
      await waitFor(async () => (await connectionsOf(env, thief)) <= LIMIT, {
        timeoutMs: 10_000,
        message: `the attacker holds at most ${LIMIT} connections`,
      });
      assert(!victim.isClosed(), "the victim stayed connected");
      assertEquals(victimStatus.filter((s) => s === "disconnect"), [], "never disconnected");
      // And the victim's connection still works: a request it may make is answered.
      await victim.flush();
    }
    await victim.close();
    const closed = await metric(operator, /^drover_device_connections_closed_total (\d+)/m) ?? 0;
    const { opened, refused, closedAfterMs } = stats;
    console.log(
      `connections: the attacker opened ${opened} (${refused} refused) in ${
        ATTACK_MS / 1000 + 1
      } s; the guard closed ${closed}; an extra one lived ${percentile(closedAfterMs, 0.5)} ms ` +
        `median, ${percentile(closedAfterMs, 0.95)} ms p95, ${
          percentile(closedAfterMs, 1)
        } ms max (client-side, from connect() resolved to closed); server-side (connect event to close) ${
          percentile(kicked.lifetimesMs, 0.5)
        } ms median, ${percentile(kicked.lifetimesMs, 0.95)} ms p95, ${
          percentile(kicked.lifetimesMs, 1)
        } ms max over ${kicked.lifetimesMs.length}; the victim connected after ${held.ms} ms ` +
        `(${held.attempts} attempt(s)); serve used ${
          Math.round(attacked.cpuMs - idle.cpuMs)
        } ms CPU during the attack (${
          ((attacked.cpuMs - idle.cpuMs) / Math.max(1, closed)).toFixed(2)
        } ms per closed connection), RSS ${idle.rssMiB.toFixed(1)} MiB before, ${
          maxRssMiB.toFixed(1)
        } MiB max`,
    );
    // Loosely (shared machines): the guard's picture and queues stay bounded.
    assert(maxRssMiB < idle.rssMiB * 3, `serve grew from ${idle.rssMiB} to ${maxRssMiB} MiB`);
    assert(opened > SLOTS, `the attack ran: ${opened} opened`);
    assert(closed >= opened - SLOTS, `the guard closed ${closed} of ${opened}`);
    const lines = operator.logs().split("\n").filter((l) => l.includes(ATTACKER));
    assert(lines.some((l) => /operator device revoke "?cn-thief/.test(l)), lines.join("\n"));
    assert(lines.length < 30, `${lines.length} log lines about the attacker`);
  },
});

Deno.test({
  name: "connections: ones open before serve started are closed by its CONNZ read; newest kept",
  ignore: !KICKS,
  sanitizeResources: false,
  async fn() {
    await using env = await startSecureNats({ devices: { [ATTACKER]: {} } });
    const held: NatsConnection[] = [];
    try {
      for (let i = 0; i < 5; i++) held.push(await deviceConnection(env, ATTACKER));
      await using operator = await serve(env, ["--system-creds", env.path("system.creds")]);
      await waitFor(() => held.slice(0, 3).every((nc) => nc.isClosed()), {
        timeoutMs: 10_000,
        message: "the 3 oldest are closed",
      });
      assert(held.slice(3).every((nc) => !nc.isClosed()), "the 2 newest stay open");
      assertEquals(await connectionsOf(env, await userKey(env, ATTACKER)), 2);
      assertEquals(await metric(operator, /^drover_device_connections_closed_total (\d+)/m), 3);
    } finally {
      await Promise.all(held.map((nc) => nc.close()));
    }
  },
});

Deno.test({
  name: "connections: on a 2-node cluster the limit is per device over both; the oldest go",
  ignore: !KICKS,
  sanitizeResources: false,
  async fn() {
    await using auth = await tempDir("drover-auth-");
    const { confPath } = await authInit(auth.path);
    await deviceAdd(auth.path, ATTACKER);
    await using cluster = await startNatsCluster(2, { extraConfig: includeAbsolute(confPath) });
    const creds = await Deno.readFile(`${auth.path}/${ATTACKER}.creds`);
    const on = (node: number) =>
      connect({
        servers: cluster.urls[node]!,
        inboxPrefix: deviceInboxPrefix(ATTACKER),
        authenticator: credsAuthenticator(creds),
        reconnect: false,
      });
    const held: NatsConnection[] = [];
    try {
      // The 2 oldest (one per node) before serve starts, within the limit: nothing to close.
      held.push(await on(0), await on(1));
      await using operator = await startOperatorService(cluster.urls.join(","), await freePort(), [
        "--creds",
        `${auth.path}/operator.creds`,
        "--system-creds",
        `${auth.path}/system.creds`,
      ]);
      await waitFor(() => operator.logs().includes("Connection guard: at most 2"), {
        timeoutMs: 10_000,
        message: "serve runs its connection guard",
      });
      // Two newer ones, again one per node: the guard, connected to one node, closes the old
      // ones on both.
      held.push(await on(1), await on(0));
      await waitFor(() => held[0]!.isClosed() && held[1]!.isClosed(), {
        timeoutMs: 10_000,
        message: "the 2 oldest are closed, on either node",
      });
      assert(!held[2]!.isClosed() && !held[3]!.isClosed(), "the 2 newest stay open");
      assertEquals(await metric(operator, /^drover_device_connections_closed_total (\d+)/m), 2);
    } finally {
      await Promise.all(held.map((nc) => nc.close()));
    }
  },
});

Deno.test({
  name: "connections: without the guard (no system creds) the same attack locks the victim out",
  ignore: !KICKS,
  sanitizeResources: false,
  async fn() {
    await using env = await startSecureNats({
      devices: { [VICTIM]: {}, [ATTACKER]: {} },
      limits: { maxDevices: 4 },
    });
    await using operator = await serve(env, []);
    assertStringIncludes(operator.logs(), "Per-device NATS connection limits are not enforced");
    await using _attacker = attack(env);
    await new Promise((r) => setTimeout(r, 1_000));
    const held = await victimConnects(env, 5_000);
    await held.nc?.close();
    assertEquals(held.nc, undefined, "the victim is locked out");
    const errors = [...held.errors].join(" | ");
    assertStringIncludes(errors.toLowerCase(), "maximum account active connections");
  },
});

Deno.test({
  name: "connections: nats-server 2.9 cannot close them; the guard reports the device",
  ignore: KICKS,
  sanitizeResources: false,
  async fn() {
    await using env = await startSecureNats({ devices: { [VICTIM]: {}, [ATTACKER]: {} } });
    const held: NatsConnection[] = [];
    try {
      // 3 before serve starts (found by its CONNZ read), 2 after (by the connect events).
      for (let i = 0; i < 3; i++) held.push(await deviceConnection(env, ATTACKER));
      // The creds found in the auth directory (--dir), as auth init wrote them.
      await using operator = await serve(env, ["--dir", env.authDir.path]);
      await waitFor(() => operator.logs().includes("Connection guard: at most 2"), {
        timeoutMs: 10_000,
        message: "serve runs its connection guard",
      });
      const thief = await userKey(env, ATTACKER);
      for (let i = 0; i < 2; i++) held.push(await deviceConnection(env, ATTACKER));
      held.push(await deviceConnection(env, VICTIM));
      await waitFor(
        () =>
          metric(
            operator,
            new RegExp(
              `^drover_device_connections_over_limit\\{device="${ATTACKER}"\\} (\\d+)`,
              "m",
            ),
          ).then((n) => n === 5),
        { timeoutMs: 10_000, message: "/metrics names the attacker with its 5 connections" },
      );
      assertEquals(
        await metric(operator, /^drover_device_identities_over_connection_limit (\d+)/m),
        1,
        "one identity over the limit (not the victim)",
      );
      const revoke = new RegExp(`operator device revoke "?${ATTACKER}`);
      await waitFor(() => revoke.test(operator.logs()), {
        timeoutMs: 10_000,
        message: "the log names the device and how to cut it off",
      });
      const line = operator.logs().split("\n").find((l) => revoke.test(l));
      assertStringIncludes(line ?? "", "2.9");
      // Nothing was closed: the server could not, and the guard did not try in vain.
      assertEquals(await connectionsOf(env, thief), 5);
      assert(held.every((nc) => !nc.isClosed()), "every connection is still open");
      assertEquals(await metric(operator, /^drover_device_connections_closed_total (\d+)/m), 0);
      // Positive control of "no one over the limit": once the attacker is down to 2, none is.
      await Promise.all(held.slice(0, 3).map((nc) => nc.close()));
      await waitFor(
        () =>
          metric(operator, /^drover_device_identities_over_connection_limit (\d+)/m).then((n) =>
            n === 0
          ),
        { timeoutMs: 10_000, message: "no identity over the limit once the attacker holds 2" },
      );
    } finally {
      await Promise.all(held.map((nc) => nc.close()));
    }
  },
});

Deno.test("connections: serve refuses creds that are not the guard's, naming whose they are", async () => {
  await using env = await startSecureNats({ devices: { [VICTIM]: {} } });
  const serveWith = (creds: string) =>
    runOperatorCli(env.nats.url, [
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--creds",
      env.path("operator.creds"),
      "--system-creds",
      creds,
    ]);
  const operatorCreds = await serveWith(env.path("operator.creds"));
  assertEquals(operatorCreds.code, 1, operatorCreds.stderr);
  assertStringIncludes(operatorCreds.stderr, "holds the operator's creds");
  assertStringIncludes(operatorCreds.stderr, "operator auth system-creds --dir DIR");
  const deviceCreds = await serveWith(env.path(`${VICTIM}.creds`));
  assertStringIncludes(deviceCreds.stderr, `holds device "${VICTIM}"'s creds`);
  // Another fleet's guard creds: the server refuses them, and serve says so at start.
  await using other = await tempDir("drover-other-auth-");
  const foreign = await authInit(other.path);
  const refused = await serveWith(foreign.systemCredsPath);
  assertEquals(refused.code, 1, refused.stderr);
  assertStringIncludes(refused.stderr, `refused the credentials in ${foreign.systemCredsPath}`);
  // Positive control: `auth system-creds` issues ones this fleet's server takes (a new user).
  const reissue = await runOperatorCli(env.nats.url, [
    "auth",
    "system-creds",
    "--dir",
    env.authDir.path,
  ]);
  assertEquals(reissue.code, 0, reissue.stderr);
  assertStringIncludes(reissue.stdout, `wrote ${env.path("system.creds")}`);
  const guard = await connect({
    servers: env.nats.url,
    inboxPrefix: CONNECTION_GUARD_INBOX_PREFIX,
    authenticator: credsAuthenticator(await Deno.readFile(env.path("system.creds"))),
  });
  await guard.close();
});
