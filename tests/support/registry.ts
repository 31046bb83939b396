/**
 * A real container registry (Debian's docker-registry, i.e. distribution v2) on a free loopback
 * port with filesystem storage, optionally behind htpasswd auth; and pushing images to it.
 *
 * @module
 */

import { killAll, processesReferencing } from "./_host.ts";
import { logTail, ManagedProcess, waitUntilReady } from "./_managed_process.ts";
import { createOwnedDir, type OwnedDir, sweepAbandonedDirs } from "./_owned_dir.ts";
import { CommandError, ServiceStartError } from "./errors.ts";
import type { PodmanService } from "./podman.ts";
import { freePort } from "./ports.ts";

/** The registry program (Debian package docker-registry). */
export const REGISTRY_BINARY = "/usr/bin/docker-registry";
/** How long {@linkcode startRegistry} waits for `/v2/` to answer. */
export const REGISTRY_START_TIMEOUT_MS = 20_000;

/** Username and password for a registry's htpasswd auth (or for a push). */
export interface RegistryCredentials {
  /** User name. */
  username: string;
  /** Password. */
  password: string;
}

/** Options of {@linkcode startRegistry}. */
export interface StartRegistryOptions {
  /** Require this user (HTTP basic auth via an htpasswd file with a bcrypt hash). */
  htpasswd?: RegistryCredentials;
}

/** A running registry started by {@linkcode startRegistry}. */
export interface Registry extends AsyncDisposable {
  /** `127.0.0.1:PORT`, the registry part of image references, e.g. `${host}/drover/busybox:1`. */
  readonly host: string;
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** Registry directory (config, storage, log). */
  readonly dir: string;
  /** Path of the registry log. */
  readonly logPath: string;
  /** Stops the registry (SIGTERM, then SIGKILL). Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a registry on 127.0.0.1 (plain HTTP) and waits until `/v2/` answers (401 counts as up
 * when auth is on).
 *
 * @throws {ServiceStartError} with the registry's log tail if it does not come up.
 */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<Registry> {
  await sweepAbandonedDirs("registry", async (dir) => {
    killAll((await processesReferencing(dir)).map((p) => p.pid));
  });
  const owned = await createOwnedDir("registry");
  let process: ManagedProcess | undefined;
  try {
    const port = await freePort();
    const htpasswdPath = options.htpasswd ? `${owned.path}/htpasswd` : undefined;
    if (options.htpasswd && htpasswdPath) {
      // -B: the registry only accepts bcrypt hashes. -i reads the password from stdin, so it does
      // not show up in the process list.
      const { username, password } = options.htpasswd;
      await writeHtpasswd(htpasswdPath, username, password);
    }
    const configPath = `${owned.path}/config.yml`;
    await Deno.writeTextFile(
      configPath,
      registryConfig({ port, storageDir: `${owned.path}/data`, htpasswdPath }),
    );
    const logPath = `${owned.path}/registry.log`;
    process = await ManagedProcess.spawn({
      command: REGISTRY_BINARY,
      args: ["serve", configPath],
      logPath,
    });
    const url = `http://127.0.0.1:${port}`;
    const expected = options.htpasswd ? 401 : 200;
    const running = process;
    try {
      await waitUntilReady(running, async () => {
        try {
          const res = await fetch(`${url}/v2/`);
          await res.body?.cancel();
          return res.status === expected;
        } catch {
          return false;
        }
      }, { timeoutMs: REGISTRY_START_TIMEOUT_MS, message: `registry answers ${url}/v2/` });
    } catch (error) {
      throw new ServiceStartError(
        "docker-registry",
        `${url}/v2/ did not answer ${expected} (config ${configPath})`,
        await logTail(logPath),
        { cause: error },
      );
    }
    return new RunningRegistry(owned, running, port, logPath);
  } catch (error) {
    await process?.kill();
    await owned.remove();
    throw error;
  }
}

/** Inputs of {@linkcode registryConfig}. */
export interface RegistryConfigInput {
  /** Port on 127.0.0.1. */
  port: number;
  /** Filesystem storage root. */
  storageDir: string;
  /** htpasswd file; auth is off without it. */
  htpasswdPath?: string | undefined;
}

/** Renders the registry's YAML config (pure; JSON strings are valid YAML scalars). */
export function registryConfig(input: RegistryConfigInput): string {
  const q = JSON.stringify;
  const lines = [
    "version: 0.1",
    "log:",
    "  level: warn",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${q(input.storageDir)}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${q(`127.0.0.1:${input.port}`)}`,
  ];
  if (input.htpasswdPath !== undefined) {
    lines.push(
      "auth:",
      "  htpasswd:",
      "    realm: drover-test-registry",
      `    path: ${q(input.htpasswdPath)}`,
    );
  }
  return lines.join("\n") + "\n";
}

async function writeHtpasswd(path: string, username: string, password: string): Promise<void> {
  const child = new Deno.Command("htpasswd", {
    args: ["-B", "-i", "-n", username],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(password));
  await writer.close();
  const output = await child.output();
  if (output.code !== 0) {
    const stderr = new TextDecoder().decode(output.stderr);
    throw new CommandError(["htpasswd", "-B", "-i", "-n", username], output.code, stderr);
  }
  await Deno.writeFile(path, output.stdout, { mode: 0o600 });
}

class RunningRegistry implements Registry {
  readonly host: string;
  readonly url: string;

  constructor(
    readonly owned: OwnedDir,
    readonly process: ManagedProcess,
    readonly port: number,
    readonly logPath: string,
  ) {
    this.host = `127.0.0.1:${port}`;
    this.url = `http://${this.host}`;
  }

  get dir(): string {
    return this.owned.path;
  }

  async stop(): Promise<void> {
    await this.process.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await this.owned.remove();
  }
}

/**
 * Pushes `localRef` from `podman`'s storage to `remoteRef` (e.g. `${registry.host}/app:1`) over
 * plain HTTP, with `creds` if given.
 *
 * @throws {CommandError} when the push fails (e.g. wrong password), with podman's stderr.
 */
export async function pushImage(
  podman: PodmanService,
  localRef: string,
  remoteRef: string,
  creds?: RegistryCredentials,
): Promise<void> {
  const args = ["push", "--tls-verify=false", "--quiet"];
  if (creds) args.push("--creds", `${creds.username}:${creds.password}`);
  args.push(localRef, remoteRef);
  const result = await podman.cli(args);
  if (result.code !== 0) {
    // The password is left out of the reported command line.
    throw new CommandError(["podman", "push", localRef, remoteRef], result.code, result.stderr);
  }
}
