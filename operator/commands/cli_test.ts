import { assertEquals, assertStringIncludes, assertThrows } from "../../tests/support/assert.ts";
import {
  EXIT,
  parseDuration,
  parseOptions,
  resolvePath,
  resolvePathOptions,
  UsageError,
} from "./cli.ts";
import { CONNECTION_OPTIONS, connectionSettings } from "./connection_options.ts";
import { main } from "../main.ts";
import { parseListen } from "./serve.ts";
import { captureIo } from "./_capture_io.ts";
import { parse } from "yaml";
import { DeploymentManifest } from "@drover/contracts";
import { tempDir } from "../../tests/support/mod.ts";

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

Deno.test("parseOptions: a negative number after an option is its value, not an option", () => {
  const options = {
    tail: { type: "string" as const, short: "n", description: "" },
    follow: { type: "boolean" as const, short: "f", description: "" },
  };
  assertEquals(parseOptions("logs", ["--tail", "-5", "a"], options).values.tail, "-5");
  assertEquals(parseOptions("logs", ["-n", "-1"], options).values.tail, "-1");
  assertEquals(parseOptions("logs", ["--", "-5"], options).positionals, ["-5"]);
  // A boolean takes no value: the number stays an (unknown) option.
  assertThrows(() => parseOptions("logs", ["-f", "-5"], options), UsageError);
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
  assertStringIncludes(c.err(), 'error: Unknown command "frobnicate"\n');
  c = captureIo();
  assertEquals(await main(["aply", "-f", "x.yaml"], c.io), EXIT.usage);
  assertStringIncludes(c.err(), 'error: Unknown command "aply"; did you mean "apply"?');
  c = captureIo();
  assertEquals(await main(["help", "rolout"], c.io), EXIT.usage);
  assertStringIncludes(c.err(), 'error: Unknown command "rolout"; did you mean "rollout"?');
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
    [["apply"], "Missing -f PATH"],
    [["apply", "-f", "x.yaml", "--timeout", "1m"], "--timeout only makes sense with --wait"],
    [["get"], "Missing what to get"],
    [["get", "pods"], 'Cannot get "pods"'],
    [["get", "devices", "-o", "xml"], 'Invalid output format "xml"'],
    [["delete"], "Missing deployment NAME"],
    [["status", "a", "b"], 'Unexpected argument "b"'],
    [["serve", "--listen", "nope"], "Invalid --listen"],
    [["serve", "--replicas", "0"], "Invalid --replicas"],
    [["diff"], "Missing -f PATH"],
    [["apply", "-f", "fleet", "--prune"], "--prune needs --source NAME"],
    [["diff", "-f", "fleet", "--prune"], "--prune needs --source NAME"],
    [["apply", "-f", "fleet", "--dry-run", "--wait"], "--dry-run cannot --wait"],
    [["logs"], "Missing DEVICE and DEPLOYMENT"],
    [["logs", "pi-a1"], 'Missing DEPLOYMENT (device "pi-a1" given): logs pi-a1 DEPLOYMENT'],
    [["logs", "-l", "site=home"], "Missing DEPLOYMENT (the devices by -l given)"],
    [["logs", "pi-a1", "web", "--tail", "-5"], "for the last 5 lines use --tail 5"],
    [["logs", "pi-a1", "web", "--tail", "five"], 'Invalid --tail "five"'],
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

Deno.test("diff: 1 means changes, so a failed diff exits 4; invalid input stays 3", async () => {
  const manifest = new URL("../../examples/hello.yaml", import.meta.url).pathname;
  const unreachable = captureIo({ NATS_URL: "nats://127.0.0.1:1" });
  assertEquals(await main(["diff", "-f", manifest], unreachable.io), EXIT.diffFailed);
  assertStringIncludes(unreachable.err(), "error: ");
  // The same failure is exit 1 for apply.
  const applied = captureIo({ NATS_URL: "nats://127.0.0.1:1" });
  assertEquals(await main(["apply", "-f", manifest, "--dry-run"], applied.io), EXIT.failed);
  const source = captureIo({ NATS_URL: "nats://127.0.0.1:1" });
  assertEquals(
    await main(["diff", "-f", manifest, "--source", "My Repo"], source.io),
    EXIT.invalid,
  );
  assertStringIncludes(source.err(), 'Invalid --source "My Repo"');
  const missing = captureIo({ NATS_URL: "nats://127.0.0.1:1" });
  assertEquals(await main(["diff", "-f", "/nonexistent/fleet"], missing.io), EXIT.invalid);
  assertStringIncludes(missing.err(), "Cannot read manifest /nonexistent/fleet:");
});

Deno.test("asCliError: each domain error gets its exit code; an unexpected one none", async () => {
  const { asCliError } = await import("./errors.ts");
  const { ManifestError } = await import("../manifests/file.ts");
  const { DeviceUnreachableError } = await import("../devices/requests.ts");
  const { ApiExposureError } = await import("../api/http.ts");
  const { NatsConnectionError } = await import("../nats/connection.ts");
  const seen = { text: "never", last_seen: null, online: null };
  const cases: [Error, number][] = [
    [new ManifestError("Invalid manifest a.yaml", ["name: required"]), EXIT.invalid],
    [new DeviceUnreachableError('Device "pi-1" did not answer', "pi-1", seen), EXIT.failed],
    [new ApiExposureError("Refusing to serve", ["set a token"]), EXIT.usage],
    [new NatsConnectionError("Cannot connect to NATS"), EXIT.failed],
  ];
  for (const [error, code] of cases) {
    const cli = asCliError(error);
    assertEquals([cli?.exitCode, cli?.message], [code, error.message], error.name);
  }
  assertEquals(asCliError(new ManifestError("m", ["d1"]))?.details, ["d1"]);
  assertEquals(asCliError(new TypeError("bug")), undefined);
});

Deno.test("convert: .env beside the file, the environment over it, warnings on stderr, exit 0", async () => {
  await using dir = await tempDir("drover-convert-");
  await Deno.writeTextFile(
    `${dir.path}/docker-compose.yml`,
    [
      "services:",
      "  web:",
      "    image: ${REGISTRY}/web:${TAG:-1}",
      "    environment: { MODE: '${MODE}', LEVEL: '${LEVEL}' }",
      "    container_name: web1",
      "",
    ].join("\n"),
  );
  await Deno.writeTextFile(`${dir.path}/.env`, "REGISTRY=registry.example.com\nMODE=from-dotenv\n");
  const { io, out, err } = captureIo({ MODE: "from-env" }, dir.path);
  const code = await main(["convert", "-f", "docker-compose.yml", "--selector", "site=lab"], io);
  assertEquals(code, 0, err());
  const manifest = DeploymentManifest.parse(parse(out()));
  const [web] = manifest.score.services;
  assertEquals(web?.image, "registry.example.com/web:1");
  assertEquals(web?.env, { MODE: "from-env", LEVEL: "" });
  assertEquals(manifest.selector, { labels: { site: "lab" } });
  assertStringIncludes(err(), "warning: ${LEVEL}: variable is not set");
  assertStringIncludes(err(), "warning: services.web.container_name: ");
  // The deployment name is the directory's, as compose's project name.
  assertEquals(
    manifest.name,
    dir.path.split("/").at(-1)?.toLowerCase().replace(/[^a-z0-9-]+/g, "-"),
  );
});

Deno.test("convert: exit 3 when nothing usable remains, 2 without -f, 3 on bad YAML", async () => {
  await using dir = await tempDir("drover-convert-");
  await Deno.writeTextFile(`${dir.path}/build.yml`, "services:\n  app:\n    build: .\n");
  await Deno.writeTextFile(`${dir.path}/bad.yml`, "services: [\n");
  const run = async (args: string[]) => {
    const c = captureIo({}, dir.path);
    return { code: await main(["convert", ...args], c.io), out: c.out(), err: c.err() };
  };
  const nothing = await run(["-f", "build.yml"]);
  assertEquals(nothing.code, 3);
  assertEquals(nothing.out, "");
  assertStringIncludes(nothing.err, "nothing usable remains");
  assertEquals((await run([])).code, 2);
  assertEquals((await run(["-f", "build.yml", "-o", "toml"])).code, 2);
  assertEquals((await run(["-f", "bad.yml"])).code, 3);
  assertEquals((await run(["-f", "missing.yml"])).code, 3);
});

Deno.test("logs -f: a container's end reads 'exited' whether podman has cleaned it up yet or not", async () => {
  const { followEnded } = await import("./logs.ts");
  assertEquals(followEnded("stopped", 3), "container exited with code 3; following stopped");
  assertEquals(followEnded("exited", 3), "container exited with code 3; following stopped");
  // Other states are said as they are.
  assertEquals(followEnded("paused", undefined), "container paused; following stopped");
  assertEquals(followEnded("gone", undefined), "container is gone; following stopped");
});
