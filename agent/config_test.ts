import { ConfigError, loadConfig, parseConfig } from "./config.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../tests/support/assert.ts";

const FILE = "/etc/drover/agent.toml";

Deno.test("a minimal config gets every default", () => {
  const config = parseConfig(FILE, '[agent]\ndevice_id = "pi-1"\n');
  assertEquals(config.agent.device_id, "pi-1");
  assertEquals(config.agent.heartbeat_seconds, 10);
  assertEquals(config.agent.state_dir, "/var/lib/drover");
  assertEquals(config.nats.servers, ["nats://127.0.0.1:4222"]);
  assertEquals(config.podman.socket, "/run/podman/podman.sock");
  assertEquals(config.registries, {});
});

Deno.test("a full config parses, including quoted registry hosts", () => {
  const config = parseConfig(
    FILE,
    `
[agent]
device_id = "pi-1"
labels = { site = "lab", arch = "arm64" }
heartbeat_seconds = 5
log_level = "debug"

[nats]
servers = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
user = "pi"
password = "secret"

[registries."127.0.0.1:5000"]
username = "u"
password = "p"
tls_verify = false

[policy]
allowed_registries = ["127.0.0.1:5000"]
max_containers = 4
`,
  );
  assertEquals(config.agent.labels, { site: "lab", arch: "arm64" });
  assertEquals(config.nats.servers.length, 2);
  assertEquals(config.registries["127.0.0.1:5000"]?.tls_verify, false);
  assertEquals(config.policy.max_containers, 4);
});

Deno.test("a wrong type names file, line and key", () => {
  const source = '# comment\n[agent]\ndevice_id = "pi-1"\n\nheartbeat_seconds = "ten"\n';
  const e = assertThrows(() => parseConfig(FILE, source), ConfigError);
  assertEquals(e.problems[0]?.line, 5);
  assertEquals(e.problems[0]?.key, "agent.heartbeat_seconds");
  assert(
    e.message.startsWith(`${FILE}:5: agent.heartbeat_seconds: `),
    `unexpected message: ${e.message}`,
  );
  assert(/number/.test(e.message), e.message);
});

Deno.test("unknown keys are named with their line, also in quoted tables", () => {
  const source = `[agent]
device_id = "pi-1"
heartbeat_secs = 3

[registries."127.0.0.1:5000"]
usename = "u"
`;
  const e = assertThrows(() => parseConfig(FILE, source), ConfigError);
  const byKey = new Map(e.problems.map((p) => [p.key, p]));
  assertEquals(byKey.get("agent.heartbeat_secs")?.line, 3);
  assertEquals(byKey.get('registries["127.0.0.1:5000"].usename')?.line, 6);
  assert(e.message.includes("unknown key"), e.message);
});

Deno.test("an unknown key comes with the key it likely misspells", () => {
  const source = `[agent]
device_id = "pi-1"
heartbeat_secs = 3

[registries."127.0.0.1:5000"]
usename = "u"

[nats]
servers = ["nats://127.0.0.1:4222"]
cred = "/etc/drover/pi.creds"
zzz = 1
`;
  const e = assertThrows(() => parseConfig(FILE, source), ConfigError);
  assertEquals(e.message.split("\n"), [
    `${FILE}:3: agent.heartbeat_secs: unknown key; did you mean "heartbeat_seconds"?`,
    `${FILE}:10: nats.cred: unknown key; did you mean "creds"?`,
    `${FILE}:11: nats.zzz: unknown key`,
    `${FILE}:6: registries["127.0.0.1:5000"].usename: unknown key; did you mean "username"?`,
  ]);
});

Deno.test("a missing required key points at its table", () => {
  const e = assertThrows(() => parseConfig(FILE, "\n[agent]\nlabels = {}\n"), ConfigError);
  assertEquals(e.problems[0]?.key, "agent.device_id");
  assertEquals(e.problems[0]?.line, 2);
  assertEquals(e.problems[0]?.message, "required");
});

Deno.test("an invalid device id is explained", () => {
  const e = assertThrows(() => parseConfig(FILE, '[agent]\ndevice_id = "Pi_1"\n'), ConfigError);
  assertEquals(e.problems[0]?.line, 2);
  assert(e.message.includes("agent.device_id"), e.message);
});

Deno.test("a key in a later table is located", () => {
  const e = assertThrows(
    () => parseConfig(FILE, '[agent]\ndevice_id = "pi-1"\n\n[nats]\ntls_ca = "relative.pem"\n'),
    ConfigError,
  );
  assertEquals(e.problems[0]?.key, "nats.tls_ca");
  assertEquals(e.problems[0]?.line, 5);
  assert(e.message.includes("absolute path"), e.message);
});

Deno.test("TOML syntax errors carry the line", () => {
  const e = assertThrows(
    () => parseConfig(FILE, '[agent]\ndevice_id = "pi-1"\nheartbeat_seconds = = 3\n'),
    ConfigError,
  );
  assertEquals(e.problems[0]?.line, 3);
  assert(e.message.startsWith(`${FILE}:3: invalid TOML`), e.message);
});

Deno.test("a missing file says so and names it", async () => {
  const e = await assertRejects(() => loadConfig("/nonexistent/agent.toml"), ConfigError);
  assert(e.message.startsWith("/nonexistent/agent.toml: cannot read config file"), e.message);
  assert(e.message.includes("not found"), e.message);
});

Deno.test("DROVER_LOG_LEVEL overrides the file and is validated", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/agent.toml`;
    await Deno.writeTextFile(path, '[agent]\ndevice_id = "pi-1"\nlog_level = "info"\n');
    const env = (level: string) => (n: string) => n === "DROVER_LOG_LEVEL" ? level : undefined;
    assertEquals((await loadConfig(path, env("DEBUG"))).agent.log_level, "debug");
    const e = await assertRejects(() => loadConfig(path, env("loud")), ConfigError);
    assert(e.message.includes("DROVER_LOG_LEVEL"), e.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unreadable creds file is a config error naming the key", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/agent.toml`;
    await Deno.writeTextFile(
      path,
      `[agent]\ndevice_id = "pi-1"\n[nats]\ncreds = "${dir}/missing.creds"\n`,
    );
    const e = await assertRejects(() => loadConfig(path), ConfigError);
    assertEquals(e.problems[0]?.key, "nats.creds");
    assertEquals(e.problems[0]?.line, 4);
    assert(e.message.includes("missing.creds"), e.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
