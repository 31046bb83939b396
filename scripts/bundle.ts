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

import {
  type AgentTask,
  agentVersion,
  CompileError,
  elfTarget,
  lockfileArgs,
  natsAccessNote,
  natsHostsOf,
  parseScriptArgs,
  readAgentTask,
  withNatsHosts,
} from "./compile.ts";
import { exists } from "../tests/support/files.ts";

/** Default output directory. */
export const DIST_DIR = "dist";

/** The files this script writes into an output directory (pure). */
export function artifactPaths(outDir = DIST_DIR) {
  return {
    /** The agent bundle. */
    bundle: `${outDir}/drover-agent.bundle.js`,
    /** The launcher script. */
    launcher: `${outDir}/drover-agent.sh`,
    /** The aarch64 Deno executable. */
    arm64Deno: `${outDir}/deno-aarch64`,
  };
}
/** npm package that ships the aarch64 (glibc) Deno executable. */
export const ARM64_DENO_PACKAGE = "@deno/linux-arm64-glibc";

/** The `deno run` flags under which nothing is fetched or resolved at run time. */
export const NOTHING_FETCHED_FLAGS: readonly string[] = [
  "--no-config",
  "--no-lock",
  "--no-remote",
  "--no-npm",
  "--no-prompt",
];

/** Flags every run of the bundle uses: nothing fetched, the agent task's permissions (pure). */
export function bundleRunFlags(task: AgentTask): string[] {
  return [...NOTHING_FETCHED_FLAGS, ...task.runtimeFlags];
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
    "# Deno analyses a new bundle and caches its compiled code on the first run that finishes;",
    "# the agent never finishes, and a first run holds the analysis' memory (~25 MiB) for as long",
    "# as it runs. A --version run first fills the caches (~0.1 s once they are warm).",
    `"$DROVER_DENO" run ${flags} "$DROVER_BUNDLE" --version >/dev/null 2>&1 || :`,
    `exec "$DROVER_DENO" run ${flags} "$DROVER_BUNDLE" "$@"`,
    "",
  ].join("\n");
}

/**
 * The bundler's eager `node:` imports that {@linkcode deferNodeBuiltins} rewrites, each expected
 * exactly once. Loading any `node:` module starts Deno's Node compatibility layer (≈ 3–5 MiB of
 * RSS, bench/RESULTS.md footprint); these two load it on every start for nothing:
 */
export const NODE_IMPORT_REWRITES: ReadonlyArray<{ what: string; from: string; to: string }> = [
  {
    // Emitted for every `require` of a Node builtin left in CommonJS code, even one that never
    // runs on Deno (tweetnacl's `require("crypto")`, behind a check for WebCrypto) or runs only
    // when lazily loaded code needs it (prom-client with [metrics], transport-node with a client
    // certificate). Made lazy: node:module is reached on the first such `require`.
    what: "the createRequire prelude",
    from: 'import { createRequire as __deno_internal_createRequire } from "node:module";\n' +
      "var __require = __deno_internal_createRequire(import.meta.url);",
    to: "var __deno_internal_require;\n" +
      "var __require = (id) => (__deno_internal_require ??= " +
      'process.getBuiltinModule("node:module").createRequire(import.meta.url))(id);',
  },
  {
    // @logtape/logtape's `#util` resolves to its Node build (the `node` condition is listed before
    // `deno`), whose only use is a fallback for runtimes without `Deno.inspect`.
    what: "@logtape/logtape's node:util import",
    from: 'import util from "node:util";\nfunction inspect(obj, options) {\n' +
      "  return util.inspect(obj, options);\n}",
    to: "function inspect(obj, options) {\n  return Deno.inspect(obj, options);\n}",
  },
];

/**
 * Rewrites the bundler's needless eager `node:` imports ({@linkcode NODE_IMPORT_REWRITES}) (pure).
 *
 * @throws {CompileError} when one is not found exactly once (a new Deno or dependency changed
 * the output: look at the bundle and update the rewrite).
 */
export function deferNodeBuiltins(source: string): string {
  let out = source;
  for (const { what, from, to } of NODE_IMPORT_REWRITES) {
    const count = out.split(from).length - 1;
    if (count !== 1) {
      throw new CompileError(
        `Cannot defer ${what} in the bundle: found ${count} times instead of once; ` +
          "update NODE_IMPORT_REWRITES in scripts/bundle.ts to the bundler's output",
      );
    }
    out = out.replace(from, () => to);
  }
  return out;
}

/**
 * The source with every non-ASCII character written as a `\uXXXX` escape (pure). V8 keeps a
 * script's source in its heap, as one byte per character only when every character fits: the
 * bundler escapes strings, regexes and identifiers but copies comments, and a handful of `—` or
 * `…` in doc comments made the agent's 1.8 MB bundle a 3.5 MiB two-byte string (measured in a
 * heap snapshot, bench/RESULTS.md footprint). In a comment the escape is inert; anywhere else it
 * means the same character.
 */
export function asciiOnly(source: string): string {
  return source.replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The `node:` modules a bundle imports at its top level, so loads on every start (pure). */
export function eagerNodeImports(source: string): string[] {
  const found = source.matchAll(/^import [^;]*? from "(node:[\w/]+)";$/gm);
  return [...new Set([...found].map((m) => m[1]!))].sort();
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
    ...(options.env !== undefined ? { env: options.env } : {}),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  return { ...output, stdoutText: decode(output.stdout), stderrText: decode(output.stderr) };
}

/**
 * Bundles the agent entry into `bundle`: the bundler's output with its eager `node:` imports
 * deferred, then minified (names kept, so stack traces still name functions) and ASCII only.
 * Minified because V8 keeps a script's whole source in the heap: the agent's 1.8 MB became
 * 0.97 MB, and a running agent's RSS 1.8 MiB less (bench/RESULTS.md, footprint). Returns the
 * `node:` modules the bundle still imports at its top level, i.e. loads on every start.
 *
 * @throws {CompileError} with deno bundle's message.
 */
export async function bundleAgent(task: AgentTask, bundle: string): Promise<string[]> {
  await Deno.mkdir(dirname(bundle), { recursive: true });
  const bundled = `${bundle}.unminified.js`;
  try {
    const result = await run(Deno.execPath(), [
      "bundle",
      "--platform=deno",
      ...await lockfileArgs(),
      "--output",
      bundled,
      task.entry,
    ]);
    if (!result.success) {
      throw new CompileError(`Cannot bundle ${task.entry}:\n${result.stderrText}`);
    }
    // The rewrites match the bundler's readable output, and the eager imports are read there.
    const deferred = deferNodeBuiltins(await Deno.readTextFile(bundled));
    await Deno.writeTextFile(bundled, deferred);
    const minified = await run(Deno.execPath(), [
      "bundle",
      "--platform=deno",
      "--minify",
      "--keep-names",
      "--output",
      bundle,
      bundled,
    ]);
    if (!minified.success) {
      throw new CompileError(`Cannot minify the bundle of ${task.entry}:\n${minified.stderrText}`);
    }
    await Deno.writeTextFile(bundle, asciiOnly(await Deno.readTextFile(bundle)));
    return eagerNodeImports(deferred);
  } finally {
    await Deno.remove(bundled).catch(() => {});
  }
}

/**
 * Runs the bundle with `--version` using `deno` (default: this Deno) and a fresh empty DENO_DIR,
 * as on a device; returns what it printed.
 *
 * @throws {CompileError} when it does not print a Drover version.
 */
export async function checkBundle(
  task: AgentTask,
  bundle: string,
  runner: readonly [string, ...string[]] = [Deno.execPath()],
): Promise<string> {
  const denoDir = await Deno.makeTempDir({ prefix: "drover-empty-deno-dir-" });
  try {
    const [command, ...prefix] = runner;
    const result = await run(
      command,
      [...prefix, "run", ...bundleRunFlags(task), bundle, "--version"],
      { env: { DENO_DIR: denoDir } },
    );
    const expected = await agentVersion();
    if (!result.success || result.stdoutText.split(/\s+/).at(-1) !== expected) {
      throw new CompileError(
        `Cannot run the bundle with ${runner.join(" ")}: expected --version to print ` +
          `${expected}, got exit ${result.code} and ` +
          `${JSON.stringify(result.stdoutText)}\n${result.stderrText}`,
      );
    }
    return result.stdoutText;
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
}

/**
 * Fetches the aarch64 Deno of `version` from npm (cached) into `target`.
 *
 * @throws {CompileError} when npm cannot fetch it or the file is not an aarch64 executable.
 */
export async function fetchArm64Deno(
  target: string,
  version = Deno.version.deno,
): Promise<string> {
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
    await Deno.mkdir(dirname(target), { recursive: true });
    await Deno.copyFile(extracted, `${target}.partial`);
    await Deno.chmod(`${target}.partial`, 0o755);
    await Deno.rename(`${target}.partial`, target);
    return target;
  } finally {
    await Deno.remove(extractDir, { recursive: true });
  }
}

function dirname(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? (slash === 0 ? "/" : ".") : path.slice(0, slash);
}

/** Command-line options. */
export interface BundleOptions {
  outDir: string;
  arm64: boolean;
  /** Extra hosts the launcher lets the agent connect to (`--allow-nats`). */
  natsHosts: string[];
}

const USAGE =
  "Usage: deno task bundle [--out-dir DIR] [--no-arm64] [--allow-nats HOST:PORT[,…]]\n" +
  "--allow-nats adds the NATS servers the devices connect to (the agent task allows loopback).\n" +
  "Writes DIR/drover-agent.bundle.js, DIR/drover-agent.sh and (unless --no-arm64) " +
  `DIR/deno-aarch64 (default DIR: ${DIST_DIR}).`;

/** Parses the command line (pure): the options, "help", or a usage error message. */
export function parseBundleArgs(args: string[]): BundleOptions | "help" | string {
  const values = parseScriptArgs(args, {
    help: { type: "boolean", short: "h" },
    "no-arm64": { type: "boolean" },
    "allow-nats": { type: "string", multiple: true },
    "out-dir": { type: "string" },
  });
  if (typeof values === "string") return values;
  if (values.help) return "help";
  const natsHosts = natsHostsOf(values["allow-nats"]);
  if (typeof natsHosts === "string") return natsHosts;
  return { outDir: values["out-dir"] ?? DIST_DIR, arm64: !values["no-arm64"], natsHosts };
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

async function main(): Promise<number> {
  const options = parseBundleArgs(Deno.args);
  if (options === "help") {
    console.log(USAGE);
    return 0;
  }
  if (typeof options === "string") {
    console.error(`bundle: ${options}\n${USAGE}`);
    return 2;
  }
  const paths = artifactPaths(options.outDir);
  try {
    const task = withNatsHosts(await readAgentTask(), options.natsHosts);
    const note = options.natsHosts.length === 0 ? natsAccessNote(task) : undefined;
    if (note) console.log(note);
    let started = performance.now();
    const eager = await bundleAgent(task, paths.bundle);
    const size = (await Deno.stat(paths.bundle)).size;
    const version = await checkBundle(task, paths.bundle);
    console.log(
      `${paths.bundle}: ${(size / 1e6).toFixed(2)} MB, runs with an empty DENO_DIR ` +
        `(--version: ${version}) [${seconds(started)}]; node: modules loaded at start: ` +
        `${eager.join(", ") || "none"}`,
    );
    await Deno.writeTextFile(paths.launcher, launcherScript(task), { mode: 0o755 });
    await Deno.chmod(paths.launcher, 0o755);
    console.log(`${paths.launcher}: launcher with flags ${bundleRunFlags(task).join(" ")}`);
    if (options.arm64) {
      started = performance.now();
      await fetchArm64Deno(paths.arm64Deno);
      console.log(
        `${paths.arm64Deno}: Deno ${Deno.version.deno} for aarch64 from npm ` +
          `${ARM64_DENO_PACKAGE} [${seconds(started)}]`,
      );
    }
    console.log(
      `Install on a device: sudo systemd/install.sh --bundle ${options.outDir} ` +
        `--deno ${paths.arm64Deno} --config agent.toml`,
    );
    return 0;
  } catch (error) {
    if (!(error instanceof CompileError)) throw error;
    console.error(`bundle: ${error.message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
