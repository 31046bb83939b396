/**
 * `deno task compile`: the permissions and entry come from the agent task, the runtime download
 * failure is recognised and explained, a full `deno` given as DENORT_BIN is refused, and — where
 * a denort runtime is available (DENORT_BIN, the DENO_DIR cache, or dl.deno.land reachable) —
 * the agent really compiles and its executable answers `--version`. Where no runtime can be had
 * (this project's machines), that last test is skipped with the reason printed, never passed.
 */

import {
  cachedRuntimePath,
  compileArgs,
  compileExcludes,
  downloadFailureDetail,
  elfTarget,
  executableTarget,
  findRuntime,
  hostTarget,
  isRuntimeDownloadFailure,
  natsAccessNote,
  parseAgentTask,
  parseCompileArgs,
  parseNatsHosts,
  probeRuntimeDownload,
  readAgentTask,
  splitCommandLine,
  type Target,
  TARGETS,
  withNatsHosts,
} from "../../scripts/compile.ts";
import { launcherScript } from "../../scripts/bundle.ts";
import { runCommand } from "../support/_exec.ts";
import { tempDir } from "../support/temp_dir.ts";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "../support/assert.ts";

const repoDir = new URL("../../", import.meta.url).pathname;
const compileScript = `${repoDir}scripts/compile.ts`;

/** Why the runtime for `target` cannot be had here, or undefined when it can. */
async function runtimeUnavailableReason(target: Target): Promise<string | undefined> {
  const source = await findRuntime(target);
  if (source === undefined) return `DENORT_BIN is a runtime for another target`;
  if (source.kind !== "download") return undefined;
  const probe = await probeRuntimeDownload(target);
  if (probe === true) return undefined;
  return `no DENORT_BIN, no cached ${cachedRuntimePath(target)}, and ${probe}`;
}

const unavailable: Record<Target, string | undefined> = {
  "x86_64-unknown-linux-gnu": await runtimeUnavailableReason("x86_64-unknown-linux-gnu"),
  "aarch64-unknown-linux-gnu": await runtimeUnavailableReason("aarch64-unknown-linux-gnu"),
};

Deno.test("splitCommandLine honours quotes", () => {
  assertEquals(splitCommandLine(`deno run --allow-read="/a b" 'x y' z`), [
    "deno",
    "run",
    "--allow-read=/a b",
    "x y",
    "z",
  ]);
});

Deno.test("parseAgentTask keeps permission and unstable flags and finds the entry", () => {
  const task = parseAgentTask(
    "deno run --allow-net --allow-read=/etc/drover,/var/lib/drover --unstable-net --quiet " +
      "agent/main.ts --config x",
  );
  assertEquals(task, {
    runtimeFlags: ["--allow-net", "--allow-read=/etc/drover,/var/lib/drover", "--unstable-net"],
    entry: "agent/main.ts",
  });
  assertThrows(() => parseAgentTask("deno run -A agent/main.ts"), Error, "grants all of them");
  assertThrows(() => parseAgentTask("node agent.js"), Error, 'as "deno run');
  assertEquals(parseAgentTask("deno run -A operator/main.ts", { allowAll: true }).runtimeFlags, [
    "-A",
  ]);
});

Deno.test("the agent task's permissions are what compile bakes in", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${repoDir}deno.json`));
  const task = await readAgentTask(`${repoDir}deno.json`);
  assertEquals(task.entry, "agent/main.ts");
  assert(task.runtimeFlags.length > 0, "the agent task lists no permissions");
  for (const flag of task.runtimeFlags.filter((f) => !f.startsWith("--unstable-"))) {
    assertStringIncludes(config.tasks.agent, flag);
  }
  for (const unstable of config.unstable ?? []) {
    assert(task.runtimeFlags.includes(`--unstable-${unstable}`), `--unstable-${unstable} missing`);
  }
  const args = compileArgs(task, "aarch64-unknown-linux-gnu", "dist/drover-agent-x", [
    "--frozen-lockfile",
  ]);
  assertEquals(args.slice(0, 7), [
    "compile",
    "--frozen-lockfile",
    "--no-remote",
    "--target",
    "aarch64-unknown-linux-gnu",
    "--output",
    "dist/drover-agent-x",
  ]);
  assertEquals(args.slice(7), [...task.runtimeFlags, "agent/main.ts"]);
});

Deno.test("elfTarget reads the architecture of real executables", async () => {
  assertEquals(await executableTarget(Deno.execPath()), hostTarget());
  // Installed with libc6:arm64 (scripts/prereqs.sh): a real aarch64 ELF on this machine.
  assertEquals(await executableTarget("/lib/ld-linux-aarch64.so.1"), "aarch64-unknown-linux-gnu");
  assertEquals(elfTarget(new TextEncoder().encode("#!/bin/sh\necho not an elf\n")), undefined);
});

Deno.test("parseCompileArgs defaults to every target, host first, and rejects unknown ones", () => {
  const all = parseCompileArgs([]);
  assert(typeof all === "object");
  assertEquals(all.targets[0], hostTarget());
  assertEquals([...all.targets].sort(), [...TARGETS].sort());
  assertEquals(parseCompileArgs(["--target", "aarch64-unknown-linux-gnu", "--out-dir", "/x"]), {
    targets: ["aarch64-unknown-linux-gnu"],
    outDir: "/x",
    natsHosts: [],
  });
  assertStringIncludes(String(parseCompileArgs(["--target", "riscv"])), "unknown target");
  const withNats = parseCompileArgs(["--allow-nats", "nats.example.com:4222,10.0.0.5"]);
  assert(typeof withNats === "object");
  assertEquals(withNats.natsHosts, ["nats.example.com:4222", "10.0.0.5"]);
  assertEquals(parseCompileArgs(["-h"]), "help");
});

Deno.test("a denort download failure is recognised", () => {
  // deno compile's stderr on a machine that cannot reach dl.deno.land (captured here).
  const stderr = [
    "Download https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip",
    "error: Writing deno compile executable to temporary file '/tmp/hi-bin.tmp-4af410cc2c94ddcd'",
    "",
    "Caused by:",
    "    0: Setting up base binary.",
    "    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known",
    "    2: client error (Connect)",
    "    3: dns error",
    "    4: failed to lookup address information: Name or service not known",
    "",
    "Stack backtrace:",
    "   0: <unknown>",
  ].join("\n");
  assert(isRuntimeDownloadFailure(stderr));
  assertEquals(
    downloadFailureDetail(stderr),
    "failed to lookup address information: Name or service not known",
  );
  assert(!isRuntimeDownloadFailure('error: Module not found "file:///x/agent/main.ts".'));
});

Deno.test({
  name: "compile fails with the explanation when the denort runtime cannot be downloaded",
  // The inverse condition of the real compile below: this runs exactly where that one skips.
  ignore: unavailable[hostTarget()] === undefined ||
    Deno.env.get("DENORT_BIN") !== undefined,
  async fn() {
    await using out = await tempDir("drover-compile-");
    const result = await runCommand(
      Deno.execPath(),
      ["run", "-A", compileScript, "--target", hostTarget(), "--out-dir", out.path],
      { cwd: repoDir },
    );
    assertEquals(result.code, 1, result.stdout + result.stderr);
    assertStringIncludes(result.stderr, "could not download it from dl.deno.land");
    assertStringIncludes(result.stderr, "DENORT_BIN=/path/to/denort");
    assertStringIncludes(result.stderr, "deno task bundle");
    assert(!result.stderr.includes("(<unknown>)"), "the download error detail was lost");
    const left = [];
    for await (const entry of Deno.readDir(out.path)) left.push(entry.name);
    assertEquals(left, [], "a failed compile left files behind");
  },
});

Deno.test("compile refuses a full deno given as DENORT_BIN (it would build a REPL)", async () => {
  await using out = await tempDir("drover-compile-");
  const result = await runCommand(
    Deno.execPath(),
    ["run", "-A", compileScript, "--target", hostTarget(), "--out-dir", out.path],
    { cwd: repoDir, env: { DENORT_BIN: Deno.execPath() } },
  );
  assertEquals(result.code, 1, result.stdout + result.stderr);
  assertStringIncludes(result.stderr, "runs as a plain Deno");
  assertStringIncludes(result.stderr, "DENORT_BIN must point at a denort runtime");
  const left = [];
  for await (const entry of Deno.readDir(out.path)) left.push(entry.name);
  assertEquals(left, [], "the unusable executable was left behind");
});

for (const target of TARGETS) {
  const reason = unavailable[target];
  if (reason) console.log(`skipping the real compile for ${target}: ${reason}`);
  Deno.test({
    name: `compile builds dist/drover-agent-${target} that answers --version`,
    ignore: reason !== undefined,
    async fn() {
      await using out = await tempDir("drover-compile-");
      const result = await runCommand(
        Deno.execPath(),
        ["run", "-A", compileScript, "--target", target, "--out-dir", out.path],
        { cwd: repoDir },
      );
      assertEquals(result.code, 0, result.stdout + result.stderr);
      const executable = `${out.path}/drover-agent-${target}`;
      assertEquals(await executableTarget(executable), target);
      assertStringIncludes(result.stdout, "--version checked");
    },
  });
}

Deno.test("--allow-nats widens only network access, for both artifacts", async () => {
  const task = await readAgentTask(`${repoDir}deno.json`);
  assertStringIncludes(natsAccessNote(task) ?? "", "--allow-nats");
  const widened = withNatsHosts(task, ["nats.example.com:4222"]);
  assertEquals(widened.runtimeFlags, [...task.runtimeFlags, "--allow-net=nats.example.com:4222"]);
  assertEquals(widened.entry, task.entry);
  assertStringIncludes(launcherScript(widened), " --allow-net=nats.example.com:4222 ");
  assertStringIncludes(String(parseNatsHosts("nats://x:4222")), "is not host[:port]");
  assertStringIncludes(String(parseNatsHosts("a b")), "is not host[:port]");
  assertEquals(parseNatsHosts("[::1]:4222"), ["[::1]:4222"]);
});

Deno.test("compile leaves out unused npm packages and the test data Deno 2.9.6 cannot compile", async () => {
  await using dir = await tempDir("drover-compile-lock-");
  const lock = `${dir.path}/deno.lock`;
  await Deno.writeTextFile(
    lock,
    JSON.stringify({ version: "5", npm: { "bintrees@1.0.2": {}, "zod@4.6.7": {} } }),
  );
  assertEquals(await compileExcludes(lock, "/cache/npm"), [
    "--exclude-unused-npm",
    "--exclude",
    "/cache/npm/registry.npmjs.org/bintrees/1.0.2/test",
  ]);
  assertEquals(await compileExcludes(`${dir.path}/missing.lock`, "/cache/npm"), [
    "--exclude-unused-npm",
  ]);
  // The real lock file names the bintrees the agent's metrics pull in.
  const real = await compileExcludes("deno.lock", "/cache/npm");
  assert(real.some((a) => /\/bintrees\/[^/]+\/test$/.test(a)), real.join(" "));
});
