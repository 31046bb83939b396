/**
 * Agent self-update end to end: real nats-server (Drover's accounts: the
 * device reaches releases only through drover.artifact.<id>), real podman, the
 * real agent, the real launcher (systemd/drover-agent-launch) under a
 * supervisor with systemd's Restart=always semantics (tests/support/
 * supervisor.ts — a stand-in: no systemd runs here), and the operator's real
 * artifact service and publish code.
 *
 * The "artifacts" are small launcher scripts that exec `deno run` on the
 * agent's source (or crash): a compiled executable cannot be built here
 * because `deno compile` needs the denort runtime from dl.deno.land, which
 * this machine cannot download. What is updated, verified, staged, switched
 * and rolled back is the same either way: a file in the release store.
 */

import { connectDevice } from "../support/drover_nats.ts";
import { runCommand } from "../support/_exec.ts";
import { tempDir } from "../support/temp_dir.ts";
import { assert, assertEquals, assertExists, assertStringIncludes } from "../support/assert.ts";
import { RestartAlwaysSupervisor } from "../support/supervisor.ts";
import { AGENT_MAIN } from "../support/agent_process.ts";
import { sleepDeployment, startAgentEnv, waitFor } from "./_agent_harness.ts";
import {
  ArtifactService,
  openReleaseStores,
  publishRelease,
  setWantedVersion,
} from "../../operator/devices/artifacts.ts";
import { createReleaseKey } from "../../operator/auth/release_key.ts";
import { verifyRelease } from "../../agent/update/verify.ts";
import { type AgentStatus, ARTIFACT_CHUNK_BYTES, artifactSubject } from "@drover/contracts";

const LAUNCHER = new URL("../../systemd/drover-agent-launch", import.meta.url).pathname;
const UNIT = new URL("../../systemd/drover-agent.service", import.meta.url).pathname;

// --- The launcher alone: every power-cut point leaves a device that starts a working agent ------

/** An update dir with fake agents that print which release they are. */
async function launcherFixture(dir: string) {
  const update = `${dir}/agent`;
  const factory = `${dir}/factory-agent`;
  await Deno.mkdir(`${update}/versions`, { recursive: true });
  await Deno.writeTextFile(factory, '#!/bin/sh\necho "ran $DROVER_AGENT_RELEASE $*"\n', {
    mode: 0o755,
  });
  const release = async (version: string) => {
    await Deno.mkdir(`${update}/versions/${version}`, { recursive: true });
    await Deno.writeTextFile(
      `${update}/versions/${version}/drover-agent`,
      '#!/bin/sh\necho "ran $DROVER_AGENT_RELEASE $*"\n',
      { mode: 0o755 },
    );
  };
  const launch = async () => {
    const result = await runCommand("sh", [LAUNCHER, "--config", "/x.toml"], {
      env: { DROVER_UPDATE_DIR: update, DROVER_FACTORY_AGENT: factory, DROVER_UPDATE_TRIES: "3" },
    });
    assertEquals(result.code, 0, result.stderr);
    return result.stdout.trim();
  };
  const read = async (name: string) => {
    try {
      return (await Deno.readTextFile(`${update}/${name}`)).trim();
    } catch {
      return undefined;
    }
  };
  const write = (name: string, text: string) => Deno.writeTextFile(`${update}/${name}`, text);
  return { update, release, launch, read, write };
}

Deno.test("launcher: nothing updated yet starts the installed agent", async () => {
  await using dir = await tempDir("drover-launch-");
  const f = await launcherFixture(dir.path);
  assertEquals(await f.launch(), "ran factory --config /x.toml");
});

Deno.test("launcher: staged but not switched (power cut before the marker) runs the old release", async () => {
  await using dir = await tempDir("drover-launch-");
  const f = await launcherFixture(dir.path);
  await f.release("1.0.0");
  await f.release("2.0.0");
  await f.write("current", "1.0.0\n");
  assertEquals(await f.launch(), "ran 1.0.0 --config /x.toml");
});

Deno.test("launcher: marker written but not switched (power cut) discards the marker", async () => {
  await using dir = await tempDir("drover-launch-");
  const f = await launcherFixture(dir.path);
  await f.release("1.0.0");
  await f.release("2.0.0");
  await f.write("current", "1.0.0\n");
  await f.write("trial", "2.0.0 1.0.0 0\n");
  assertEquals(await f.launch(), "ran 1.0.0 --config /x.toml");
  assertEquals(await f.read("trial"), undefined);
});

Deno.test("launcher: a release on trial gets 3 counted starts, then the previous one comes back", async () => {
  await using dir = await tempDir("drover-launch-");
  const f = await launcherFixture(dir.path);
  await f.release("1.0.0");
  await f.release("2.0.0");
  await f.write("trial", "2.0.0 1.0.0 0\n");
  await f.write("current", "2.0.0\n");
  for (let start = 1; start <= 3; start++) {
    assertEquals(await f.launch(), "ran 2.0.0 --config /x.toml");
    assertEquals(await f.read("trial"), `2.0.0 1.0.0 ${start}`);
  }
  assertEquals(await f.launch(), "ran 1.0.0 --config /x.toml");
  assertEquals(await f.read("current"), "1.0.0");
  assertEquals(await f.read("trial"), undefined);
  assertStringIncludes((await f.read("rolled-back"))!, "2.0.0 did not start successfully in 3");
});

Deno.test("launcher: a release that crashes on trial is rolled back with its last stderr line", async () => {
  await using dir = await tempDir("drover-launch-");
  const f = await launcherFixture(dir.path);
  await f.release("1.0.0");
  await Deno.mkdir(`${f.update}/versions/2.0.0`, { recursive: true });
  await Deno.writeTextFile(
    `${f.update}/versions/2.0.0/drover-agent`,
    '#!/bin/sh\necho "starting" >&2\necho "error: Cannot find module config.ts" >&2\nexit 1\n',
    { mode: 0o755 },
  );
  await f.write("trial", "2.0.0 1.0.0 0\n");
  await f.write("current", "2.0.0\n");
  for (let start = 1; start <= 3; start++) {
    const crashed = await runCommand("sh", [LAUNCHER], {
      env: { DROVER_UPDATE_DIR: f.update, DROVER_FACTORY_AGENT: "/nonexistent" },
    });
    assertEquals(crashed.code, 1);
    // The release's stderr still reaches the journal, line by line.
    assertStringIncludes(crashed.stderr, "starting\nerror: Cannot find module config.ts\n");
  }
  assertEquals(await f.launch(), "ran 1.0.0 --config /x.toml");
  assertEquals(
    await f.read("rolled-back"),
    "2.0.0 did not start successfully in 3 attempts (crashed, or exited before it committed); " +
      "its last stderr line: error: Cannot find module config.ts",
  );
  assertEquals(await f.read("trial-stderr"), undefined);
});

Deno.test("launcher: a trial that gave up is rolled back at once, with the agent's reason", async () => {
  await using dir = await tempDir("drover-launch-");
  const f = await launcherFixture(dir.path);
  await f.release("2.0.0");
  await f.write("trial", "2.0.0 factory 9007199254740991\n");
  await f.write("trial-failure", "release 2.0.0 did not connect within 30 s\n");
  await f.write("current", "2.0.0\n");
  assertEquals(await f.launch(), "ran factory --config /x.toml");
  assertEquals(await f.read("current"), undefined);
  assertEquals(await f.read("rolled-back"), "2.0.0 release 2.0.0 did not connect within 30 s");
  assertEquals(await f.read("trial-failure"), undefined);
});

Deno.test("launcher: a rollback cut short at any step completes on the next start", async () => {
  await using dir = await tempDir("drover-launch-");
  const f = await launcherFixture(dir.path);
  await f.release("1.0.0");
  await f.release("2.0.0");
  // Cut after "rolled-back" was written, before the switch: the count is still exhausted.
  await f.write("trial", "2.0.0 1.0.0 3\n");
  await f.write("current", "2.0.0\n");
  await f.write("rolled-back", "2.0.0 crashed\n");
  assertEquals(await f.launch(), "ran 1.0.0 --config /x.toml");
  // Cut after the switch, before the marker was removed: the marker is stale.
  await f.write("trial", "2.0.0 1.0.0 3\n");
  assertEquals(await f.launch(), "ran 1.0.0 --config /x.toml");
  assertEquals(await f.read("trial"), undefined);
  assertEquals(await f.read("current"), "1.0.0");
});

Deno.test("launcher: a missing release falls back to the installed agent and is recorded", async () => {
  await using dir = await tempDir("drover-launch-");
  const f = await launcherFixture(dir.path);
  await f.write("current", "3.0.0\n");
  assertEquals(await f.launch(), "ran factory --config /x.toml");
  assertStringIncludes((await f.read("rolled-back"))!, "3.0.0 its files are missing");
  assertEquals(await f.read("current"), undefined);
});

Deno.test("drover-agent.service with the real launcher passes systemd-analyze verify", async () => {
  await using dir = await tempDir("drover-unit-");
  const unit = (await Deno.readTextFile(UNIT)).replace(
    "ExecStart=/usr/local/lib/drover/drover-agent-launch ",
    `ExecStart=${LAUNCHER} `,
  );
  assertStringIncludes(unit, `ExecStart=${LAUNCHER} --config`);
  await Deno.writeTextFile(`${dir.path}/drover-agent.service`, unit);
  const result = await runCommand("systemd-analyze", [
    "verify",
    `${dir.path}/drover-agent.service`,
  ]);
  assertEquals(result.code, 0, `verify failed:\n${result.stderr}`);
  assertEquals(result.stderr.trim(), "", `verify warned:\n${result.stderr}`);
});

// --- Signatures ---------------------------------------------------------------------------------

Deno.test("a release signed by the operator's key verifies; another key or a changed manifest does not", async () => {
  await using dir = await tempDir("drover-release-key-");
  const key = await createReleaseKey(`${dir.path}/a`);
  const other = await createReleaseKey(`${dir.path}/b`);
  const { signRelease } = await import("../../operator/auth/release_key.ts");
  const manifest = {
    version: "1.2.3",
    arch: "x86_64" as const,
    kind: "executable" as const,
    size: 3,
    sha256: "a".repeat(64),
    published_at: new Date().toISOString(),
  };
  const signed = await signRelease(key.privateKey, manifest);
  assertEquals(
    await verifyRelease(key.publicKey, signed, { version: "1.2.3", arch: "x86_64" }),
    manifest,
  );
  const refused = async (publicKey: string, s: typeof signed, version = "1.2.3") => {
    try {
      await verifyRelease(publicKey, s, { version, arch: "x86_64" });
      return "accepted";
    } catch (e) {
      return (e as Error).message;
    }
  };
  assertStringIncludes(await refused(other.publicKey, signed), "signature does not verify");
  const tampered = { ...signed, manifest: signed.manifest.replace('"size":3', '"size":4') };
  assertStringIncludes(await refused(key.publicKey, tampered), "signature does not verify");
  // A validly signed manifest of another version is not accepted in its place.
  assertStringIncludes(await refused(key.publicKey, signed, "9.9.9"), "is for 1.2.3");
});

// --- The whole update under the supervisor ------------------------------------------------------

const REPO = new URL("../../", import.meta.url).pathname;

function agentScript(padBytes = 0, options: { task?: boolean } = {}): string {
  // The padding makes the artifact span several chunks (resumable download).
  const pad = padBytes > 0 ? `# ${"x".repeat(padBytes)}\n` : "";
  // With `task`: the agent task's narrow Deno permissions (what compile/bundle bake in, plus
  // what the config names), so the updater is shown to work without -A.
  const run = options.task
    ? `cd "${REPO}" && INIT_CWD="${REPO}" exec "${Deno.execPath()}" task agent "$@"`
    : `exec "${Deno.execPath()}" run -A "${AGENT_MAIN}" "$@"`;
  return `#!/bin/sh\n${pad}${run}\n`;
}

Deno.test({
  name:
    "self-update: good update, crash rolled back, bad signature refused, interrupted download resumed — workloads untouched",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using keys = await tempDir("drover-release-keys-");
    const key = await createReleaseKey(keys.path);
    const evil = await createReleaseKey(`${keys.path}/evil`);
    await using env = await startAgentEnv({
      extraToml:
        `[update]\nrelease_key = "${key.publicKey}"\ncheck_seconds = 1\ntrial_seconds = 40\n`,
    });
    const nc = await env.nc();
    // Hold chunk answers on demand, to cut a download at a known offset.
    let hold: {
      atOffset: number;
      reached: PromiseWithResolvers<void>;
      release: PromiseWithResolvers<void>;
    } | undefined;
    const offsets: number[] = [];
    const artifacts = new ArtifactService(nc, {
      beforeChunk: async (_device, offset) => {
        offsets.push(offset);
        if (hold !== undefined && offset >= hold.atOffset) {
          hold.reached.resolve();
          await hold.release.promise;
        }
      },
    });
    await artifacts.start();
    const { releases, updates } = await openReleaseStores(nc);
    const update = `${env.dir.path}/state/agent`;
    const factory = `${env.dir.path}/factory-agent`;
    await Deno.writeTextFile(factory, agentScript(), { mode: 0o755 });

    await using supervisor = RestartAlwaysSupervisor.start({
      execStart: { command: "sh", args: [LAUNCHER, "--config", env.configPath] },
      env: {
        DROVER_UPDATE_DIR: update,
        DROVER_FACTORY_AGENT: factory,
        DROVER_UPDATE_TRIES: "3",
        DROVER_LOG_LEVEL: "debug",
        NO_COLOR: "1",
      },
      restartMs: 300,
      logPath: `${env.dir.path}/supervised.log`,
    });
    const logs = async () => await Deno.readTextFile(`${env.dir.path}/supervised.log`);
    const waitUpdate = async (
      check: (s: AgentStatus) => boolean,
      message: string,
      timeoutMs = 90_000,
    ) =>
      await waitFor(async () => {
        const s = await env.status();
        return s !== undefined && check(s) ? s : undefined;
      }, { timeoutMs, message: `${message} (logs: ${env.dir.path}/supervised.log)` });

    await env.putDesired("work", sleepDeployment("work"));
    await env.waitForDeployment("work", (d) => d.phase === "running", "workload runs");
    const before = (await env.containersOf("work"))[0];
    assertExists(before, "work has a container");
    assertEquals(before?.State, "running");
    const startedBefore = await startedAt(env, before.Id);
    const firstStatus = await waitUpdate(
      (s) => s.update?.running === "factory" && s.update.phase === "idle",
      "the installed agent reports itself",
    );
    assertEquals(firstStatus.update?.wanted, undefined);

    const publish = async (
      version: string,
      script: string,
      signingKey = key.privateKey,
      rollback = false,
    ) =>
      await publishRelease(releases, {
        bytes: new TextEncoder().encode(script),
        version,
        arch: Deno.build.arch === "aarch64" ? "aarch64" : "x86_64",
        kind: "executable",
        signingKey,
        rollback,
      });

    await t.step("a good release is downloaded, started on trial and committed", async () => {
      const manifest = await publish(
        "1.1.0",
        agentScript(3 * ARTIFACT_CHUNK_BYTES, { task: true }),
      );
      assert(manifest.size > 3 * ARTIFACT_CHUNK_BYTES);
      const startsBefore = supervisor.starts;
      await setWantedVersion(updates, env.deviceId, "1.1.0");
      const s = await waitUpdate(
        (s) => s.update?.running === "1.1.0" && s.update.phase === "idle",
        "the agent runs 1.1.0 and committed it",
      );
      assertEquals(s.update?.wanted, "1.1.0");
      assertEquals(supervisor.starts, startsBefore + 1, "one restart into the new release");
      assertEquals((await Deno.readTextFile(`${update}/current`)).trim(), "1.1.0");
      await assertMissing(`${update}/trial`);
      assertEquals(await dirNames(`${update}/versions`), ["1.1.0"]);
      assertStringIncludes(await logs(), "starting release 1.1.0 on trial (start 1 of 3)");
    });

    await t.step(
      "a release that crashes at start is rolled back by the launcher and reported",
      async () => {
        await publish("1.2.0", '#!/bin/sh\necho "1.2.0: crashing at start" >&2\nexit 3\n');
        const startsBefore = supervisor.starts;
        await setWantedVersion(updates, env.deviceId, "1.2.0");
        const s = await waitUpdate(
          (s) => s.update?.phase === "failed" && s.update.wanted === "1.2.0",
          "the failed update is reported",
        );
        assertEquals(s.update?.running, "1.1.0");
        assertStringIncludes(s.update?.message ?? "", "release 1.2.0 was rolled back");
        assertStringIncludes(s.update?.message ?? "", "did not start successfully in 3 attempts");
        // What the release said before dying, kept by the launcher, reaches the operator.
        assertStringIncludes(
          s.update?.message ?? "",
          "its last stderr line: 1.2.0: crashing at start",
        );
        // Restart into 1.2.0, its 3 counted starts, the rollback start: 1.1.0 again.
        assert(
          supervisor.starts >= startsBefore + 4,
          `starts: ${supervisor.starts - startsBefore}`,
        );
        assertEquals(supervisor.runs.filter((r) => r.code === 3).length, 3);
        assertEquals((await Deno.readTextFile(`${update}/current`)).trim(), "1.1.0");
        assertStringIncludes(await logs(), "rolled back release 1.2.0 to 1.1.0");
        // It does not try the same version again: three more checks, no new start.
        const startsAfter = supervisor.starts;
        const asked = artifacts.targetsAnswered;
        await waitFor(() => artifacts.targetsAnswered >= asked + 3, {
          timeoutMs: 20_000,
          message: "the agent keeps checking",
        });
        assertEquals(supervisor.starts, startsAfter);
        assertEquals(await dirNames(`${update}/versions`), ["1.1.0"], "1.2.0's files are gone");
      },
    );

    await t.step(
      "a release signed with another key is refused before anything is downloaded",
      async () => {
        await publish("1.3.0", agentScript(), evil.privateKey);
        const served = artifacts.chunksServed;
        await setWantedVersion(updates, env.deviceId, "1.3.0");
        const s = await waitUpdate(
          (s) => s.update?.phase === "failed" && s.update.wanted === "1.3.0",
          "the bad signature is reported",
        );
        assertStringIncludes(
          s.update?.message ?? "",
          "signature does not verify with [update] release_key",
        );
        assertEquals(s.update?.running, "1.1.0");
        assertEquals(artifacts.chunksServed, served, "no chunk was requested");
        assertEquals(await dirNames(`${update}/versions`), ["1.1.0"]);
      },
    );

    await t.step("a download cut by a crash resumes from where the file ends", async () => {
      const manifest = await publish("1.4.0", agentScript(5 * ARTIFACT_CHUNK_BYTES));
      hold = {
        atOffset: 3 * ARTIFACT_CHUNK_BYTES,
        reached: Promise.withResolvers(),
        release: Promise.withResolvers(),
      };
      offsets.length = 0;
      await setWantedVersion(updates, env.deviceId, "1.4.0");
      await hold.reached.promise;
      const part = `${update}/download/1.4.0-${
        Deno.build.arch === "aarch64" ? "aarch64" : "x86_64"
      }.part`;
      assertEquals((await Deno.stat(part)).size, 3 * ARTIFACT_CHUNK_BYTES);
      await supervisor.killCurrent();
      const heldOffsets = offsets.length;
      hold.release.resolve();
      hold = undefined;
      const s = await waitUpdate(
        (s) => s.update?.running === "1.4.0" && s.update.phase === "idle",
        "the agent runs 1.4.0 after resuming",
      );
      assertEquals(s.update?.size, undefined);
      const after = offsets.slice(heldOffsets);
      assertEquals(after[0], 3 * ARTIFACT_CHUNK_BYTES, `resumed at ${after[0]}, not from 0`);
      assert(!after.includes(0), "nothing was downloaded twice");
      assertEquals(await dirNames(`${update}/versions`), ["1.4.0"]);
      await assertMissing(part);
      assert(manifest.size > 5 * ARTIFACT_CHUNK_BYTES);
    });

    await t.step(
      "a release that cannot connect gives up at its trial deadline and is rolled back",
      async () => {
        // The same agent, pointed at a NATS server that is not there: it starts, reconciles
        // from its cache, but never stores a status.
        const offline = `${env.dir.path}/offline.toml`;
        await Deno.writeTextFile(
          offline,
          (await Deno.readTextFile(env.configPath))
            .replaceAll(env.nats.url, "nats://127.0.0.1:1")
            .replace("trial_seconds = 40", "trial_seconds = 3"),
        );
        const script =
          `#!/bin/sh\nexec "${Deno.execPath()}" run -A "${AGENT_MAIN}" --config "${offline}"\n`;
        await publish("1.5.0", script);
        const startsBefore = supervisor.starts;
        await setWantedVersion(updates, env.deviceId, "1.5.0");
        const s = await waitUpdate(
          (s) => s.update?.phase === "failed" && s.update.wanted === "1.5.0",
          "the failed trial is reported by the previous release",
        );
        assertEquals(s.update?.running, "1.4.0");
        assertStringIncludes(
          s.update?.message ?? "",
          "release 1.5.0 was rolled back: release 1.5.0 did not connect, reconcile and report within 3 s",
        );
        // Into 1.5.0 once (it gives up itself), then straight back: no counted retries.
        assertEquals(supervisor.starts, startsBefore + 2);
        assertEquals((await Deno.readTextFile(`${update}/current`)).trim(), "1.4.0");
      },
    );

    await t.step(
      "an older release is refused unless signed as a rollback (the positive control)",
      async () => {
        // Validly signed, but older than the running 1.4.0: what a stolen operator identity
        // could put back to reopen a fixed hole.
        await publish("1.1.5", agentScript());
        await setWantedVersion(updates, env.deviceId, "1.1.5");
        const s = await waitUpdate(
          (s) => s.update?.phase === "failed" && s.update.wanted === "1.1.5",
          "the downgrade is refused",
        );
        assertEquals(s.update?.running, "1.4.0");
        assertStringIncludes(
          s.update?.message ?? "",
          "release 1.1.5 refused: it is older than the running 1.4.0 and not signed as a rollback",
        );
        await assertMissing(`${update}/versions/1.1.5`);
        await publish("1.1.6", agentScript(), key.privateKey, true);
        await setWantedVersion(updates, env.deviceId, "1.1.6");
        await waitUpdate(
          (s) => s.update?.running === "1.1.6" && s.update.phase === "idle",
          "a release signed as a rollback is run",
        );
      },
    );

    await t.step("the workload ran on throughout: same container, never restarted", async () => {
      const now = (await env.containersOf("work"))[0];
      assertExists(now, "work still has a container");
      assertEquals(now?.Id, before?.Id);
      assertEquals(now?.State, "running");
      assertEquals(await startedAt(env, now.Id), startedBefore, "never restarted");
    });

    await t.step("a device may ask only its own artifact subject", async () => {
      const other = await connectDevice(env.nats.url, env.deviceId);
      try {
        const errors: string[] = [];
        (async () => {
          for await (const s of other.status()) {
            if (s.type === "error") errors.push(String(s.error));
          }
        })();
        other.publish(artifactSubject("someone-else"), "{}");
        await other.flush();
        await waitFor(() => errors.some((e) => e.includes("Permissions Violation")), {
          timeoutMs: 5_000,
          message: "the server refuses a publish on another device's artifact subject",
        });
      } finally {
        await other.close();
      }
    });

    await supervisor.stop();
    await artifacts[Symbol.asyncDispose]();
  },
});

async function dirNames(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

async function assertMissing(path: string): Promise<void> {
  try {
    await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  throw new Error(`${path} should not exist`);
}

async function startedAt(
  env: { podman: { cli(args: string[]): Promise<{ stdout: string }> } },
  id: string,
): Promise<string> {
  return (await env.podman.cli(["inspect", "--format", "{{.State.StartedAt}}", id])).stdout.trim();
}

Deno.test("auth init creates the release key (0600); device add writes its public half into the TOML", async () => {
  const { authInit, deviceAdd, readReleaseKey } = await import("../../operator/auth/mod.ts");
  await using dir = await tempDir("drover-auth-release-");
  await authInit(`${dir.path}/auth`);
  assertEquals((await Deno.stat(`${dir.path}/auth/release.key`)).mode! & 0o777, 0o600);
  const key = await readReleaseKey(`${dir.path}/auth`);
  assertEquals((await Deno.readTextFile(`${dir.path}/auth/release.pub`)).trim(), key.publicKey);
  const added = await deviceAdd(`${dir.path}/auth`, "pi-9", {});
  const toml = await Deno.readTextFile(added.configPath);
  assertStringIncludes(toml, `[update]\nrelease_key = "${key.publicKey}"`);
  // An auth dir from before releases existed: a clear error, or the key made on request.
  await Deno.remove(`${dir.path}/auth/release.key`);
  let message = "";
  await readReleaseKey(`${dir.path}/auth`).catch((e) => message = e.message);
  assertStringIncludes(message, "has no release key yet");
  assertStringIncludes(message, "--create-key");
  const created = await readReleaseKey(`${dir.path}/auth`, { create: true });
  assert(created.created && created.publicKey !== key.publicKey);
});

Deno.test({
  name:
    "operator CLI: agent publish and agent rollout --wait through operator serve; a failed rollout exits 1 naming the device",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { runOperatorCli, startOperatorService } = await import(
      "../support/operator_process.ts"
    );
    const { freePort } = await import("../support/ports.ts");
    const { ADMIN_USER } = await import("../support/drover_nats.ts");
    await using keys = await tempDir("drover-release-keys-");
    const key = await createReleaseKey(keys.path);
    await using env = await startAgentEnv({
      extraToml: `[update]\nrelease_key = "${key.publicKey}"\ncheck_seconds = 1\n`,
    });
    const login = ["--user", ADMIN_USER.user, "--password", ADMIN_USER.password];
    await using _serve = await startOperatorService(env.nats.url, await freePort(), login);
    const cli = (args: string[]) => runOperatorCli(env.nats.url, [...args, ...login]);
    const factory = `${env.dir.path}/factory-agent`;
    await Deno.writeTextFile(factory, agentScript(), { mode: 0o755 });
    await using _supervisor = RestartAlwaysSupervisor.start({
      execStart: { command: "sh", args: [LAUNCHER, "--config", env.configPath] },
      env: {
        DROVER_UPDATE_DIR: `${env.dir.path}/state/agent`,
        DROVER_FACTORY_AGENT: factory,
        NO_COLOR: "1",
      },
      restartMs: 300,
      logPath: `${env.dir.path}/supervised.log`,
    });
    const arch = Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";

    await Deno.writeTextFile(`${env.dir.path}/good.sh`, agentScript());
    const published = await cli([
      "agent",
      "publish",
      `${env.dir.path}/good.sh`,
      "--version",
      "2.0.0",
      "--arch",
      arch,
      "--dir",
      keys.path,
    ]);
    assertEquals(published.code, 0, published.stderr);
    assertStringIncludes(published.stdout, `published agent 2.0.0 for ${arch} (executable`);

    const rollout = await cli([
      "agent",
      "rollout",
      "--version",
      "2.0.0",
      "--device",
      env.deviceId,
      "--wait",
      "--timeout",
      "90s",
    ]);
    assertEquals(rollout.code, 0, `${rollout.stdout}\n${rollout.stderr}`);
    assertStringIncludes(rollout.stdout, `${env.deviceId}: running agent 2.0.0`);
    const devices = await cli(["get", "devices"]);
    assertEquals(devices.code, 0, devices.stderr);
    assertStringIncludes(devices.stdout, "AGENT");
    assertMatchLine(devices.stdout, env.deviceId, " 2.0.0 ");

    await Deno.writeTextFile(`${env.dir.path}/crash.sh`, "#!/bin/sh\nexit 3\n");
    const crash = await cli([
      "agent",
      "publish",
      `${env.dir.path}/crash.sh`,
      "--version",
      "2.1.0",
      "--arch",
      arch,
      "--dir",
      keys.path,
    ]);
    assertEquals(crash.code, 0, crash.stderr);
    const failed = await cli([
      "agent",
      "rollout",
      "--version",
      "2.1.0",
      "--device",
      env.deviceId,
      "--batch-size",
      "1",
      "--timeout",
      "90s",
    ]);
    assertEquals(failed.code, 1, `${failed.stdout}\n${failed.stderr}`);
    assertStringIncludes(failed.stderr, `${env.deviceId}: release 2.1.0 was rolled back`);
    const after = await cli(["get", "devices"]);
    assertMatchLine(after.stdout, env.deviceId, "2.0.0 (2.1.0 failed)");

    const missing = await cli(["agent", "rollout", "--version", "9.9.9", "--device", "pi-1"]);
    assertEquals(missing.code, 1);
    assertStringIncludes(missing.stderr, "Release 9.9.9 was never published");
  },
});

function assertMatchLine(text: string, start: string, part: string): void {
  const line = text.split("\n").find((l) => l.startsWith(start)) ?? "";
  assertStringIncludes(line, part);
}

Deno.test({
  name:
    "with real JWT creds a device reaches the artifact service for itself only, and gets only its wanted release",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { startSecureNats } = await import("./_security_env.ts");
    const { readReleaseKey } = await import("../../operator/auth/mod.ts");
    const { ARTIFACT_ERROR_HEADER, ArtifactTargetReply } = await import("@drover/contracts");
    await using secure = await startSecureNats({ devices: { "pi-a": {}, "pi-b": {} } });
    const operator = await secure.operator();
    const service = new ArtifactService(operator);
    await service.start();
    const device = await secure.device("pi-a");
    try {
      const { releases, updates } = await openReleaseStores(operator);
      const key = await readReleaseKey(secure.authDir.path);
      const bytes = new TextEncoder().encode("#!/bin/sh\nexit 0\n");
      await publishRelease(releases, {
        bytes,
        version: "3.0.0",
        arch: "aarch64",
        kind: "executable",
        signingKey: key.privateKey,
      });
      await publishRelease(releases, {
        bytes,
        version: "3.1.0",
        arch: "aarch64",
        kind: "executable",
        signingKey: key.privateKey,
      });
      const ask = (body: unknown, subject = artifactSubject("pi-a")) =>
        device.request(subject, JSON.stringify(body), { timeout: 5_000 });

      const none = ArtifactTargetReply.parse((await ask({ op: "target", arch: "aarch64" })).json());
      assertEquals(none, { version: null });
      await setWantedVersion(updates, "pi-a", "3.0.0");
      const target = ArtifactTargetReply.parse(
        (await ask({ op: "target", arch: "aarch64" })).json(),
      );
      assert("release" in target);
      // The manifest verifies with the auth dir's key, as the agent checks it.
      const manifest = await verifyRelease(key.publicKey, target.release, {
        version: "3.0.0",
        arch: "aarch64",
      });
      const chunk = await ask({ op: "chunk", version: "3.0.0", arch: "aarch64", offset: 0 });
      assertEquals(new TextDecoder().decode(chunk.data), new TextDecoder().decode(bytes));
      assertEquals(manifest.size, bytes.length);
      // Published, but not the one wanted for this device: refused.
      const other = await ask({ op: "chunk", version: "3.1.0", arch: "aarch64", offset: 0 });
      assertStringIncludes(other.headers?.get(ARTIFACT_ERROR_HEADER) ?? "", "not the one wanted");
      // Another device's subject: the server refuses the publish (no responder can be reached).
      let refused = "";
      await ask({ op: "target", arch: "aarch64" }, artifactSubject("pi-b")).catch((e) =>
        refused = String(e?.message ?? e)
      );
      assert(refused !== "", "a request on pi-b's subject must fail");
    } finally {
      await device.close();
      await service[Symbol.asyncDispose]();
      await operator.close();
    }
  },
});
