import { decode, parseCreds } from "@nats-io/jwt";
import { parse as parseToml } from "smol-toml";
import {
  AgentConfig,
  connectEventsAccount,
  connectionGuardSubjects,
  credsIdentity,
} from "@drover/contracts";
import { ConfigError, loadConfig } from "../../agent/config.ts";
import { connectNats, NatsConnectionError } from "../nats/connection.ts";
import { DEVICE_CREDS_PATH } from "./device_config.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../../tests/support/assert.ts";
import { tempDir } from "../../tests/support/temp_dir.ts";
import { readDeviceRegistry } from "./store.ts";
import {
  AuthAlreadyInitializedError,
  AuthFileInvalidError,
  authInit,
  AuthInputError,
  AuthNotInitializedError,
  DEVICE_BRIDGES,
  DEVICE_EXPORTS,
  DEVICE_MAX_PAYLOAD_BYTES,
  DEVICE_MAX_SUBSCRIPTIONS,
  deviceAdd,
  DeviceExistsError,
  deviceInboxPrefix,
  deviceList,
  devicePermissions,
  deviceRevoke,
  DeviceUnknownError,
  issueSystemCreds,
  renderAuthConf,
} from "./mod.ts";

const mode = async (path: string) => (await Deno.stat(path)).mode! & 0o777;

/** `name: "jwt"` entries of a rendered fragment. */
function confValues(conf: string): { operator: string; preload: Record<string, string> } {
  const operator = /^operator: "([^"]+)"$/m.exec(conf)?.[1];
  if (operator === undefined) throw new Error(`no operator line in:\n${conf}`);
  const preload: Record<string, string> = {};
  for (const [, key, jwt] of conf.matchAll(/^ {2}(A[A-Z0-9]+): "([^"]+)"$/gm)) {
    if (key !== undefined && jwt !== undefined) preload[key] = jwt;
  }
  return { operator, preload };
}

/** The preloaded JWT of `account`; a missing one fails the test. */
function preloaded(preload: Record<string, string>, account: string): string {
  const jwt = preload[account];
  if (jwt === undefined) throw new Error(`no preloaded JWT for account ${account}`);
  return jwt;
}

// deno-lint-ignore no-explicit-any
type Claims = any;

Deno.test("devicePermissions: exactly the device's own subjects, nothing wider", () => {
  assertEquals(devicePermissions("pi-1"), {
    pub: {
      allow: [
        "$KV.agent-status.pi-1",
        "$JS.API.DIRECT.GET.KV_desired-state.$KV.desired-state.pi-1.*",
        "drover.desired.snapshot.pi-1",
        "drover.heartbeat.pi-1",
        "drover.artifact.pi-1",
      ],
    },
    sub: { allow: ["$KV.desired-state.pi-1.*", "_INBOX_pi-1.>", "drover.cmd.pi-1.*"] },
    resp: { max: 1, ttlMs: 30_000 },
  });
  assertEquals(deviceInboxPrefix("pi-1"), "_INBOX_pi-1");
  // An id that would widen a subject is refused outright.
  for (const bad of ["a.b", "*", ">", "a b", "", "A"]) {
    assertThrows(() => devicePermissions(bad), Error, "Invalid device id");
  }
});

Deno.test("DEVICE_BRIDGES: the only subjects the devices' account imports, locked", () => {
  assertEquals(DEVICE_BRIDGES.map((b) => [b.type, b.subject]), [
    ["service", "$KV.agent-status.*"],
    ["service", "$JS.API.DIRECT.GET.KV_desired-state.$KV.desired-state.*.*"],
    ["service", "drover.desired.snapshot.*"],
    ["service", "drover.artifact.*"],
    ["stream", "$KV.desired-state.*.*"],
  ]);
});

Deno.test("DEVICE_EXPORTS: the only subjects DROVER imports from the devices, locked", () => {
  assertEquals(DEVICE_EXPORTS.map((b) => [b.type, b.subject]), [
    ["stream", "drover.heartbeat.*"],
    ["service", "drover.cmd.*.*"],
  ]);
});

Deno.test("renderAuthConf: operator, system account, memory resolver, preloaded accounts", () => {
  const conf = renderAuthConf({
    operatorJwt: "op.jwt",
    systemAccountPublicKey: "ASYS",
    accountJwts: { ASYS: "sys.jwt", ADROVER: "drover.jwt" },
  });
  assertStringIncludes(conf, 'operator: "op.jwt"');
  assertStringIncludes(conf, 'system_account: "ASYS"');
  assertStringIncludes(conf, "resolver: MEMORY");
  assertStringIncludes(conf, 'resolver_preload: {\n  ASYS: "sys.jwt"\n  ADROVER: "drover.jwt"\n}');
});

Deno.test("authInit: private files, every account limit spelled out, refuses to overwrite", async () => {
  await using dir = await tempDir("drover-auth-test-");
  const auth = `${dir.path}/auth`;
  const result = await authInit(auth);
  assertEquals(await mode(auth), 0o700);
  for (
    const f of [
      "operator.nk",
      "system-account.nk",
      "account.nk",
      "account-signing.nk",
      "devices-account.nk",
      "devices-account-signing.nk",
    ]
  ) {
    assertEquals(await mode(`${auth}/${f}`), 0o600, f);
    assert((await Deno.readTextFile(`${auth}/${f}`)).startsWith(f === "operator.nk" ? "SO" : "SA"));
  }
  assertEquals(await mode(result.operatorCredsPath), 0o600);

  const { operator, preload } = confValues(await Deno.readTextFile(result.confPath));
  const op: Claims = decode(operator);
  assertEquals(op.nats.type, "operator");
  const account: Claims = decode(preloaded(preload, result.accountPublicKey));
  assertEquals(account.iss, op.sub, "the operator signs the account");
  assertEquals(account.nats.limits, {
    subs: -1,
    data: -1,
    payload: 1024 * 1024,
    imports: DEVICE_EXPORTS.length,
    exports: DEVICE_BRIDGES.length,
    wildcards: true,
    conn: 64,
    leaf: -1,
    mem_storage: 0,
    disk_storage: 10 * 1024 ** 3,
    streams: 16,
    consumer: 1000,
  });
  assertEquals(account.nats.signing_keys.length, 1);
  // Exports are private: only an account holding DROVER's activation token imports them.
  assertEquals(
    account.nats.exports.map((e: Claims) => [e.type, e.subject, e.token_req]),
    DEVICE_BRIDGES.map((b) => [b.type, b.subject, true]),
  );
  assert(preload[op.nats.system_account] !== undefined, "system account preloaded");
  // DROVER imports the devices' heartbeats with a token the devices' account signed.
  assertEquals(
    account.nats.imports.map((i: Claims) => [i.type, i.subject, i.account]),
    DEVICE_EXPORTS.map((b) => [b.type, b.subject, result.devicesAccountPublicKey]),
  );
  for (const imported of account.nats.imports) {
    const token: Claims = decode(imported.token);
    assertEquals(token.sub, result.accountPublicKey, "activation names DROVER");
    assertEquals(token.iss, result.devicesAccountPublicKey, "activation signed by the devices");
  }

  // The devices' account: no JetStream limit at all (JetStream off), imports only.
  const devices: Claims = decode(preloaded(preload, result.devicesAccountPublicKey));
  assertEquals(devices.iss, op.sub);
  assertEquals(devices.nats.limits, {
    subs: 25_000 * DEVICE_MAX_SUBSCRIPTIONS,
    data: -1,
    payload: DEVICE_MAX_PAYLOAD_BYTES,
    imports: DEVICE_BRIDGES.length,
    exports: DEVICE_EXPORTS.length,
    wildcards: true,
    // One per device and 5 % headroom (at least 16) for the connection guard's closes in flight.
    conn: 26_250,
    leaf: 0,
  });
  // Its exports (heartbeats) are private to DROVER.
  assertEquals(
    devices.nats.exports.map((e: Claims) => [e.type, e.subject, e.token_req]),
    DEVICE_EXPORTS.map((b) => [b.type, b.subject, true]),
  );
  for (const imported of devices.nats.imports) {
    assertEquals(imported.account, result.accountPublicKey);
    const token: Claims = decode(imported.token);
    assertEquals(token.sub, result.devicesAccountPublicKey, "activation names the importer");
    assertEquals(token.iss, result.accountPublicKey, "activation signed by DROVER");
  }

  // The operator's user is unrestricted within the DROVER account.
  const creds = await parseCreds(await Deno.readFile(result.operatorCredsPath));
  assertEquals(creds.aid, result.accountPublicKey);
  assertEquals(creds.uc.nats.pub, undefined);

  // serve's connection guard: a system-account user held to the devices' connections.
  const systemText = await Deno.readTextFile(result.systemCredsPath);
  const system = await parseCreds(new TextEncoder().encode(systemText));
  assertEquals(system.aid, op.nats.system_account, "a user of the system account");
  const guard = connectionGuardSubjects(result.devicesAccountPublicKey);
  assertEquals(system.uc.nats.pub?.allow, guard.pub);
  assertEquals(system.uc.nats.sub?.allow, guard.sub);
  assertEquals(connectEventsAccount(systemText), result.devicesAccountPublicKey);
  assertEquals(connectEventsAccount(await Deno.readTextFile(result.operatorCredsPath)), undefined);
  assertEquals(await mode(result.systemCredsPath), 0o600);
  // An auth directory may get (new) ones later.
  const reissued = await issueSystemCreds(auth);
  assertEquals(reissued, result.systemCredsPath);
  assert(await Deno.readTextFile(reissued) !== systemText, "a new user");

  // Limits can be sized for another fleet.
  await using other = await tempDir("drover-auth-test-");
  const small = await authInit(other.path, { limits: { maxDevices: 10 } });
  const smallConf = confValues(await Deno.readTextFile(small.confPath));
  assertEquals(
    decode<Claims>(preloaded(smallConf.preload, small.devicesAccountPublicKey)).nats.limits.conn,
    10 + 16,
  );

  await assertRejects(() => authInit(auth), AuthAlreadyInitializedError, "--force");
  await deviceAdd(auth, "pi-1");
  const again = await authInit(auth, { force: true });
  assert(again.accountPublicKey !== result.accountPublicKey, "new keys");
  assertEquals(await deviceList(auth), [], "devices of the old keys are forgotten");
  await assertRejects(() => Deno.stat(`${auth}/pi-1.creds`), Deno.errors.NotFound);
});

Deno.test("deviceAdd: creds carry the device permissions; the config is one the agent accepts", async () => {
  await using dir = await tempDir("drover-auth-test-");
  const { devicesAccountPublicKey } = await authInit(dir.path);
  const expiresAt = new Date("2030-01-02T03:04:05Z");
  const added = await deviceAdd(dir.path, "pi-1", {
    expiresAt,
    labels: { site: "lab" },
    servers: ["tls://nats.example:4222"],
    tlsCa: "/etc/drover/ca.pem",
  });
  assertEquals(await mode(added.credsPath), 0o600);
  const creds = await parseCreds(await Deno.readFile(added.credsPath));
  assertEquals(creds.aid, devicesAccountPublicKey, "devices live in their own account");
  assertEquals(creds.uc.sub, added.userPublicKey);
  assertEquals(creds.uc.nats.pub, devicePermissions("pi-1").pub);
  assertEquals(creds.uc.nats.sub, devicePermissions("pi-1").sub);
  // Answers only to commands it received: one message each, within 30 s (ns in the JWT).
  assertEquals(creds.uc.nats.resp, { max: 1, ttl: 30_000_000_000 });
  assertEquals(creds.uc.nats.allowed_connection_types, ["STANDARD"]);
  assertEquals(creds.uc.nats.subs, DEVICE_MAX_SUBSCRIPTIONS);
  assertEquals(creds.uc.nats.payload, DEVICE_MAX_PAYLOAD_BYTES);
  assertEquals(creds.uc.exp, expiresAt.getTime() / 1000);
  assert(creds.uc.iss !== devicesAccountPublicKey, "signed by the account's signing key");
  assertEquals((await deviceList(dir.path))[0]?.expiresAt, expiresAt.toISOString());

  const config = AgentConfig.parse(parseToml(await Deno.readTextFile(added.configPath)));
  assertEquals(config.agent.device_id, "pi-1");
  assertEquals(config.agent.labels, { site: "lab" });
  assertEquals(config.nats.servers, ["tls://nats.example:4222"]);
  // The config is the device's: its creds and state live where install.sh puts them.
  assertEquals(config.nats.creds, "/etc/drover/nats.creds");
  assertEquals(config.agent.state_dir, "/var/lib/drover");
  assertEquals(config.secrets?.key, "/etc/drover/sealing.xk");
  assertEquals(config.nats.tls_ca, "/etc/drover/ca.pem");

  await assertRejects(() => deviceAdd(dir.path, "pi-1"), DeviceExistsError);
  await assertRejects(() => deviceAdd(dir.path, "Pi.1"), AuthInputError, "device id");
  await assertRejects(
    () => deviceAdd(dir.path, "pi-2", { labels: { "bad key": "x" } }),
    AuthInputError,
    "--label",
  );
  await assertRejects(
    () => deviceAdd(dir.path, "pi-2", { servers: ["http://x"] }),
    AuthInputError,
    "--server",
  );
  await using empty = await tempDir("drover-auth-test-");
  await assertRejects(() => deviceAdd(empty.path, "pi-1"), AuthNotInitializedError, "auth init");
});

Deno.test("deviceRevoke: key revoked in a re-signed account, operator JWT unchanged, re-add gets a new key", async () => {
  await using dir = await tempDir("drover-auth-test-");
  const { confPath, devicesAccountPublicKey: accountPublicKey } = await authInit(dir.path);
  const before = confValues(await Deno.readTextFile(confPath));
  const first = await deviceAdd(dir.path, "pi-1");
  await deviceAdd(dir.path, "pi-2");

  const revoked = await deviceRevoke(dir.path, "pi-1");
  assert(revoked.changed);
  const after = confValues(await Deno.readTextFile(confPath));
  // nats-server cannot reload a changed operator: it must stay byte for byte.
  assertEquals(after.operator, before.operator);
  const account: Claims = decode(preloaded(after.preload, accountPublicKey));
  assertEquals(Object.keys(account.nats.revocations), [first.userPublicKey]);
  assert(account.nats.revocations[first.userPublicKey] >= Math.floor(Date.now() / 1000) - 5);
  await assertRejects(() => Deno.stat(first.credsPath), Deno.errors.NotFound);

  assertEquals(
    (await deviceList(dir.path)).map((d) => [d.id, d.revokedAt !== undefined]),
    [["pi-1", true], ["pi-2", false]],
  );
  assertEquals((await deviceRevoke(dir.path, "pi-1")).changed, false);
  await assertRejects(() => deviceRevoke(dir.path, "nope"), DeviceUnknownError);

  // The device's sealing key goes with its creds.
  await assertRejects(() => Deno.stat(first.sealingKeyPath), Deno.errors.NotFound);

  // Re-adding a revoked id issues a new key; the old one stays revoked.
  const second = await deviceAdd(dir.path, "pi-1");
  assert(second.userPublicKey !== first.userPublicKey);
  // And a new sealing key: re-provisioning rotates it (0600, public half in the registry).
  assert(second.sealingPublicKey !== first.sealingPublicKey);
  assertEquals((await Deno.stat(second.sealingKeyPath)).mode! & 0o777, 0o600);
  assertEquals(
    (await readDeviceRegistry(dir.path)).devices["pi-1"]?.sealing_public_key,
    second.sealingPublicKey,
  );
  await deviceRevoke(dir.path, "pi-2");
  const final: Claims = decode(
    preloaded(confValues(await Deno.readTextFile(confPath)).preload, accountPublicKey),
  );
  assert(first.userPublicKey in final.nats.revocations, "old pi-1 key still revoked");
  assert(!(second.userPublicKey in final.nats.revocations), "new pi-1 key valid");
});

Deno.test("an auth directory from before the devices' account is refused with what to do", async () => {
  await using dir = await tempDir("drover-auth-test-");
  await authInit(dir.path);
  const state = JSON.parse(await Deno.readTextFile(`${dir.path}/auth.json`));
  await Deno.writeTextFile(`${dir.path}/auth.json`, JSON.stringify({ ...state, version: 1 }));
  await assertRejects(() => deviceAdd(dir.path, "pi-1"), AuthFileInvalidError, "--force");
});

Deno.test("creds say whose they are: an agent with another device's creds, the CLI with a device's", async () => {
  await using dir = await tempDir("drover-auth-test-");
  await authInit(dir.path);
  const one = await deviceAdd(dir.path, "pi-1");
  await deviceAdd(dir.path, "pi-2");
  const text = (path: string) => Deno.readTextFile(path);
  assertEquals(credsIdentity(await text(one.credsPath)), { kind: "device", device: "pi-1" });
  assertEquals(credsIdentity(await text(`${dir.path}/operator.creds`)), { kind: "operator" });
  // The agent's config as device add wrote it, with its creds where the device keeps them, is
  // accepted (the control) …
  const withCreds = async (path: string, creds: string) => {
    await Deno.writeTextFile(
      path,
      (await text(one.configPath)).replaceAll(DEVICE_CREDS_PATH, creds),
    );
    return path;
  };
  const own = await withCreds(`${dir.path}/own.toml`, one.credsPath);
  assertEquals((await loadConfig(own)).agent.device_id, "pi-1");
  // … and with pi-2's creds it is refused at start, naming whose they are.
  const swapped = await withCreds(`${dir.path}/swapped.toml`, `${dir.path}/pi-2.creds`);
  const e = await assertRejects(() => loadConfig(swapped), ConfigError);
  assertEquals(e.problems[0]?.key, "nats.creds");
  assertStringIncludes(e.message, `device "pi-2"'s credentials, but agent.device_id is "pi-1"`);
  // An operator command with a device's creds is refused before it connects.
  const cli = await assertRejects(
    () => connectNats({ servers: ["nats://127.0.0.1:1"], creds: one.credsPath }, { name: "t" }),
    NatsConnectionError,
  );
  assertStringIncludes(cli.message, `holds device "pi-1"'s credentials`);
});
