/**
 * `deno task bundle`: the agent as an alternative artifact that can be built without Deno's
 * release host (which `deno compile` needs for its runtime):
 *
 * - `dist/drover-agent.bundle.js` — the agent and its npm dependencies in one JavaScript file
 *   (`deno bundle --platform=deno`); it runs with an empty DENO_DIR under `--no-remote --no-npm`.
 * - `dist/deno-aarch64` — Deno for Raspberry Pi OS / arm64 Linux, from the npm package
 *   `@deno/linux-arm64-glibc` at this Deno's version (cached in ~/.cache/drover/npm).
 * - `dist/drover-agent.sh` — the launcher installed as /usr/local/bin/drover-agent: runs the
 *   bundle with exactly the agent task's permissions.
 *
 * Install on a device with `systemd/install.sh --bundle dist --deno dist/deno-aarch64`.
 * The bundle is checked by running `--version` with this machine's Deno and an empty DENO_DIR.
 *
 * @module
 */

import { type AgentTask, CompileError, elfTarget, readAgentTask } from "./compile.ts";

/** Output directory. */
export const DIST_DIR = "dist";
/** The bundle file. */
export const BUNDLE_PATH = `${DIST_DIR}/drover-agent.bundle.js`;
/** The launcher script. */
export const LAUNCHER_PATH = `${DIST_DIR}/drover-agent.sh`;
/** The aarch64 Deno executable. */
export const ARM64_DENO_PATH = `${DIST_DIR}/deno-aarch64`;
/** npm package that ships the aarch64 (glibc) Deno executable. */
export const ARM64_DENO_PACKAGE = "@deno/linux-arm64-glibc";

/** Flags every run of the bundle uses: nothing is fetched or resolved at run time (pure). */
export function bundleRunFlags(task: AgentTask): string[] {
  return [
    "--no-config",
    "--no-lock",
    "--no-remote",
    "--no-npm",
    "--no-prompt",
    ...task.runtimeFlags,
  ];
}

/** The launcher script's text (pure); paths can be overridden with DROVER_DENO/DROVER_BUNDLE. */
export function launcherScript(task: AgentTask): string {
  const flags = bundleRunFlags(task).map(shellQuote).join(" ");
  return [
    "#!/bin/sh",
    "# Drover agent launcher for the bundle artifact (deno task bundle). Installed as",
    "# /usr/local/bin/drover-agent by systemd/install.sh --bundle; runs the agent bundle with the",
    "# permissions of the agent task and nothing else. exec keeps the PID for sd_notify.",
    'DROVER_DENO="${DROVER_DENO:-/usr/local/lib/drover/deno}"',
    'DROVER_BUNDLE="${DROVER_BUNDLE:-/usr/local/lib/drover/drover-agent.bundle.js}"',
    `exec "$DROVER_DENO" run ${flags} "$DROVER_BUNDLE" "$@"`,
    "",
  ].join("\n");
}

/** Quotes a word for sh when it contains anything beyond a safe set (pure). */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Where the npm tarballs are cached between runs. */
export function npmCacheDir(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache`;
  return `${cache}/drover/npm`;
}

async function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string> } = {},
) {
  const output = await new Deno.Command(command, {
    args,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  return { ...output, stdoutText: decode(output.stdout), stderrText: decode(output.stderr) };
}

/**
 * Bundles the agent entry into {@linkcode BUNDLE_PATH}.
 *
 * @throws {CompileError} with deno bundle's message.
 */
export async function bundleAgent(task: AgentTask): Promise<void> {
  await Deno.mkdir(DIST_DIR, { recursive: true });
  const result = await run(Deno.execPath(), [
    "bundle",
    "--platform=deno",
    "--frozen-lockfile",
    "--output",
    BUNDLE_PATH,
    task.entry,
  ]);
  if (!result.success) {
    throw new CompileError(`Cannot bundle ${task.entry}:\n${result.stderrText}`);
  }
}

/**
 * Runs the bundle with `--version` using `deno` (default: this Deno) and a fresh empty DENO_DIR,
 * as on a device; returns what it printed.
 *
 * @throws {CompileError} when it does not print a Drover version.
 */
export async function checkBundle(task: AgentTask, runner: string[] = [Deno.execPath()]) {
  const denoDir = await Deno.makeTempDir({ prefix: "drover-empty-deno-dir-" });
  try {
    const [command, ...prefix] = runner;
    const result = await run(
      command,
      [...prefix, "run", ...bundleRunFlags(task), BUNDLE_PATH, "--version"],
      { env: { DENO_DIR: denoDir } },
    );
    if (!result.success || !/drover/i.test(result.stdoutText)) {
      throw new CompileError(
        `Cannot run the bundle with ${runner.join(" ")}: exit ${result.code}, printed ` +
          `${JSON.stringify(result.stdoutText)}\n${result.stderrText}`,
      );
    }
    return result.stdoutText;
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
}

/**
 * Fetches the aarch64 Deno of `version` from npm (cached) into {@linkcode ARM64_DENO_PATH}.
 *
 * @throws {CompileError} when npm cannot fetch it or the file is not an aarch64 executable.
 */
export async function fetchArm64Deno(version = Deno.version.deno): Promise<string> {
  const cacheDir = npmCacheDir();
  await Deno.mkdir(cacheDir, { recursive: true });
  const tarball = `${cacheDir}/deno-linux-arm64-glibc-${version}.tgz`;
  if (!await exists(tarball)) {
    const packed = await run("npm", [
      "pack",
      "--silent",
      `${ARM64_DENO_PACKAGE}@${version}`,
      "--pack-destination",
      cacheDir,
    ]);
    if (!packed.success || !await exists(tarball)) {
      throw new CompileError(
        `Cannot fetch ${ARM64_DENO_PACKAGE}@${version} with npm pack: ${packed.stderrText}`,
      );
    }
  }
  const extractDir = await Deno.makeTempDir({ dir: cacheDir, prefix: "extract-" });
  try {
    const untar = await run("tar", ["-xzf", tarball, "-C", extractDir, "package/deno"]);
    if (!untar.success) throw new CompileError(`Cannot extract ${tarball}: ${untar.stderrText}`);
    const extracted = `${extractDir}/package/deno`;
    using file = await Deno.open(extracted);
    const header = new Uint8Array(20);
    await file.read(header);
    if (elfTarget(header) !== "aarch64-unknown-linux-gnu") {
      throw new CompileError(`Cannot use ${tarball}: package/deno is not an aarch64 executable`);
    }
    await Deno.mkdir(DIST_DIR, { recursive: true });
    await Deno.copyFile(extracted, `${ARM64_DENO_PATH}.partial`);
    await Deno.chmod(`${ARM64_DENO_PATH}.partial`, 0o755);
    await Deno.rename(`${ARM64_DENO_PATH}.partial`, ARM64_DENO_PATH);
    return ARM64_DENO_PATH;
  } finally {
    await Deno.remove(extractDir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function main(): Promise<number> {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(
      "Usage: deno task bundle [--no-arm64]\n" +
        `Writes ${BUNDLE_PATH}, ${LAUNCHER_PATH} and (unless --no-arm64) ${ARM64_DENO_PATH}.`,
    );
    return 0;
  }
  try {
    const task = await readAgentTask();
    let started = performance.now();
    await bundleAgent(task);
    const size = (await Deno.stat(BUNDLE_PATH)).size;
    const version = await checkBundle(task);
    console.log(
      `${BUNDLE_PATH}: ${(size / 1e6).toFixed(2)} MB, runs with an empty DENO_DIR ` +
        `(--version: ${version}) [${((performance.now() - started) / 1000).toFixed(1)} s]`,
    );
    await Deno.writeTextFile(LAUNCHER_PATH, launcherScript(task), { mode: 0o755 });
    await Deno.chmod(LAUNCHER_PATH, 0o755);
    console.log(`${LAUNCHER_PATH}: launcher with flags ${bundleRunFlags(task).join(" ")}`);
    if (!Deno.args.includes("--no-arm64")) {
      started = performance.now();
      const deno = await fetchArm64Deno();
      console.log(
        `${deno}: Deno ${Deno.version.deno} for aarch64 from npm ${ARM64_DENO_PACKAGE} ` +
          `[${((performance.now() - started) / 1000).toFixed(1)} s]`,
      );
    }
    console.log(
      "Install on a device: sudo systemd/install.sh --bundle dist --deno dist/deno-aarch64 " +
        "--config agent.toml",
    );
    return 0;
  } catch (error) {
    if (!(error instanceof CompileError)) throw error;
    console.error(`bundle: ${error.message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
