/**
 * The shared connection options of the operator CLI against real nats-servers that require
 * them: user/password (flags and environment), token, and mutual TLS.
 */

import { startNats } from "../support/mod.ts";
import { createTestPki, natsTlsBlock } from "../support/tls.ts";
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import { runOperatorCli } from "../support/operator_process.ts";

Deno.test("operator CLI: user/password from flags or environment; refused without", async () => {
  await using nats = await startNats({
    extraConfig: 'authorization { user: "ops", password: "s3cret" }\n',
  });
  const without = await runOperatorCli(nats.url, ["get", "deployments"]);
  assertEquals(without.code, 1);
  assertStringIncludes(without.stderr, "error: Cannot connect to NATS");
  assertStringIncludes(without.stderr.toLowerCase(), "authorization");

  const flags = await runOperatorCli(nats.url, [
    "get",
    "deployments",
    "--user",
    "ops",
    "--password",
    "s3cret",
  ]);
  assertEquals(flags.code, 0, flags.stderr);
  assertStringIncludes(flags.stdout, "No deployments.");

  const env = await runOperatorCli(nats.url, ["get", "devices", "-o", "json"], {
    NATS_USER: "ops",
    NATS_PASSWORD: "s3cret",
  });
  assertEquals(env.code, 0, env.stderr);
  assertEquals(JSON.parse(env.stdout), []);
});

Deno.test("operator CLI: token", async () => {
  await using nats = await startNats({ extraConfig: 'authorization { token: "t0ken" }\n' });
  assertEquals((await runOperatorCli(nats.url, ["get", "devices"])).code, 1);
  const ok = await runOperatorCli(nats.url, ["get", "devices", "--token", "t0ken"]);
  assertEquals(ok.code, 0, ok.stderr);
});

Deno.test("operator CLI: mutual TLS with CA, client certificate and key", async () => {
  await using pki = await createTestPki();
  await using nats = await startNats({ extraConfig: natsTlsBlock(pki, { verify: true }) });
  const url = nats.url.replace("nats://", "tls://");
  const ok = await runOperatorCli(url, [
    "get",
    "devices",
    "--tls-ca",
    pki.caCert,
    "--tls-cert",
    pki.clientCert,
    "--tls-key",
    pki.clientKey,
  ]);
  assertEquals(ok.code, 0, ok.stderr);
  const wrongCa = await runOperatorCli(url, [
    "get",
    "devices",
    "--tls-ca",
    pki.otherCaCert,
    "--tls-cert",
    pki.clientCert,
    "--tls-key",
    pki.clientKey,
  ]);
  assertEquals(wrongCa.code, 1);
  assertStringIncludes(wrongCa.stderr, "error: Cannot connect to NATS");
  // The server refuses after the handshake: still one clear line, no stack trace.
  const noClientCert = await runOperatorCli(url, ["get", "devices", "--tls-ca", pki.caCert]);
  assertEquals(noClientCert.code, 1);
  assertStringIncludes(noClientCert.stderr, "error: ");
  assertEquals(noClientCert.stderr.includes("    at "), false, noClientCert.stderr);
});
