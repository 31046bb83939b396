import { assertEquals, assertStringIncludes, assertThrows } from "../../tests/support/assert.ts";
import {
  EXIT,
  parseDuration,
  parseOptions,
  resolvePath,
  resolvePathOptions,
  UsageError,
} from "./cli.ts";
import { CONNECTION_OPTIONS, connectionSettings } from "../nats/connection.ts";
import { main } from "../main.ts";
import { parseListen } from "./serve.ts";
import { captureIo } from "./_capture_io.ts";

Deno.test("parseOptions: values, short flags and positionals", () => {
  const parsed = parseOptions("apply", ["-f", "m.yaml", "--wait", "extra"], {
    file: { type: "string", short: "f", description: "" },
    wait: { type: "boolean", description: "" },
  });
  assertEquals(parsed.values.file, "m.yaml");
  assertEquals(parsed.values.wait, true);
  assertEquals(parsed.positionals, ["extra"]);
});

Deno.test("parseOptions: unknown option and missing value are usage errors", () => {
  const e = assertThrows(() => parseOptions("get", ["--bogus"], {}), UsageError, "--bogus");
  assertEquals(e.exitCode, EXIT.usage);
  assertEquals(e.command, "get");
  assertThrows(
    () => parseOptions("apply", ["-f"], { file: { type: "string", short: "f", description: "" } }),
    UsageError,
  );
});

Deno.test("parseDuration: units, combinations and bare seconds", () => {
  assertEquals(parseDuration("120s"), 120_000);
  assertEquals(parseDuration("2m"), 120_000);
  assertEquals(parseDuration("1h30m"), 5_400_000);
  assertEquals(parseDuration("500ms"), 500);
  assertEquals(parseDuration("1.5s"), 1500);
  assertEquals(parseDuration("90"), 90_000);
  assertEquals(parseDuration("90d"), 90 * 86_400_000);
  assertThrows(() => parseDuration("soon"), UsageError, "Invalid duration");
  assertThrows(() => parseDuration("10x"), UsageError);
  assertThrows(() => parseDuration(""), UsageError);
});

Deno.test("connectionSettings: flags win over the environment, defaults last", () => {
  assertEquals(connectionSettings({}, () => undefined).servers, ["nats://127.0.0.1:4222"]);
  const env: Record<string, string> = {
    NATS_URL: "nats://a:1,nats://b:2",
    NATS_CREDS: "/etc/x.creds",
    NATS_CA: "/ca.pem",
  };
  const fromEnv = connectionSettings({}, (n) => env[n]);
  assertEquals(fromEnv.servers, ["nats://a:1", "nats://b:2"]);
  assertEquals(fromEnv.creds, "/etc/x.creds");
  assertEquals(fromEnv.tlsCa, "/ca.pem");
  const flags = connectionSettings({ nats: "nats://c:3", creds: "/o.creds" }, (n) => env[n]);
  assertEquals(flags.servers, ["nats://c:3"]);
  assertEquals(flags.creds, "/o.creds");
});

Deno.test("connectionSettings: inconsistent auth options are usage errors", () => {
  assertThrows(() => connectionSettings({ password: "x" }, () => undefined), UsageError, "--user");
  assertThrows(
    () => connectionSettings({ "tls-cert": "/c.pem" }, () => undefined),
    UsageError,
    "--tls-key",
  );
});

Deno.test("parseListen: host:port, IPv6 in brackets, bad input", () => {
  assertEquals(parseListen("127.0.0.1:8080"), { hostname: "127.0.0.1", port: 8080 });
  assertEquals(parseListen("[::1]:9"), { hostname: "::1", port: 9 });
  assertThrows(() => parseListen("8080"), UsageError, "HOST:PORT");
  assertThrows(() => parseListen("h:99999"), UsageError);
});

Deno.test("main: help, version and exit codes", async () => {
  let c = captureIo();
  assertEquals(await main(["--help"], c.io), EXIT.ok);
  for (const name of ["apply", "delete", "get", "status", "serve"]) {
    assertStringIncludes(c.out(), name);
  }
  c = captureIo();
  assertEquals(await main([], c.io), EXIT.usage);
  c = captureIo();
  assertEquals(await main(["--version"], c.io), EXIT.ok);
  assertStringIncludes(c.out(), "drover-operator 0.");
  c = captureIo();
  assertEquals(await main(["frobnicate"], c.io), EXIT.usage);
  assertStringIncludes(c.err(), 'error: Unknown command "frobnicate"');
});

Deno.test("main: every command has --help with the connection options where it connects", async () => {
  for (const name of ["apply", "delete", "get", "status", "serve"]) {
    const c = captureIo();
    assertEquals(await main([name, "--help"], c.io), EXIT.ok);
    assertStringIncludes(c.out(), `Usage: drover-operator ${name}`);
    assertStringIncludes(c.out(), "--creds FILE");
    assertStringIncludes(c.out(), "Exit codes");
  }
});

Deno.test("main: usage errors exit 2 before any connection is tried", async () => {
  const cases: [string[], string][] = [
    [["apply"], "Missing -f FILE"],
    [["apply", "-f", "x.yaml", "--timeout", "1m"], "--timeout only makes sense with --wait"],
    [["get"], "Missing what to get"],
    [["get", "pods"], 'Cannot get "pods"'],
    [["get", "devices", "-o", "xml"], 'Invalid output format "xml"'],
    [["delete"], "Missing deployment NAME"],
    [["status", "a", "b"], 'Unexpected argument "b"'],
    [["serve", "--listen", "nope"], "Invalid --listen"],
    [["serve", "--replicas", "0"], "Invalid --replicas"],
  ];
  for (const [args, message] of cases) {
    // An unreachable server: reaching it would fail with exit 1, not 2.
    const c = captureIo({ NATS_URL: "nats://127.0.0.1:1" });
    assertEquals(await main(args, c.io), EXIT.usage, args.join(" "));
    assertStringIncludes(c.err(), message);
    assertStringIncludes(c.err(), "--help");
  }
});

Deno.test("main: invalid names exit 3", async () => {
  for (const command of ["delete", "status"]) {
    const c = captureIo({ NATS_URL: "nats://127.0.0.1:1" });
    assertEquals(await main([command, "Bad.Name"], c.io), EXIT.invalid);
    assertStringIncludes(c.err(), 'Invalid deployment name "Bad.Name"');
  }
});

Deno.test("main: unreachable NATS is an operation failure (exit 1) with one clear line", async () => {
  const c = captureIo({ NATS_URL: "nats://127.0.0.1:1" });
  assertEquals(await main(["get", "devices"], c.io), EXIT.failed);
  assertStringIncludes(c.err(), "error: Cannot connect to NATS at nats://127.0.0.1:1");
});

Deno.test("resolvePath: relative against the directory, absolute kept, dot segments removed", () => {
  assertEquals(resolvePath("hello.yaml", "/home/me/examples"), "/home/me/examples/hello.yaml");
  assertEquals(resolvePath("../keys/./op.creds", "/home/me/x"), "/home/me/keys/op.creds");
  assertEquals(resolvePath("/etc/drover//ca.pem", "/home/me"), "/etc/drover/ca.pem");
});

Deno.test("main resolves every path option and its environment variable against io.cwd", async () => {
  const { io, err } = captureIo({ NATS_CREDS: "env.creds", NATS_URL: "nats://127.0.0.1:1" });
  io.cwd = "/nonexistent/user-dir";
  assertEquals(await main(["apply", "-f", "hello.yaml"], io), EXIT.invalid);
  assertStringIncludes(err(), "Cannot read manifest /nonexistent/user-dir/hello.yaml:");
  // The connection options fail when connecting, after the (valid) manifest was read.
  const manifest = new URL("../../examples/hello.yaml", import.meta.url).pathname;
  const creds = captureIo({ NATS_CREDS: "env.creds" });
  creds.io.cwd = "/nonexistent/user-dir";
  assertEquals(await main(["apply", "-f", manifest], creds.io), EXIT.failed);
  assertStringIncludes(
    creds.err(),
    "Cannot read credentials file /nonexistent/user-dir/env.creds:",
  );
  assertEquals(
    resolvePathOptions(
      { "tls-ca": "ca.pem", "tls-cert": "c.pem", "tls-key": "k.pem", dir: "keys", file: "-" },
      {
        ...CONNECTION_OPTIONS,
        dir: { type: "string", description: "", path: {} },
        file: { type: "string", description: "", path: {} },
      },
      "/u",
    ),
    {
      "tls-ca": "/u/ca.pem",
      "tls-cert": "/u/c.pem",
      "tls-key": "/u/k.pem",
      dir: "/u/keys",
      file: "-",
    },
  );
});
