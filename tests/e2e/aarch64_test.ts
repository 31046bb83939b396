/**
 * The aarch64 agent, proven without a Raspberry Pi: `deno task bundle` builds the agent as one
 * JavaScript file and fetches Deno for arm64 from npm; here that arm64 Deno runs the bundle
 * under qemu-aarch64-static (user-mode emulation of an arm64 CPU) against a real nats-server and
 * a real podman service, and reconciles a deployment end to end.
 *
 * Needs: qemu-user-static, libc6:arm64 and libgcc-s1:arm64 (scripts/prereqs.sh installs them),
 * and npm access for `@deno/linux-arm64-glibc` on the first run (cached afterwards).
 */

import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { startSnapshotService } from "../support/drover_nats.ts";
import {
  AgentStatus,
  BUCKET_AGENT_STATUS,
  BUCKET_DESIRED_STATE,
  decodeJson,
  type DesiredStateInput,
  desiredStateKey,
  statusKey,
} from "@drover/contracts";
import {
  buildBusyboxImage,
  fetchPublishedPort,
  freePort,
  startNats,
  startPodman,
  tempDir,
  waitFor,
} from "../support/mod.ts";
import { runCommand } from "../support/_exec.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { artifactPaths, bundleRunFlags } from "../../scripts/bundle.ts";
import { executableTarget, readAgentTask } from "../../scripts/compile.ts";
import { AGENT_VERSION } from "../../agent/version.ts";

const repoDir = new URL("../../", import.meta.url).pathname;
/** qemu starts the arm64 Deno in about 3 s; everything after that is emulated and slow. */
const EMULATED_TIMEOUT_MS = 180_000;
const DEVICE = "pi-emulated";

// Build the artifacts once for every test in this file, into a private dir (tests run in
// parallel; dist/ belongs to the user).
const artifactsDir = await Deno.makeTempDir({ prefix: "drover-aarch64-artifacts-" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(artifactsDir, { recursive: true });
  } catch {
    // Already gone.
  }
});
const artifacts = artifactPaths(artifactsDir);
const built = await runCommand(
  Deno.execPath(),
  ["run", "-A", `${repoDir}scripts/bundle.ts`, "--out-dir", artifactsDir],
  { cwd: repoDir },
);
if (built.code !== 0) {
  throw new Error(`deno task bundle failed (exit ${built.code}):\n${built.stdout}${built.stderr}`);
}
const agentTask = await readAgentTask(`${repoDir}deno.json`);

// The shipped launcher (dist/drover-agent.sh) runs "$DROVER_DENO run <flags> $DROVER_BUNDLE";
// on a Pi DROVER_DENO is the arm64 Deno itself, here a script that execs it under qemu (this
// machine has no binfmt_misc registration for arm64 executables). The agent's permissions are
// scoped to a device's paths (/etc/drover, /var/lib/drover, /run/podman/podman.sock); a test
// keeps its config, state and socket in temp dirs, so the script can add exactly those — what
// the agent's preflight asks for when a config points elsewhere.
async function writeEmulatedDeno(path: string, extraFlags: string[] = []): Promise<string> {
  const quoted = extraFlags.map((flag) => `'${flag}'`).join(" ");
  const script = extraFlags.length === 0
    ? `#!/bin/sh\nexec qemu-aarch64-static ${artifacts.arm64Deno} "$@"\n`
    : `#!/bin/sh\n# "$1" is "run"\nshift\nexec qemu-aarch64-static ${artifacts.arm64Deno} run ${quoted} "$@"\n`;
  await Deno.writeTextFile(path, script, { mode: 0o755 });
  return path;
}
const emulatedDeno = await writeEmulatedDeno(`${artifactsDir}/deno-aarch64-under-qemu`);

/** Runs the shipped launcher with `args`, on the emulated arm64 Deno. */
function emulatedAgent(args: string[], denoDir: string, deno = emulatedDeno): Deno.Command {
  return new Deno.Command(artifacts.launcher, {
    args,
    env: { DROVER_DENO: deno, DROVER_BUNDLE: artifacts.bundle, DENO_DIR: denoDir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

async function runEmulated(args: string[], denoDir: string) {
  const output = await emulatedAgent(args, denoDir).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

Deno.test("the bundle artifacts: an aarch64 Deno and a launcher with the agent's flags", async () => {
  assertEquals(await executableTarget(artifacts.arm64Deno), "aarch64-unknown-linux-gnu");
  const launcher = await Deno.readTextFile(artifacts.launcher);
  for (const flag of bundleRunFlags(agentTask)) assert(launcher.includes(flag), `${flag} missing`);
  const version = await runCommand("qemu-aarch64-static", [artifacts.arm64Deno, "--version"]);
  assertEquals(version.code, 0, version.stderr);
  assertMatch(version.stdout, new RegExp(`^deno ${Deno.version.deno} .*aarch64-unknown-linux-gnu`));
  // --help through the launcher, on this machine's Deno (emulation adds nothing to it).
  await using denoDir = await tempDir("drover-empty-deno-dir-");
  const help = await emulatedAgent(["--help"], denoDir.path, Deno.execPath()).output();
  const helpText = new TextDecoder().decode(help.stdout);
  assertEquals(help.code, 0, new TextDecoder().decode(help.stderr));
  assert(helpText.includes("--config"), `--help printed ${helpText}`);
});

Deno.test("the bundled agent answers --version on arm64 with an empty DENO_DIR", async () => {
  await using denoDir = await tempDir("drover-empty-deno-dir-");
  const version = await runEmulated(["--version"], denoDir.path);
  assertEquals(version.code, 0, version.stderr);
  assertEquals(version.stdout.trim(), AGENT_VERSION);
});

Deno.test({
  name:
    "the bundled agent on arm64 (qemu) reconciles a deployment from KV into a running container",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using nats = await startNats();
    await using podman = await startPodman();
    await using work = await tempDir("drover-aarch64-");
    const image = await buildBusyboxImage(podman, "localhost/drover-busybox:1");

    // The operator creates the buckets; here the test plays that part.
    const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1 });
    await using _closeNats = { [Symbol.asyncDispose]: () => nc.close() };
    const kvm = new Kvm(nc);
    const desired = await kvm.create(BUCKET_DESIRED_STATE, { history: 5 });
    const statuses = await kvm.create(BUCKET_AGENT_STATUS, { history: 1 });
    // Agents ask `operator serve` for their keys; here its snapshot service alone runs.
    await using _snapshots = await startSnapshotService(nc);

    const configPath = `${work.path}/agent.toml`;
    await Deno.writeTextFile(
      configPath,
      [
        "[agent]",
        `device_id = "${DEVICE}"`,
        `state_dir = "${work.path}/state"`,
        'labels = { arch = "arm64" }',
        "heartbeat_seconds = 2",
        "[nats]",
        `servers = ["${nats.url}"]`,
        "[podman]",
        `socket = "${podman.socket}"`,
        "",
      ].join("\n"),
    );
    const logPath = `${work.path}/agent.log`;
    const startedAt = performance.now();
    const deno = await writeEmulatedDeno(`${work.path}/deno-with-test-paths`, [
      `--allow-read=${work.path},${podman.socket}`,
      `--allow-write=${work.path},${podman.socket}`,
      `--allow-net=unix:${podman.socket}`,
    ]);
    const child = emulatedAgent(["--config", configPath], `${work.path}/deno-dir`, deno).spawn();
    const openLog = () => Deno.open(logPath, { create: true, append: true });
    const logged = Promise.all([
      child.stdout.pipeTo((await openLog()).writable),
      child.stderr.pipeTo((await openLog()).writable),
    ]);
    let exited = false;
    const status = child.status.then(async (s) => {
      exited = true;
      await logged;
      return s;
    });
    await using _stopAgent = {
      [Symbol.asyncDispose]: async () => {
        if (!exited) child.kill("SIGTERM");
        await status;
      },
    };
    const failWithLog = async (message: string) =>
      new Error(`${message}\n--- agent log ---\n${await Deno.readTextFile(logPath)}`);

    const hostPort = await freePort();
    const value: DesiredStateInput = {
      deployment: "hello",
      score: {
        type: "PodmanV0",
        services: [{
          name: "web",
          image,
          command: ["httpd", "-f", "-p", "8080", "-h", "/www"],
          ports: [`127.0.0.1:${hostPort}:8080`],
        }],
      },
    };
    const revision = await desired.put(desiredStateKey(DEVICE, "hello"), JSON.stringify(value));

    // Converged: the container serves, and the agent reports that revision running.
    try {
      await waitFor(async () => {
        if (exited) throw new Error("agent exited");
        const response = await fetchPublishedPort(hostPort);
        return response.ok && (await response.text()).includes("drover");
      }, { timeoutMs: EMULATED_TIMEOUT_MS, intervalMs: 500, message: "container serves its page" });
      await waitFor(async () => {
        const entry = await statuses.get(statusKey(DEVICE));
        if (!entry || entry.operation !== "PUT") return undefined;
        const decoded = decodeJson(AgentStatus, entry.value);
        if (!decoded.ok) throw new Error(decoded.error);
        const hello = decoded.value.deployments["hello"];
        return hello?.phase === "running" && hello.revision === revision;
      }, {
        timeoutMs: EMULATED_TIMEOUT_MS,
        intervalMs: 500,
        message: "status shows hello running",
      });
    } catch (error) {
      throw await failWithLog((error as Error).message);
    }
    console.log(
      `arm64 agent under qemu: deployment running ${
        ((performance.now() - startedAt) / 1000).toFixed(1)
      } s after the agent was started (emulated; for information only)`,
    );
    const listed = await podman.cli(["ps", "--filter", "label=drover.deployment=hello", "-q"]);
    assertEquals(listed.stdout.trim().split("\n").length, 1, "exactly one container");

    // And the other direction: deleting the key removes the container.
    await desired.delete(desiredStateKey(DEVICE, "hello"));
    try {
      await waitFor(async () => {
        const result = await podman.cli([
          "ps",
          "-a",
          "--filter",
          "label=drover.deployment=hello",
          "-q",
        ]);
        return result.code === 0 && result.stdout.trim() === "";
      }, { timeoutMs: EMULATED_TIMEOUT_MS, intervalMs: 500, message: "container removed" });
    } catch (error) {
      throw await failWithLog((error as Error).message);
    }

    // SIGTERM: the agent stops cleanly.
    child.kill("SIGTERM");
    const ended = await status;
    assertEquals(ended.code, 0, `agent exit after SIGTERM: ${JSON.stringify(ended)}`);
  },
});
