import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
/**
 * `deno task compile [--target TARGET]…`: builds the agent into self-contained executables,
 * `dist/drover-agent-<target>`, for the host and for aarch64 (Raspberry Pi) by default.
 *
 * The permissions baked into the executables are exactly those of the root deno.json `agent`
 * task, and the entry point is the task's script, so `deno task agent` and the executable can
 * never drift apart.
 *
 * `deno compile` needs Deno's `denort` runtime for each target, which it downloads from
 * dl.deno.land (and caches in DENO_DIR). Where that host is unreachable, set `DENORT_BIN` to a
 * denort executable: its ELF architecture decides which target it builds. Without either, this
 * fails with that explanation. Every executable is checked after the build by running it with
 * `--version` (under qemu-aarch64-static for aarch64 on another host), which also catches a
 * `DENORT_BIN` that points at a full `deno` instead of `denort`.
 *
 * @module
 */

/** Targets this script knows how to build and check. */
export const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] as const;
/** A build target. */
export type Target = typeof TARGETS[number];

/** Where executables are written. */
export const DIST_DIR = "dist";
/** How long the post-build `--version` check may take (qemu start-up is several seconds). */
const VERSION_CHECK_TIMEOUT_MS = 60_000;

/** The build could not produce a working executable; the message says why and what to do. */
export class CompileError extends Error {
  /** Creates the error; `cause` keeps the underlying failure. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CompileError";
  }
}

/** `deno compile` could not obtain the denort runtime for a target (no internet, no DENORT_BIN). */
export class RuntimeUnavailableError extends CompileError {
  /** The target whose runtime is missing. */
  readonly target: Target;

  /** Creates the error with the explanation and the ways out. */
  constructor(target: Target, detail: string) {
    super(
      `Cannot compile the agent for ${target}: deno compile needs the denort runtime for that ` +
        `target and could not download it from dl.deno.land (${detail}).\n` +
        `Either run this on a machine that can reach dl.deno.land (the runtime is then cached in ` +
        `DENO_DIR), or set DENORT_BIN=/path/to/denort (a denort ${target} executable, e.g. from ` +
        `denort-${target}.zip of the Deno ${Deno.version.deno} release). A full deno executable ` +
        `does not work as DENORT_BIN. Without either, use the bundle (deno task bundle): the ` +
        `agent as one JavaScript file plus the Deno executable from npm.`,
    );
    this.name = "RuntimeUnavailableError";
    this.target = target;
  }
}

/** What the agent task runs: its permission (and unstable) flags and its entry script. */
export interface AgentTask {
  /** Flags to bake into the executable, in task order. */
  runtimeFlags: string[];
  /** The script the task runs, relative to the repository root. */
  entry: string;
}

/**
 * Splits a task command line into words, honouring single and double quotes (pure).
 * Tasks are not full shell; this covers the forms deno.json tasks use.
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  const pattern = /"([^"]*)"|'([^']*)'|([^\s"']+)/g;
  let current: string | undefined;
  let lastEnd = -1;
  for (const match of line.matchAll(pattern)) {
    const text = match[1] ?? match[2] ?? match[3];
    // Adjacent pieces without whitespace between them form one word (--allow-read="/a b").
    if (current !== undefined && match.index === lastEnd) current += text;
    else {
      if (current !== undefined) words.push(current);
      current = text;
    }
    lastEnd = match.index + match[0].length;
  }
  if (current !== undefined) words.push(current);
  return words;
}

const BAKED_FLAG = /^--(allow|deny)-[a-z-]+(=.*)?$|^--unstable-[a-z-]+$|^--v8-flags=/;

/**
 * Reads the agent task (`deno run [flags] <script> [args]`) into the flags to bake in and the
 * entry script (pure).
 *
 * @throws {CompileError} when the task is not a `deno run` of a script, or grants every
 * permission (`-A`, unless `allowAll`), which must never be baked into a device executable.
 */
export function parseAgentTask(task: string, options: { allowAll?: boolean } = {}): AgentTask {
  const words = splitCommandLine(task);
  const run = words.findIndex((w, i) => w === "run" && words[i - 1] === "deno");
  if (run < 0) {
    throw new CompileError(`Cannot read the agent task as "deno run …": current value is ${task}`);
  }
  const runtimeFlags: string[] = [];
  for (const word of words.slice(run + 1)) {
    if (!word.startsWith("-")) {
      if (word.includes("$") || word.includes("&&")) break;
      return { runtimeFlags, entry: word };
    }
    if ((word === "-A" || word === "--allow-all") && !options.allowAll) {
      throw new CompileError(
        `Cannot bake the agent task's permissions into an executable: it grants all of them ` +
          `(${word}); list the permissions the agent needs instead`,
      );
    }
    if (BAKED_FLAG.test(word) || word === "-A") runtimeFlags.push(word);
  }
  throw new CompileError(`Cannot find the script in the agent task: current value is ${task}`);
}

/**
 * `--frozen-lockfile` when the repository has a deno.lock: the artifact is then built from
 * exactly the locked dependencies. Without one (a fresh clone before the lock file is
 * committed), the versions pinned in deno.json are resolved as usual.
 */
export async function lockfileArgs(lockPath = "deno.lock"): Promise<string[]> {
  try {
    await Deno.stat(lockPath);
    return ["--frozen-lockfile"];
  } catch {
    return [];
  }
}

/**
 * Files `deno compile` must leave out, besides the npm packages the agent never
 * reaches (`--exclude-unused-npm`; without it the whole lockfile's snapshot,
 * operator and test dependencies included, is embedded).
 *
 * Deno 2.9.6's compile overflows its stack ("thread 'tokio-runtime-worker' has
 * overflowed its stack") on the test data shipped in the npm package
 * `bintrees`, which prom-client (the agent's optional metrics) depends on
 * through tdigest; nothing loads those files. Measured: excluding
 * `bintrees/<version>/test` is enough. The versions come from deno.lock.
 */
export async function compileExcludes(
  lockPath = "deno.lock",
  npmCache?: string,
): Promise<string[]> {
  let lock: { npm?: Record<string, unknown> };
  try {
    lock = JSON.parse(await Deno.readTextFile(lockPath));
  } catch {
    return ["--exclude-unused-npm"];
  }
  const cache = npmCache ?? await denoNpmCache();
  const excludes = Object.keys(lock.npm ?? {})
    .map((id) => /^bintrees@([^_]+)/.exec(id)?.[1])
    .filter((v): v is string => v !== undefined)
    .flatMap((v) => ["--exclude", `${cache}/registry.npmjs.org/bintrees/${v}/test`]);
  return ["--exclude-unused-npm", ...excludes];
}

/** Where this Deno keeps npm packages (`deno info --json`'s `npmCache`). */
async function denoNpmCache(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { npmCache?: string };
  if (info.npmCache === undefined) throw new CompileError("`deno info --json` names no npmCache");
  return info.npmCache;
}

/** The `deno compile` arguments for one target (pure). */
export function compileArgs(
  task: AgentTask,
  target: Target,
  output: string,
  lockArgs: string[] = [],
  excludeArgs: string[] = [],
): string[] {
  return [
    "compile",
    ...lockArgs,
    ...excludeArgs,
    "--no-remote",
    "--target",
    target,
    "--output",
    output,
    ...task.runtimeFlags,
    task.entry,
  ];
}

/** The build target of an ELF executable's header bytes, or undefined if it is neither (pure). */
export function elfTarget(header: Uint8Array): Target | undefined {
  const isElf = header.length >= 20 && header[0] === 0x7f && header[1] === 0x45 &&
    header[2] === 0x4c && header[3] === 0x46;
  if (!isElf) return undefined;
  // Checked above: the header holds at least 20 bytes.
  const machine = header[18]! | (header[19]! << 8); // e_machine, little-endian
  if (machine === 0x3e) return "x86_64-unknown-linux-gnu";
  if (machine === 0xb7) return "aarch64-unknown-linux-gnu";
  return undefined;
}

/** True when `deno compile`'s stderr says it could not download the denort runtime (pure). */
export function isRuntimeDownloadFailure(stderr: string): boolean {
  return /denort-[a-z0-9_-]+\.zip/.test(stderr) &&
    /error sending request|dns error|Connect|timed out|Setting up base binary|status code/i
      .test(stderr);
}

/** The most specific line of a `deno compile` download failure, for the explanation (pure). */
export function downloadFailureDetail(stderr: string): string {
  // The "Caused by:" chain numbers its lines; so does the stack backtrace after it.
  const [causes = ""] = stderr.split("Stack backtrace:");
  const lines = causes.split("\n").map((l) => l.trim()).filter((l) => /^\d+: /.test(l));
  return lines.at(-1)?.replace(/^\d+: /, "") ?? "download failed";
}

/** The target of the machine this runs on. */
export function hostTarget(): Target {
  const target = `${Deno.build.arch}-unknown-linux-gnu`;
  if (Deno.build.os !== "linux" || !(TARGETS as readonly string[]).includes(target)) {
    throw new CompileError(`Cannot build on ${Deno.build.target}: only Linux x86_64/aarch64`);
  }
  return target as Target;
}

/** Where the denort runtime for `target` will come from. */
export type RuntimeSource =
  | { kind: "denort-bin"; path: string }
  | { kind: "cache"; path: string }
  | { kind: "download" };

/** Where Deno 2 caches a downloaded denort (DENO_DIR/dl/release/v<version>/denort-<target>.zip). */
export function cachedRuntimePath(target: Target, denoDir = defaultDenoDir()): string {
  return `${denoDir}/dl/release/v${Deno.version.deno}/denort-${target}.zip`;
}

function defaultDenoDir(): string {
  const explicit = Deno.env.get("DENO_DIR");
  if (explicit) return explicit;
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache`;
  return `${cache}/deno`;
}

/**
 * Finds the runtime for `target`: `DENORT_BIN` when it is set and built for `target`, else the
 * DENO_DIR cache, else a download will be attempted.
 *
 * @throws {CompileError} when DENORT_BIN is set but unreadable or not a Linux ELF executable.
 */
export async function findRuntime(target: Target): Promise<RuntimeSource | undefined> {
  const denortBin = Deno.env.get("DENORT_BIN");
  if (denortBin) {
    const runtimeTarget = await executableTarget(denortBin);
    return runtimeTarget === target ? { kind: "denort-bin", path: denortBin } : undefined;
  }
  const cached = cachedRuntimePath(target);
  try {
    await Deno.stat(cached);
    return { kind: "cache", path: cached };
  } catch {
    return { kind: "download" };
  }
}

/** The target an executable file is built for. */
export async function executableTarget(path: string): Promise<Target> {
  let header: Uint8Array;
  try {
    using file = await Deno.open(path);
    header = new Uint8Array(20);
    await file.read(header);
  } catch (error) {
    throw new CompileError(`Cannot read DENORT_BIN ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const target = elfTarget(header);
  if (!target) {
    throw new CompileError(
      `Cannot use DENORT_BIN ${path}: not an x86_64 or aarch64 ELF executable`,
    );
  }
  return target;
}

/** The command that runs an executable built for `target` on this machine. */
export function runnerFor(target: Target, executable: string): [string, ...string[]] {
  return target === hostTarget()
    ? [executable]
    : [`qemu-${target.split("-")[0]}-static`, executable];
}

/**
 * Runs `executable --version` and checks it is the agent answering, not a bare Deno runtime.
 *
 * @throws {CompileError} naming what the executable printed instead.
 */
export async function checkExecutable(target: Target, executable: string): Promise<string> {
  const [command, ...args] = runnerFor(target, executable);
  const child = new Deno.Command(command, {
    args: [...args, "--version"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(VERSION_CHECK_TIMEOUT_MS),
  });
  let output: Deno.CommandOutput;
  try {
    output = await child.output();
  } catch (error) {
    throw new CompileError(`Cannot run ${executable} --version: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const text = new TextDecoder().decode(output.stdout).trim();
  if (/^deno \d/.test(text)) {
    throw new CompileError(
      `Cannot use ${executable}: it runs as a plain Deno (${text.split("\n")[0]}), not as the ` +
        `agent. DENORT_BIN must point at a denort runtime, not at a deno executable.`,
    );
  }
  const expected = await agentVersion();
  if (!output.success || text.split(/\s+/).at(-1) !== expected) {
    throw new CompileError(
      `Cannot verify ${executable}: "--version" should print ${expected} but exited with ` +
        `${output.code} and printed ` +
        `${JSON.stringify(text)} ${new TextDecoder().decode(output.stderr).trim()}`,
    );
  }
  return text;
}

/**
 * Reads a task (`agent` by default) from the root deno.json into its entry and flags, adding an
 * `--unstable-<x>` flag for each entry of the config's `"unstable"` list: a compiled executable
 * or a bundle run with `--no-config` does not see the config, so those must be explicit.
 *
 * @throws {CompileError} when the task is missing or cannot be read.
 */
export async function readTask(
  name = "agent",
  configPath = "deno.json",
  options: { allowAll?: boolean } = {},
): Promise<AgentTask> {
  const config = JSON.parse(await Deno.readTextFile(configPath));
  const task = config?.tasks?.[name];
  const command = typeof task === "string" ? task : task?.command;
  if (typeof command !== "string") {
    throw new CompileError(`Cannot read the ${name} task: ${configPath} has no "${name}" task`);
  }
  const parsed = parseAgentTask(command, options);
  const unstable: unknown[] = Array.isArray(config.unstable) ? config.unstable : [];
  const extra = unstable.map((u) => `--unstable-${u}`)
    .filter((flag) => !parsed.runtimeFlags.includes(flag));
  return { ...parsed, runtimeFlags: [...parsed.runtimeFlags, ...extra] };
}

/** The agent's version as its deno.json declares it (what `--version` must print). */
export async function agentVersion(agentConfigPath = "agent/deno.json"): Promise<string> {
  const version = JSON.parse(await Deno.readTextFile(agentConfigPath))?.version;
  if (typeof version !== "string") {
    throw new CompileError(`Cannot read the agent version: ${agentConfigPath} has no "version"`);
  }
  return version;
}

/** Reads the `agent` task; see {@linkcode readTask}. */
export function readAgentTask(configPath = "deno.json"): Promise<AgentTask> {
  return readTask("agent", configPath);
}

/**
 * Compiles the agent for `target` into `dist/drover-agent-<target>` and checks it runs.
 *
 * @throws {RuntimeUnavailableError} when the denort runtime cannot be obtained.
 * @throws {CompileError} when the build or the check fails.
 */
export async function compileAgent(
  task: AgentTask,
  target: Target,
  outDir = DIST_DIR,
): Promise<string> {
  const output = `${outDir}/drover-agent-${target}`;
  await Deno.mkdir(outDir, { recursive: true });
  const result = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(task, target, output, await lockfileArgs(), await compileExcludes()),
    stdin: "null",
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(result.stderr);
  if (!result.success) {
    if (isRuntimeDownloadFailure(stderr)) {
      throw new RuntimeUnavailableError(target, downloadFailureDetail(stderr));
    }
    throw new CompileError(`Cannot compile the agent for ${target}:\n${stderr.trim()}`);
  }
  try {
    await checkExecutable(target, output);
  } catch (error) {
    // Never leave an executable that failed its check where an installer would pick it up.
    await Deno.remove(output).catch(() => {});
    throw error;
  }
  return output;
}

/**
 * Whether Deno's release host serves the denort runtime for `target` from here (a HEAD request
 * with a short timeout); the reason when it does not.
 */
export async function probeRuntimeDownload(target: Target): Promise<true | string> {
  const url = `https://dl.deno.land/release/v${Deno.version.deno}/denort-${target}.zip`;
  try {
    const response = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(5000) });
    await response.body?.cancel();
    return response.ok ? true : `${url} answered HTTP ${response.status}`;
  } catch (error) {
    return `${url} is unreachable (${(error as Error).message.split("\n")[0]})`;
  }
}

const HOST_PORT = /^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?$/;

/**
 * Splits `--allow-nats` values ("host[:port],…") into hosts (pure).
 *
 * @returns the hosts, or a message naming the first invalid one.
 */
export function parseNatsHosts(value: string): string[] | string {
  const hosts = value.split(",").map((h) => h.trim()).filter((h) => h !== "");
  if (hosts.length === 0) return "--allow-nats needs host[:port] values";
  const bad = hosts.find((h) => !HOST_PORT.test(h));
  return bad === undefined ? hosts : `--allow-nats: ${JSON.stringify(bad)} is not host[:port]`;
}

/**
 * Adds network access to `hosts` (the NATS servers a device build connects to) to the task's
 * flags (pure). Deno merges repeated `--allow-net=` lists, so the task's own stay as they are.
 */
export function withNatsHosts(task: AgentTask, hosts: string[]): AgentTask {
  if (hosts.length === 0) return task;
  return { ...task, runtimeFlags: [...task.runtimeFlags, `--allow-net=${hosts.join(",")}`] };
}

/** The note printed when no `--allow-nats` was given and the task limits network access. */
export function natsAccessNote(task: AgentTask): string | undefined {
  const net = task.runtimeFlags.filter((f) => f.startsWith("--allow-net="));
  if (net.length === 0) return undefined;
  return `note: network access baked in is the agent task's (${net.join(" ")}). Permissions of ` +
    `a built artifact cannot be widened on the device: for NATS servers elsewhere, build with ` +
    `--allow-nats HOST:PORT[,…] (e.g. --allow-nats nats.example.com:4222).`;
}

const USAGE =
  "Usage: deno task compile [--target TARGET]… [--allow-nats HOST:PORT[,…]] [--out-dir DIR]\n" +
  `Targets: ${TARGETS.join(", ")} (default: all of them, host first).\n` +
  "--allow-nats adds the NATS servers the devices connect to (the agent task allows loopback).\n" +
  "Env: DENORT_BIN=/path/to/denort builds only the target that runtime is for.";

/** Command-line options. */
export interface CompileOptions {
  targets: Target[];
  outDir: string;
  /** Extra hosts the executable may connect to (`--allow-nats`). */
  natsHosts: string[];
}

/**
 * A build script's command line, parsed strictly (no positionals), or the first line of
 * node:util's message about what is wrong with it.
 */
export function parseScriptArgs<const O extends ParseArgsOptionsConfig>(
  args: string[],
  options: O,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    return (e as Error).message.split("\n")[0] ?? String(e);
  }
}

/** The hosts of every `--allow-nats` value, or the problem with one. */
export function natsHostsOf(values: readonly string[] | undefined): string[] | string {
  const out: string[] = [];
  for (const value of values ?? []) {
    const hosts = parseNatsHosts(value);
    if (typeof hosts === "string") return hosts;
    out.push(...hosts);
  }
  return out;
}

/**
 * Parses the command line (pure apart from the host target default).
 *
 * @returns the options, "help", or a usage error message.
 */
export function parseCompileArgs(args: string[]): CompileOptions | "help" | string {
  const values = parseScriptArgs(args, {
    help: { type: "boolean", short: "h" },
    "out-dir": { type: "string" },
    target: { type: "string", multiple: true },
    "allow-nats": { type: "string", multiple: true },
  });
  if (typeof values === "string") return values;
  if (values.help) return "help";
  const targets: Target[] = [];
  for (const value of values.target ?? []) {
    if (!(TARGETS as readonly string[]).includes(value)) {
      return `unknown target ${JSON.stringify(value)} (known: ${TARGETS.join(", ")})`;
    }
    targets.push(value as Target);
  }
  const natsHosts = natsHostsOf(values["allow-nats"]);
  if (typeof natsHosts === "string") return natsHosts;
  const all = [hostTarget(), ...TARGETS.filter((t) => t !== hostTarget())];
  return {
    targets: targets.length > 0 ? targets : all,
    outDir: values["out-dir"] ?? DIST_DIR,
    natsHosts,
  };
}

async function main(): Promise<number> {
  const parsed = parseCompileArgs(Deno.args);
  if (parsed === "help") {
    console.log(USAGE);
    return 0;
  }
  if (typeof parsed === "string") {
    console.error(`compile: ${parsed}\n${USAGE}`);
    return 2;
  }
  const { targets: requested, outDir } = parsed;
  try {
    const task = withNatsHosts(await readAgentTask(), parsed.natsHosts);
    console.log(`agent entry ${task.entry}; baked-in flags: ${task.runtimeFlags.join(" ")}`);
    const note = parsed.natsHosts.length === 0 ? natsAccessNote(task) : undefined;
    if (note) console.log(note);
    let built = 0;
    for (const target of requested) {
      const source = await findRuntime(target);
      if (!source) {
        console.log(`skip ${target}: DENORT_BIN is a runtime for another target`);
        continue;
      }
      console.log(
        `compile ${target} (runtime: ${source.kind}${"path" in source ? ` ${source.path}` : ""})`,
      );
      const output = await compileAgent(task, target, outDir);
      const size = (await Deno.stat(output)).size;
      console.log(`  -> ${output} (${(size / 1e6).toFixed(1)} MB), --version checked`);
      built++;
    }
    if (built === 0) {
      throw new CompileError(
        `Cannot compile any of ${requested.join(", ")} with DENORT_BIN=${
          Deno.env.get("DENORT_BIN")
        }`,
      );
    }
    return 0;
  } catch (error) {
    if (!(error instanceof CompileError)) throw error;
    console.error(`compile: ${error.message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
