/**
 * The systemd units and the installer: units pass `systemd-analyze verify` once their executables
 * exist, the agent unit keeps its hardening, and systemd/install.sh installs into a scratch root
 * with the right modes and enablement links, idempotently.
 */

import { runCommand } from "../support/_exec.ts";
import { tempDir } from "../support/temp_dir.ts";
import { parse as parseToml } from "smol-toml";
import { AgentConfig } from "@drover/contracts";
import { authInit, deviceAdd } from "../../operator/auth/mod.ts";
import {
  assert,
  assertEquals,
  assertExists,
  assertMatch,
  assertStringIncludes,
} from "../support/assert.ts";

const systemdDir = new URL("../../systemd/", import.meta.url).pathname;
const repoDir = new URL("../../", import.meta.url).pathname;
const installSh = `${systemdDir}install.sh`;
// ExecStart is the self-update launcher, which execs the agent (systemd/drover-agent-launch).
const AGENT_EXEC = "/usr/local/lib/drover/drover-agent-launch";

/** The unit's `Key=value` lines (continuations joined), in order; comments dropped. */
function unitDirectives(text: string): Array<[string, string]> {
  const joined = text.replace(/\\\n\s*/g, " ");
  return joined.split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#") && !line.startsWith("["))
    .map((line) => {
      const eq = line.indexOf("=");
      return [line.slice(0, eq), line.slice(eq + 1)] as [string, string];
    });
}

function directive(text: string, key: string): string[] {
  return unitDirectives(text).filter(([k]) => k === key).map(([, v]) => v);
}

/** Copies the agent unit into `dir` with ExecStart pointing at a real executable there. */
async function renderAgentUnit(dir: string): Promise<string> {
  const executable = `${dir}/drover-agent`;
  await Deno.symlink(Deno.execPath(), executable);
  const unit = await Deno.readTextFile(`${systemdDir}drover-agent.service`);
  assertStringIncludes(unit, `ExecStart=${AGENT_EXEC} `);
  const path = `${dir}/drover-agent.service`;
  await Deno.writeTextFile(
    path,
    unit.replace(`ExecStart=${AGENT_EXEC} `, `ExecStart=${executable} `),
  );
  return path;
}

Deno.test("drover-agent.service passes systemd-analyze verify with a real executable", async () => {
  await using dir = await tempDir("drover-unit-");
  const unitPath = await renderAgentUnit(dir.path);
  const result = await runCommand("systemd-analyze", ["verify", unitPath]);
  assertEquals(result.code, 0, `verify failed:\n${result.stderr}`);
  assertEquals(result.stderr.trim(), "", `verify warned:\n${result.stderr}`);
});

Deno.test("systemd-analyze verify rejects the unit when its executable is missing", async () => {
  // The control for the test above: verify really looks at ExecStart (the as-shipped unit names
  // /usr/local/lib/drover/drover-agent-launch, which does not exist on a build machine).
  await using dir = await tempDir("drover-unit-");
  const path = `${dir.path}/drover-agent.service`;
  const unit = await Deno.readTextFile(`${systemdDir}drover-agent.service`);
  await Deno.writeTextFile(path, unit.replace(AGENT_EXEC, `${dir.path}/missing-agent`));
  const result = await runCommand("systemd-analyze", ["verify", path]);
  assert(result.code !== 0, "verify accepted a unit whose ExecStart does not exist");
  assertStringIncludes(result.stderr, "missing-agent");
});

Deno.test("drover-agent.service keeps its service contract and hardening", async () => {
  const unit = await Deno.readTextFile(`${systemdDir}drover-agent.service`);
  const expected: Record<string, string> = {
    Type: "notify",
    NotifyAccess: "main",
    WatchdogSec: "30",
    Restart: "always",
    StartLimitIntervalSec: "0",
    ExecStart: `${AGENT_EXEC} --config /etc/drover/agent.toml`,
    StateDirectory: "drover",
    ReadWritePaths: "/var/lib/drover",
    CapabilityBoundingSet: "",
    NoNewPrivileges: "yes",
    ProtectSystem: "strict",
    ProtectHome: "yes",
    PrivateTmp: "yes",
    ProtectKernelTunables: "yes",
    ProtectKernelModules: "yes",
    ProtectControlGroups: "yes",
    RestrictAddressFamilies: "AF_UNIX AF_INET AF_INET6",
    RestrictNamespaces: "yes",
    LockPersonality: "yes",
    MemoryDenyWriteExecute: "no",
  };
  for (const [key, value] of Object.entries(expected)) {
    assertEquals(directive(unit, key), [value], `${key}=`);
  }
  assertEquals(directive(unit, "Wants"), ["network-online.target podman.socket"]);
  assertEquals(directive(unit, "After"), ["network-online.target podman.socket"]);
  assertEquals(directive(unit, "Requires"), [], "podman.socket must be a soft dependency");
  assert(directive(unit, "SystemCallFilter").includes("@system-service"));
  // Every ReadWritePaths entry is the state dir: nothing else on the system is writable.
  assertEquals(directive(unit, "ReadWritePaths").join(" ").split(/\s+/), ["/var/lib/drover"]);
});

Deno.test("systemd-analyze security rates the agent unit's exposure as low", async () => {
  await using dir = await tempDir("drover-unit-");
  const unitPath = await renderAgentUnit(dir.path);
  const result = await runCommand("systemd-analyze", ["security", "--offline=yes", unitPath]);
  const level = /Overall exposure level for drover-agent\.service: ([0-9.]+)/.exec(result.stdout);
  assert(level, `no exposure level in:\n${result.stdout}\n${result.stderr}`);
  const exposure = Number(level[1]);
  console.log(`systemd-analyze security: exposure ${exposure} (0 = most restricted, 10 = none)`);
  // 2.0 is systemd's upper bound for "OK"; the V8 JIT (W+X) and uid 0 keep it above 0.
  assert(exposure <= 2.0, `exposure ${exposure} is above 2.0:\n${result.stdout}`);
});

Deno.test("drover-operator.service passes systemd-analyze verify", async () => {
  const result = await runCommand("systemd-analyze", [
    "verify",
    `${systemdDir}drover-operator.service`,
  ]);
  assertEquals(result.code, 0, `verify failed:\n${result.stderr}`);
  assertEquals(result.stderr.trim(), "", `verify warned:\n${result.stderr}`);
});

Deno.test("the operator units run the same container command", async () => {
  // The Quadlet file cannot be verified here (podman 4.3 has no Quadlet generator), so check that
  // it and the plain service agree on image, command and confinement.
  const quadlet = await Deno.readTextFile(`${systemdDir}drover-operator.container`);
  const service = await Deno.readTextFile(`${systemdDir}drover-operator.service`);
  const execStart = directive(service, "ExecStart")[0];
  const [image] = directive(quadlet, "Image");
  const [command] = directive(quadlet, "Exec");
  assertStringIncludes(execStart, ` ${image} ${command}`);
  assertEquals(directive(quadlet, "Network"), ["host"]);
  assertStringIncludes(execStart, "--network host");
  assertEquals(directive(quadlet, "DropCapability"), ["ALL"]);
  assertStringIncludes(execStart, "--cap-drop all");
  assertEquals(directive(quadlet, "ReadOnly"), ["true"]);
  assertStringIncludes(execStart, "--read-only");
});

async function install(args: string[]) {
  return await runCommand("bash", [installSh, ...args]);
}

async function mode(path: string): Promise<string> {
  return ((await Deno.stat(path)).mode! & 0o777).toString(8);
}

Deno.test("install.sh --root installs files with safe modes and enables the units, idempotently", async () => {
  await using root = await tempDir("drover-root-");
  await using work = await tempDir("drover-install-");
  // A root with podman installed, so podman.socket can be enabled inside it.
  await Deno.mkdir(`${root.path}/usr/lib/systemd/system`, { recursive: true });
  await Deno.writeTextFile(
    `${root.path}/usr/lib/systemd/system/podman.socket`,
    "[Socket]\nListenStream=%t/podman/podman.sock\n[Install]\nWantedBy=sockets.target\n",
  );
  const binary = `${work.path}/drover-agent-x86_64-unknown-linux-gnu`;
  await Deno.writeTextFile(binary, "#!/bin/sh\necho agent v1\n", { mode: 0o755 });

  const first = await install(["--root", root.path, "--binary", binary]);
  assertEquals(first.code, 0, first.stderr);
  assertStringIncludes(first.stdout, "Installed the example config");
  const r = root.path;
  assertEquals(
    await Deno.readTextFile(`${r}/usr/local/bin/drover-agent`),
    "#!/bin/sh\necho agent v1\n",
  );
  assertEquals(await mode(`${r}/usr/local/bin/drover-agent`), "755");
  assertEquals(await mode(`${r}/etc/drover`), "700");
  assertEquals(await mode(`${r}/etc/drover/agent.toml`), "600");
  assertEquals(
    await Deno.readTextFile(`${r}/etc/drover/agent.toml`),
    await Deno.readTextFile(`${repoDir}examples/agent.toml`),
  );
  assertEquals(
    await Deno.readTextFile(`${r}/etc/systemd/system/drover-agent.service`),
    await Deno.readTextFile(`${systemdDir}drover-agent.service`),
  );
  assertEquals(
    await Deno.readLink(`${r}/etc/systemd/system/multi-user.target.wants/drover-agent.service`),
    "/etc/systemd/system/drover-agent.service",
  );
  assertEquals(
    await Deno.readLink(`${r}/etc/systemd/system/sockets.target.wants/podman.socket`),
    "/usr/lib/systemd/system/podman.socket",
  );

  // A hand-edited config survives a re-run (an upgrade of the executable).
  await Deno.writeTextFile(`${r}/etc/drover/agent.toml`, "# edited by hand\n");
  await Deno.writeTextFile(binary, "#!/bin/sh\necho agent v2\n");
  const second = await install(["--root", r, "--binary", binary]);
  assertEquals(second.code, 0, second.stderr);
  assertStringIncludes(second.stdout, "keeping existing");
  assertEquals(await Deno.readTextFile(`${r}/etc/drover/agent.toml`), "# edited by hand\n");
  assertEquals(
    await Deno.readTextFile(`${r}/usr/local/bin/drover-agent`),
    "#!/bin/sh\necho agent v2\n",
  );
  assertEquals(await mode(`${r}/etc/drover`), "700");
  const leftovers = [];
  for await (const entry of Deno.readDir(`${r}/usr/local/bin`)) leftovers.push(entry.name);
  assertEquals(leftovers, ["drover-agent"], "temp files left behind");

  // --config replaces it, still 0600.
  const config = `${work.path}/agent.toml`;
  await Deno.writeTextFile(config, '[agent]\ndevice_id = "pi-1"\n');
  const third = await install(["--root", r, "--binary", binary, "--config", config]);
  assertEquals(third.code, 0, third.stderr);
  assertEquals(
    await Deno.readTextFile(`${r}/etc/drover/agent.toml`),
    '[agent]\ndevice_id = "pi-1"\n',
  );
  assertEquals(await mode(`${r}/etc/drover/agent.toml`), "600");
});

Deno.test("install.sh installs device add's config, creds and sealing key where the config says they are", async () => {
  await using root = await tempDir("drover-root-");
  await using work = await tempDir("drover-install-");
  const binary = `${work.path}/drover-agent`;
  await Deno.writeTextFile(binary, "#!/bin/sh\n", { mode: 0o755 });
  await authInit(`${work.path}/auth`);
  const added = await deviceAdd(`${work.path}/auth`, "pi-7", { labels: { site: "lab" } });
  const args = ["--root", root.path, "--binary", binary, "--config", added.configPath];
  const installed = await install([
    ...args,
    "--creds",
    added.credsPath,
    "--sealing-key",
    added.sealingKeyPath,
  ]);
  assertEquals(installed.code, 0, installed.stderr);
  const config = AgentConfig.parse(
    parseToml(await Deno.readTextFile(`${root.path}/etc/drover/agent.toml`)),
  );
  // The device's paths, not the operator's auth directory.
  assertEquals(config.nats.creds, "/etc/drover/nats.creds");
  assertEquals(config.agent.state_dir, "/var/lib/drover");
  assertEquals(
    await Deno.readTextFile(`${root.path}${config.nats.creds}`),
    await Deno.readTextFile(added.credsPath),
  );
  assertEquals(await mode(`${root.path}${config.nats.creds}`), "600");
  assertEquals(config.secrets?.key, "/etc/drover/sealing.xk");
  assertEquals(
    await Deno.readTextFile(`${root.path}${config.secrets?.key}`),
    await Deno.readTextFile(added.sealingKeyPath),
  );
  assertEquals(await mode(`${root.path}${config.secrets?.key}`), "600");
  const missing = await install([...args, "--creds", `${work.path}/nope.creds`]);
  assertEquals(missing.code, 1);
  assertStringIncludes(missing.stderr, "Cannot install --creds");
  const noKey = await install([...args, "--sealing-key", `${work.path}/nope.xk`]);
  assertEquals(noKey.code, 1);
  assertStringIncludes(noKey.stderr, "Cannot install --sealing-key");
});

Deno.test("install.sh --bundle installs the bundle, the Deno runtime and the launcher", async () => {
  await using root = await tempDir("drover-root-");
  await using bundle = await tempDir("drover-bundle-");
  await Deno.writeTextFile(`${bundle.path}/drover-agent.bundle.js`, "console.log('agent');\n");
  await Deno.writeTextFile(`${bundle.path}/drover-agent.sh`, "#!/bin/sh\n", { mode: 0o755 });
  await Deno.writeTextFile(`${bundle.path}/deno-aarch64`, "arm64 deno", { mode: 0o755 });
  const result = await install([
    "--root",
    root.path,
    "--bundle",
    bundle.path,
    "--deno",
    `${bundle.path}/deno-aarch64`,
  ]);
  assertEquals(result.code, 0, result.stderr);
  assertStringIncludes(result.stderr, "podman.socket not found");
  const lib = `${root.path}/usr/local/lib/drover`;
  assertEquals(await Deno.readTextFile(`${lib}/deno`), "arm64 deno");
  assertEquals(await mode(`${lib}/deno`), "755");
  assertEquals(await Deno.readTextFile(`${lib}/drover-agent.bundle.js`), "console.log('agent');\n");
  assertEquals(await Deno.readTextFile(`${root.path}/usr/local/bin/drover-agent`), "#!/bin/sh\n");
});

Deno.test("install.sh explains bad usage and changes nothing on --dry-run", async () => {
  const help = await install(["--help"]);
  assertEquals(help.code, 0);
  assertStringIncludes(help.stdout, "Usage: install.sh");
  const unknown = await install(["--frobnicate"]);
  assertEquals(unknown.code, 2);
  assertStringIncludes(unknown.stderr, "unknown option: --frobnicate");
  const missing = await install(["--dry-run", "--binary", "/nonexistent/drover-agent"]);
  assertEquals(missing.code, 1);
  assertStringIncludes(missing.stderr, "Cannot install --binary /nonexistent/drover-agent");

  await using root = await tempDir("drover-root-");
  const dry = await install(["--dry-run", "--root", root.path, "--binary", Deno.execPath()]);
  assertEquals(dry.code, 0, dry.stderr);
  assertMatch(dry.stdout, /^\+ install -m 0755 .*drover-agent\.new$/m);
  assertStringIncludes(dry.stdout, "Dry run: nothing was changed.");
  const entries = [];
  for await (const entry of Deno.readDir(root.path)) entries.push(entry.name);
  assertEquals(entries, [], "dry run wrote into the root");
});

Deno.test("install.sh passes shellcheck", {
  ignore: !(await isInstalled("shellcheck")),
}, async () => {
  const result = await runCommand("shellcheck", [installSh]);
  assertEquals(result.code, 0, result.stdout);
});

async function isInstalled(command: string): Promise<boolean> {
  const found = (await runCommand("sh", ["-c", `command -v ${command}`])).code === 0;
  if (!found) console.log(`skipping: ${command} is not installed (apt-get install ${command})`);
  return found;
}

/** Runs `command` as the hardened unit would: uid 0, no capabilities, `roDir` mounted read-only. */
async function runConfined(roDir: string, command: string[], uid = 0) {
  const script = `mount --bind -o ro "$1" "$1" && shift && exec "$@"`;
  return await runCommand("unshare", [
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    script,
    "sh",
    roDir,
    "setpriv",
    ...(uid === 0 ? [] : [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups"]),
    "--bounding-set=-all",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--no-new-privs",
    "--",
    ...command,
  ]);
}

const canUnshare = (await runCommand("unshare", ["--mount", "true"])).code === 0;
if (!canUnshare) {
  console.log("skipping the confinement test: unshare --mount is not permitted here");
}

Deno.test({
  name: "the unit's confinement still reaches podman: uid 0, no capabilities, read-only socket dir",
  ignore: !canUnshare,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { startPodman } = await import("../support/mod.ts");
    await using podman = await startPodman();
    // podman.socket creates the socket root:root 0660 (SocketMode=0660); mirror that.
    await Deno.chmod(podman.socket, 0o660);
    // A raw HTTP/1.0 request over the socket with this Deno (no curl needed); prints the reply
    // or the connect error.
    const probe = `
      try {
        const conn = await Deno.connect({ transport: "unix", path: ${
      JSON.stringify(podman.socket)
    } });
        await conn.write(new TextEncoder().encode("GET /v4.0.0/libpod/_ping HTTP/1.0\\r\\n\\r\\n"));
        console.log(await new Response(conn.readable).text());
      } catch (e) {
        console.error(String(e));
        Deno.exit(1);
      }`;
    await using denoDir = await tempDir("drover-probe-deno-dir-");
    await Deno.chmod(denoDir.path, 0o777); // also used by the non-root control below
    // The non-root control must be able to execute Deno, wherever it was installed: a Deno from
    // `npx` lives under /root (0700), which uid 65534 cannot enter. A copy in a world-readable
    // temp dir keeps the control's failure about the socket, not about the executable.
    await using denoBin = await tempDir("drover-probe-deno-bin-");
    await Deno.chmod(denoBin.path, 0o755);
    const deno = `${denoBin.path}/deno`;
    await Deno.copyFile(Deno.execPath(), deno);
    await Deno.chmod(deno, 0o755);
    const ping = ["env", `DENO_DIR=${denoDir.path}`, deno, "eval", probe];
    const allowed = await runConfined(podman.dir, ping);
    assertEquals(allowed.code, 0, allowed.stderr);
    assertMatch(allowed.stdout, /^HTTP\/1\.[01] 200 OK\r\n[\s\S]*\r\n\r\nOK\n?$/);
    // Controls: the mount really is read-only, and permissions really are enforced (another
    // uid is refused), so the success above is owner permission, not an open door.
    const write = await runConfined(podman.dir, ["touch", `${podman.dir}/write-probe`]);
    assert(write.code !== 0, "the directory was writable");
    assertStringIncludes(write.stderr, "Read-only file system");
    const nobody = await runConfined(podman.dir, ping, 65534);
    assert(nobody.code !== 0, "a non-root uid reached the root-only socket");
    assertStringIncludes(nobody.stderr, "PermissionDenied");
  },
});

/** The unit's command lines with systemd's `%t`/`%n` specifiers filled in, as argv arrays. */
function unitCommands(unit: string, key: string, specifiers: Record<string, string>): string[][] {
  return directive(unit, key).map((line) =>
    line.replace(/%([tn])/g, (whole, s: string) => specifiers[s] ?? whole).trim().split(/\s+/)
  );
}

Deno.test({
  name: "drover-operator.service's ExecStart/ExecStop really run the operator image under podman",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { startNats, startPodman, freePort, waitFor, fetchPublishedPort } = await import(
      "../support/mod.ts"
    );
    const { buildOperatorImage } = await import("../support/deno_base_image.ts");
    await using nats = await startNats();
    await using podman = await startPodman();
    await using dir = await tempDir("drover-operator-unit-");

    // The image the unit names, built from operator/Containerfile on a local Deno base (no
    // registry is reachable here), exactly as tests/e2e/operator_container_test.ts does.
    const unit = await Deno.readTextFile(`${systemdDir}drover-operator.service`);
    const [execStart] = unitCommands(unit, "ExecStart", { t: dir.path, n: "x.service" });
    const image = execStart?.find((word) => word.startsWith("localhost/drover-operator"))!;
    const build = await buildOperatorImage(podman, dir.path, image);
    assertEquals(build.code, 0, build.stderr);

    // /etc/drover/operator -> a temp dir with operator.env; the fixed loopback port -> a free one.
    const settings = `${dir.path}/etc-drover-operator`;
    await Deno.mkdir(settings);
    await Deno.writeTextFile(`${settings}/operator.env`, `NATS_URL=${nats.url}\n`);
    const port = await freePort();
    const specifiers = { t: dir.path, n: "drover-operator.service" };
    const render = (argv: string[]) =>
      argv.map((word) =>
        word.replaceAll("/etc/drover/operator", settings)
          .replace("127.0.0.1:8080", `127.0.0.1:${port}`)
      );
    const [start] = unitCommands(unit, "ExecStart", specifiers).map(render);
    const [stop] = unitCommands(unit, "ExecStop", specifiers).map(render);
    const [stopPost] = unitCommands(unit, "ExecStopPost", specifiers).map(render);
    assertExists(start, "the unit has an ExecStart");
    assertExists(stop, "the unit has an ExecStop");
    assertExists(stopPost, "the unit has an ExecStopPost");
    assertEquals(start[0], "/usr/bin/podman");

    const started = await podman.cli(start.slice(1));
    assertEquals(started.code, 0, started.stderr);
    await waitFor(async () => {
      const response = await fetchPublishedPort(port, "/healthz").catch(() => undefined);
      await response?.body?.cancel();
      return response?.ok;
    }, { timeoutMs: 60_000, message: "operator in its container answers /healthz" });
    const inspect = await podman.cli([
      "inspect",
      "drover-operator",
      "--format",
      "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.Config.User}}",
    ]);
    // Read-only root, every default capability dropped, the image's unprivileged user.
    assertMatch(inspect.stdout.trim(), /^true \[(CAP_[A-Z_]+ )*CAP_SETUID( CAP_[A-Z_]+)*\] deno$/);
    assertStringIncludes(inspect.stdout, "CAP_NET_RAW");
    assertStringIncludes(inspect.stdout, "CAP_DAC_OVERRIDE");

    const stopped = await podman.cli(stop.slice(1));
    assertEquals(stopped.code, 0, stopped.stderr);
    const removed = await podman.cli(stopPost.slice(1));
    assertEquals(removed.code, 0, removed.stderr);
    const left = await podman.cli(["ps", "--all", "--filter", "name=drover-operator", "-q"]);
    assertEquals(left.stdout.trim(), "", "ExecStopPost left the container behind");
  },
});
