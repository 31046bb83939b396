import { EXIT, parseArgs, statusLine, USAGE } from "./main.ts";
import { DEFAULT_CONFIG_PATH } from "./config.ts";
import { AGENT_VERSION } from "./version.ts";
import { assert, assertEquals } from "../tests/support/assert.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

async function runMain(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("parseArgs", () => {
  assertEquals(parseArgs([]), { kind: "run", configPath: DEFAULT_CONFIG_PATH });
  assertEquals(parseArgs(["--config", "/x.toml"]), { kind: "run", configPath: "/x.toml" });
  assertEquals(parseArgs(["-c", "/x.toml"]), { kind: "run", configPath: "/x.toml" });
  assertEquals(parseArgs(["--config=/x.toml"]), { kind: "run", configPath: "/x.toml" });
  assertEquals(parseArgs(["--help"]), { kind: "help" });
  assertEquals(parseArgs(["-V"]), { kind: "version" });
  assertEquals(parseArgs(["--config"]).kind, "usage-error");
  assertEquals(parseArgs(["--bogus"]).kind, "usage-error");
  assertEquals(parseArgs(["-c/x.toml"]), { kind: "run", configPath: "/x.toml" });
  assertEquals(parseArgs(["--config", "/a.toml", "-c", "/b.toml"]), {
    kind: "run",
    configPath: "/b.toml",
  });
  assertEquals(parseArgs(["--config", "--help"]), {
    kind: "usage-error",
    message: "--config needs a file path",
  });
  assertEquals(parseArgs(["--config="]).kind, "usage-error");
  assertEquals(parseArgs(["extra"]), { kind: "usage-error", message: 'unknown argument "extra"' });
  assertEquals(parseArgs(["-V", "--help"]), { kind: "help" });
});

Deno.test("--version and --help print and exit 0; the usage names every option parseArgs accepts", async () => {
  const version = await runMain(["--version"]);
  assertEquals(version.code, 0);
  assertEquals(version.stdout.trim(), AGENT_VERSION);
  const help = await runMain(["--help"]);
  assertEquals(help.code, 0);
  assertEquals(help.stdout.trim(), USAGE.trim());
  for (const option of ["--config", "-c", "--version", "-V", "--help", "-h"]) {
    assert(USAGE.includes(option), `usage mentions ${option}`);
  }
});

Deno.test("a usage error exits 2", async () => {
  const r = await runMain(["--frobnicate"]);
  assertEquals(r.code, EXIT.usage);
  assert(r.stderr.includes('"--frobnicate"'), r.stderr);
});

Deno.test("a bad config exits 78 naming file, line and key", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/agent.toml`;
    await Deno.writeTextFile(
      path,
      `[agent]\ndevice_id = "pi-1"\nstate_dir = "${dir}/state"\nheartbeat_seconds = "often"\n`,
    );
    const r = await runMain(["--config", path]);
    assertEquals(r.code, EXIT.config);
    assert(r.stderr.includes(`${path}:4: agent.heartbeat_seconds:`), r.stderr);
    const missing = await runMain(["--config", `${dir}/nope.toml`]);
    assertEquals(missing.code, EXIT.config);
    assert(missing.stderr.includes(`${dir}/nope.toml: cannot read config file`), missing.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("statusLine summarises the device for systemd", () => {
  assertEquals(statusLine("ready", {}), "ready: 0 deployments");
  assertEquals(
    statusLine("degraded", {
      a: { phase: "running" },
      b: { phase: "failed" },
      c: { phase: "pending" },
    }),
    "degraded: 3 deployments, 1 failed, 1 in progress",
  );
});
