import { connect } from "@nats-io/transport-node";
import { createUser } from "@nats-io/nkeys";
import { Kvm } from "@nats-io/kv";
import { startNats } from "../../tests/support/mod.ts";
import { assert, assertEquals } from "../../tests/support/assert.ts";
import {
  connectionName,
  connectionOptions,
  connectWithRetry,
  inboxPrefix,
  reconnectBackoff,
  ReconnectDelay,
  reconnectDelayMs,
} from "./connect.ts";
import { tolerateTransportResets } from "@drover/common";

// Tests below provoke refused connections on purpose; the transport's reset that can follow
// such a close may arrive after the test that caused it, so the guard covers the whole file.
tolerateTransportResets();

Deno.test("connectionOptions: identity, reconnect forever, every auth method, TLS files", () => {
  const files: Record<string, Uint8Array> = {
    "/etc/drover/pi.creds": new TextEncoder().encode("creds"),
    "/etc/drover/pi.nk": new TextEncoder().encode("SUASEED\n"),
  };
  const o = connectionOptions(
    "pi-1",
    {
      servers: ["nats://127.0.0.1:4222"],
      user: "u",
      password: "p",
      token: "t",
      creds: "/etc/drover/pi.creds",
      nkey_seed: "/etc/drover/pi.nk",
      tls_ca: "/etc/drover/ca.pem",
      tls_cert: "/etc/drover/cert.pem",
      tls_key: "/etc/drover/key.pem",
    },
    reconnectBackoff(),
    (path) => {
      const file = files[path];
      if (file === undefined) throw new Deno.errors.NotFound(`no test file ${path}`);
      return file;
    },
  );
  assertEquals(o.name, connectionName("pi-1"));
  assertEquals(o.inboxPrefix, inboxPrefix("pi-1"));
  assertEquals(o.inboxPrefix, "_INBOX_pi-1");
  assertEquals(o.maxReconnectAttempts, -1);
  assertEquals(Array.isArray(o.authenticator) ? o.authenticator.length : 0, 4);
  assertEquals(o.tls, {
    caFile: "/etc/drover/ca.pem",
    certFile: "/etc/drover/cert.pem",
    keyFile: "/etc/drover/key.pem",
  });
  const delay = o.reconnectDelayHandler!();
  assert(delay > 0 && delay <= 10_000, `delay ${delay}`);
});

Deno.test("reconnectDelayMs: about the outage so far, 250 ms to 10 s, up to half off at random", () => {
  assertEquals(reconnectDelayMs(0, () => 0), 250);
  assertEquals(reconnectDelayMs(0, () => 1), 125);
  assertEquals(reconnectDelayMs(3_000, () => 0), 3_000);
  assertEquals(reconnectDelayMs(3_000, () => 1), 1_500);
  assertEquals(reconnectDelayMs(60_000, () => 0), 10_000);
  // Asked again and again within one outage (nats.js asks on every turn of its loop),
  // the delay does not run away: it follows the time, not the number of calls.
  let now = 0;
  const d = new ReconnectDelay(() => now);
  d.down();
  for (let i = 0; i < 50; i++) assert(d.next() <= 250);
  now = 2_000;
  assert(d.next() <= 2_000 && d.next() >= 1_000);
  d.reset();
  assert(d.next() <= 250);
});

Deno.test("reconnectBackoff grows, is capped at 10 s and resets", () => {
  const b = reconnectBackoff();
  const delays = Array.from({ length: 12 }, () => b.next());
  assert(delays.every((d) => d <= 10_000), delays.join(","));
  // Array.from above made exactly 12 delays.
  assert(delays[11]! > delays[0]!, delays.join(","));
  b.reset();
  assert(b.next() <= 250);
});

Deno.test("an nkey seed file (with trailing newline) authenticates against a real server", async () => {
  const user = createUser();
  const seedText = new TextDecoder().decode(user.getSeed());
  await using nats = await startNats({
    extraConfig: `authorization { users = [ { nkey: ${JSON.stringify(user.getPublicKey())} } ] }`,
  });
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/pi.nk`, seedText + "\n");
    const ac = new AbortController();
    const nc = await connectWithRetry(
      connectionOptions("pi-1", { servers: [nats.url], nkey_seed: `${dir}/pi.nk` }),
      ac.signal,
    );
    assert(nc !== undefined);
    await nc.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("token auth works; a wrong token keeps retrying until aborted", async () => {
  await using nats = await startNats({ extraConfig: `authorization { token: "sekrit" }` });
  const ac = new AbortController();
  const ok = await connectWithRetry(
    connectionOptions("pi-1", { servers: [nats.url], token: "sekrit" }),
    ac.signal,
  );
  assert(ok !== undefined);
  await ok.close();

  const failures: unknown[] = [];
  const twoFailures = Promise.withResolvers<void>();
  const bad = new AbortController();
  const attempt = connectWithRetry(
    connectionOptions("pi-1", { servers: [nats.url], token: "wrong" }),
    bad.signal,
    {
      onAttemptFailed: (e) => {
        if (failures.push(e) === 2) twoFailures.resolve();
      },
    },
  );
  await twoFailures.promise;
  bad.abort();
  assertEquals(await attempt, undefined);
  assert(/authorization/i.test(String((failures[0] as Error).message)), String(failures[0]));
});

Deno.test("user/password auth connects and writes to a bucket", async () => {
  await using nats = await startNats({
    extraConfig: `authorization { users = [ { user: "pi-1", password: "pw" } ] }`,
  });
  const admin = await connect({ servers: nats.url, user: "pi-1", pass: "pw" });
  await new Kvm(admin).create("agent-status");
  await admin.close();
  const nc = await connectWithRetry(
    connectionOptions("pi-1", { servers: [nats.url], user: "pi-1", password: "pw" }),
    new AbortController().signal,
  );
  assert(nc !== undefined);
  try {
    const kv = await new Kvm(nc).open("agent-status");
    await kv.put("pi-1", "x");
    assertEquals((await kv.get("pi-1"))?.string(), "x");
  } finally {
    await nc.close();
  }
});
