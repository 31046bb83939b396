import { startNats } from "../../tests/support/mod.ts";
import { createTestPki, natsTlsBlock } from "../../tests/support/tls.ts";
import { assert, assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { tolerateTransportResets } from "@drover/common";
import type { ConnectionOptions, NatsConnection } from "@nats-io/nats-core";
import { DENO_TRANSPORT_LANG, needsNodeTransport, wantsTls } from "./deno_transport.ts";
import { natsConnect } from "./connect.ts";

// Refused TLS handshakes below may leave a late reset behind.
tolerateTransportResets();

interface Connz {
  connections: Array<{ name?: string; lang?: string; tls_version?: string }>;
}

async function connection(monitorUrl: string, name: string) {
  const connz = await (await fetch(`${monitorUrl}/connz`)).json() as Connz;
  return connz.connections.find((c) => c.name === name);
}

/** A request/reply round trip with a payload far larger than one socket read. */
async function echoes(nc: NatsConnection): Promise<void> {
  const sub = nc.subscribe("echo");
  (async () => {
    for await (const m of sub) m.respond(m.data);
  })();
  const payload = new Uint8Array(200_000).map((_, i) => i % 251);
  for (let i = 0; i < 3; i++) {
    const reply = await nc.request("echo", payload, { timeout: 5_000 });
    assertEquals(reply.data, payload);
  }
}

Deno.test("needsNodeTransport: only a client certificate or TLS-first", () => {
  assertEquals(needsNodeTransport({}), false);
  assertEquals(needsNodeTransport({ tls: { caFile: "/ca.pem" } }), false);
  assertEquals(needsNodeTransport({ tls: { certFile: "/c.pem", keyFile: "/k.pem" } }), true);
  assertEquals(needsNodeTransport({ tls: { handshakeFirst: true } }), true);
});

Deno.test("wantsTls: required, or offered and configured", () => {
  const info = { tls_required: false, tls_available: false } as Parameters<typeof wantsTls>[0];
  const tls: ConnectionOptions = { tls: { caFile: "/ca.pem" } };
  assertEquals(wantsTls({ ...info, tls_required: true }, {}), true);
  assertEquals(wantsTls({ ...info, tls_available: true }, {}), false);
  assertEquals(wantsTls({ ...info, tls_available: true }, tls), true);
  assertEquals(wantsTls(info, tls), false);
});

Deno.test("deno transport: plain TCP, large messages, survives a server restart", async () => {
  await using nats = await startNats();
  const name = "deno-transport-plain";
  const nc = await natsConnect({
    servers: nats.url,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
  });
  const reconnected = (async () => {
    for await (const s of nc.status()) if (s.type === "reconnect") return true;
    return false;
  })();
  try {
    await echoes(nc);
    const seen = await connection(nats.monitorUrl, name);
    assertEquals(seen?.lang, DENO_TRANSPORT_LANG);
    assertEquals(seen?.tls_version, undefined);
    await nats.restart();
    // A request made while the client is still reconnecting times out (transport-node alike).
    assert(await reconnected, "reconnected after the restart");
    await echoes(nc);
    assertEquals((await connection(nats.monitorUrl, name))?.lang, DENO_TRANSPORT_LANG);
  } finally {
    await nc.close();
  }
});

Deno.test("deno transport: TLS after INFO against the configured CA; a wrong or missing CA fails", async () => {
  await using pki = await createTestPki();
  await using nats = await startNats({ extraConfig: natsTlsBlock(pki) });
  const name = "deno-transport-tls";
  const nc = await natsConnect({ servers: nats.url, name, tls: { caFile: pki.caCert } });
  try {
    await echoes(nc);
    const seen = await connection(nats.monitorUrl, name);
    assertEquals(seen?.lang, DENO_TRANSPORT_LANG);
    assert(seen?.tls_version, `the connection is TLS: ${JSON.stringify(seen)}`);
  } finally {
    await nc.close();
  }
  const options = { servers: nats.url, reconnect: false, timeout: 5_000 };
  await assertRejects(() => natsConnect({ ...options, tls: { caFile: pki.otherCaCert } }));
  await assertRejects(() => natsConnect(options));
});

Deno.test("mutual TLS goes through transport-node (Deno.startTls has no client certificate)", async () => {
  await using pki = await createTestPki();
  await using nats = await startNats({ extraConfig: natsTlsBlock(pki, { verify: true }) });
  const name = "node-transport-mtls";
  const nc = await natsConnect({
    servers: nats.url,
    name,
    tls: { caFile: pki.caCert, certFile: pki.clientCert, keyFile: pki.clientKey },
  });
  try {
    await echoes(nc);
    const seen = await connection(nats.monitorUrl, name);
    assertEquals(seen?.lang, "nats.js");
    assert(seen?.tls_version, `the connection is TLS: ${JSON.stringify(seen)}`);
  } finally {
    await nc.close();
  }
});
