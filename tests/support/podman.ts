/**
 * An isolated podman service for tests: its own storage, run root, tmp dir, lock files, event
 * log, registries config, auth file and default network, reachable through its own unix socket.
 * Several instances run in parallel without seeing each other.
 *
 * What podman 4.3 (as root) shares host-wide even with separate `--root`/`--runroot`, and what
 * this module does about it:
 * - tmp dir `/run/libpod` (alive file, exit files, events log): `--tmpdir` / `tmp_dir` per instance.
 * - shm locks `/dev/shm/libpod_lock`: a fresh instance frees *all* locks on start, so instances
 *   would hand out lock numbers in use by others; `lock_type = "file"` keeps locks in the tmp dir.
 * - default network: always bridge `podman0`, 10.88.0.0/16; a per-instance network config dir
 *   with its own bridge and /24 (see `_podman_network.ts`).
 * - network lock `<network_config_dir>/netavark.lock`: linked to one shared file so netavark runs
 *   stay serialised host-wide (concurrent runs race creating iptables chains).
 * - IPAM database `/run/containers/networks/ipam.db`: shared, but keyed by network name and
 *   subnet, and bolt-locked; distinct subnets keep instances apart.
 * - `/run/containers/0/auth.json` and `/etc/containers/registries.conf`: per-instance files via
 *   `REGISTRY_AUTH_FILE` and `CONTAINERS_REGISTRIES_CONF`.
 * - runc state `/run/runc` and the blob-info cache under /var/lib/containers/cache: keyed by
 *   random container ids / digests, safe to share.
 *
 * @module
 */

import { type CommandResult, runCommand } from "./_exec.ts";
import { killAll, processesReferencing, unmountAllUnder } from "./_host.ts";
import { logTail, ManagedProcess, waitUntilReady } from "./_managed_process.ts";
import { createOwnedDir, type OwnedDir, sweepAbandonedDirs, tempRoot } from "./_owned_dir.ts";
import {
  acquireNetworkSlot,
  defaultNetworkDefinition,
  type NetworkSlot,
  slotSubnetPool,
} from "./_podman_network.ts";
import {
  deleteRuncContainers,
  enterNamespaceOf,
  isTrixieInstance,
  killMountNamespace,
  NAMESPACE_HOLDER_NAME,
  selectedPodman,
  TrixieNamespace,
} from "./_podman_trixie.ts";
import { CleanupError, ServiceStartError } from "./errors.ts";
import { abortableSleep } from "@drover/common";

/** How long starting the podman service may take before it counts as failed. */
export const PODMAN_START_TIMEOUT_MS = 30_000;
/** How long cleanup waits for conmon and `podman container cleanup` to exit on their own. */
const LEFTOVER_PROCESS_GRACE_MS = 3_000;
/** How long a killed instance's veths may take to leave its bridge before it is deleted anyway. */
const BRIDGE_PORTS_GRACE_MS = 3_000;

/** Result of {@linkcode PodmanService.cli}. */
export type PodmanCliResult = CommandResult;

/** A podman service with isolated storage, started by {@linkcode startPodman}. */
export interface PodmanService extends AsyncDisposable {
  /** Path of the service's unix socket (give it to the agent, or to {@linkcode podmanFetch}). */
  readonly socket: string;
  /** The instance directory (storage, run root, configs, service log). */
  readonly dir: string;
  /**
   * Environment for running the podman CLI against this instance (containers.conf,
   * storage.conf, registries.conf, auth file, TMPDIR). With it, a plain `podman ps` sees this
   * instance's containers.
   */
  readonly env: Readonly<Record<string, string>>;
  /** Path of the service log (appended across restarts). */
  readonly logPath: string;
  /** True while the service process runs. */
  readonly running: boolean;
  /** Runs the podman CLI on this instance (never throws on a non-zero exit; check `code`). */
  cli(args: string[]): Promise<PodmanCliResult>;
  /** Stops the REST service only; containers keep running (conmon is independent). */
  stop(): Promise<void>;
  /** Starts the service again (no-op if it runs) and waits for `_ping`. */
  start(): Promise<void>;
  /** {@linkcode PodmanService.stop} then {@linkcode PodmanService.start}. */
  restart(): Promise<void>;
}

/** File locations of a podman instance inside its directory (pure). */
export interface PodmanPaths {
  /** The instance directory. */
  dir: string;
  /** REST API unix socket. */
  socket: string;
  /** Image and container storage (`--root`). */
  storage: string;
  /** Run-time state (`--runroot`). */
  runRoot: string;
  /** libpod tmp dir (`--tmpdir`): alive file, locks, exit files, events log. */
  tmpDir: string;
  /** TMPDIR for image layer staging. */
  imageTmpDir: string;
  /** Network definitions (`network_config_dir`). */
  networkDir: string;
  /** containers.conf (`CONTAINERS_CONF`). */
  containersConf: string;
  /** storage.conf (`CONTAINERS_STORAGE_CONF`). */
  storageConf: string;
  /** registries.conf (`CONTAINERS_REGISTRIES_CONF`). */
  registriesConf: string;
  /** Registry credentials file (`REGISTRY_AUTH_FILE`). */
  authFile: string;
  /** Service log. */
  logPath: string;
}

/** Where each file of the instance in `dir` lives (pure). */
export function podmanPaths(dir: string): PodmanPaths {
  return {
    dir,
    socket: `${dir}/podman.sock`,
    storage: `${dir}/storage`,
    runRoot: `${dir}/run`,
    tmpDir: `${dir}/tmp`,
    imageTmpDir: `${dir}/image-tmp`,
    networkDir: `${dir}/networks`,
    containersConf: `${dir}/containers.conf`,
    storageConf: `${dir}/storage.conf`,
    registriesConf: `${dir}/registries.conf`,
    authFile: `${dir}/auth.json`,
    logPath: `${dir}/service.log`,
  };
}

/** The environment that points podman (CLI or service) at the instance (pure). */
export function podmanEnv(paths: PodmanPaths): Record<string, string> {
  return {
    CONTAINERS_CONF: paths.containersConf,
    CONTAINERS_STORAGE_CONF: paths.storageConf,
    CONTAINERS_REGISTRIES_CONF: paths.registriesConf,
    REGISTRY_AUTH_FILE: paths.authFile,
    // Image pulls and imports stage layers in TMPDIR (default /var/tmp, shared).
    TMPDIR: paths.imageTmpDir,
  };
}

/** The global podman flags that select the instance's storage (pure). */
export function podmanGlobalArgs(paths: PodmanPaths): string[] {
  return ["--root", paths.storage, "--runroot", paths.runRoot, "--tmpdir", paths.tmpDir];
}

/** The config files of an instance, by path (pure); `slot` gives networks it creates a subnet pool. */
export function podmanConfigFiles(paths: PodmanPaths, slot?: number): Record<string, string> {
  const q = JSON.stringify; // TOML basic strings accept JSON string escapes.
  const pool = slot === undefined ? undefined : slotSubnetPool(slot);
  return {
    // As root on these machines containers only start with runc and bounded ulimits
    // (docs/podman-api.md). No systemd: cgroupfs and the file event logger. File locks live in tmp_dir,
    // unlike the default shm locks (/dev/shm/libpod_lock) that every instance would share.
    [paths.containersConf]: [
      "[containers]",
      'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
      'log_driver = "k8s-file"',
      "",
      "[engine]",
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      'lock_type = "file"',
      `tmp_dir = ${q(paths.tmpDir)}`,
      "",
      "[network]",
      'network_backend = "netavark"',
      `network_config_dir = ${q(paths.networkDir)}`,
      ...(pool ? [`default_subnet_pools = [{ base = ${q(pool.base)}, size = ${pool.size} }]`] : []),
      "",
    ].join("\n"),
    [paths.storageConf]: [
      "[storage]",
      'driver = "overlay"',
      `graphroot = ${q(paths.storage)}`,
      `runroot = ${q(paths.runRoot)}`,
      "",
    ].join("\n"),
    // Local test registries serve plain HTTP on 127.0.0.1:<port>. containers/image matches a
    // registry prefix followed by ":" so "127.0.0.1" covers every port; pulls through the REST
    // API therefore work without tlsVerify=false, as they would against a TLS registry.
    [paths.registriesConf]: [
      "unqualified-search-registries = []",
      "",
      "[[registry]]",
      'location = "127.0.0.1"',
      "insecure = true",
      "",
      "[[registry]]",
      'location = "localhost"',
      "insecure = true",
      "",
    ].join("\n"),
    // podman refuses a REGISTRY_AUTH_FILE that does not exist.
    [paths.authFile]: '{ "auths": {} }\n',
  };
}

/**
 * Starts `podman system service` on a fresh isolated instance and waits until it answers
 * `_ping`. Dispose with `await using`: removes every container (also after a failed test),
 * stops the service, unmounts and deletes the instance.
 *
 * @example
 * ```ts
 * await using podman = await startPodman();
 * const res = await podmanFetch(podman.socket, "/v4.0.0/libpod/containers/json?all=true");
 * ```
 *
 * `DROVER_PODMAN=trixie` runs Debian trixie's podman 5.4 instead of the host's, in a
 * cached trixie root in a private mount namespace (`_podman_trixie.ts`); sockets, paths, the CLI
 * and cleanup work the same.
 *
 * @throws {ServiceStartError} with the service log tail if it does not come up.
 */
export async function startPodman(): Promise<PodmanService> {
  const flavour = selectedPodman();
  await sweepAbandonedDirs("podman", (dir) => cleanUpInstance(podmanPaths(dir), undefined));
  const owned = await createOwnedDir("podman");
  let slot: NetworkSlot | undefined;
  try {
    slot = await acquireNetworkSlot();
    const paths = podmanPaths(owned.path);
    for (const dir of [paths.storage, paths.runRoot, paths.tmpDir, paths.imageTmpDir]) {
      await Deno.mkdir(dir, { recursive: true });
    }
    await Deno.mkdir(paths.networkDir, { recursive: true });
    // Inside the trixie root the system lock path is the root's own, shared by every instance.
    const netavarkLock = flavour === "trixie" ? SYSTEM_NETAVARK_LOCK : await sharedNetavarkLock();
    await Deno.symlink(netavarkLock, `${paths.networkDir}/netavark.lock`);
    await Deno.writeTextFile(
      `${paths.networkDir}/podman.json`,
      JSON.stringify(await defaultNetworkDefinition(slot.index), null, 2),
    );
    for (const [path, text] of Object.entries(podmanConfigFiles(paths, slot.index))) {
      await Deno.writeTextFile(path, text);
    }
    const namespace = flavour === "trixie" ? await TrixieNamespace.create(paths.dir) : undefined;
    const service = new IsolatedPodmanService(owned, paths, slot, namespace);
    await service.start();
    return service;
  } catch (error) {
    await cleanUpInstance(podmanPaths(owned.path), slot?.bridge).catch(() => {});
    slot?.release();
    await owned.remove();
    throw error;
  }
}

/** The system podman's network lock; used when present so we also serialise with it. */
const SYSTEM_NETAVARK_LOCK = "/etc/containers/networks/netavark.lock";

/**
 * A lock file shared by every instance for podman's network lock. Podman 4.3 locks
 * `<network_config_dir>/netavark.lock` around each netavark setup/teardown; with a private
 * config dir per instance, parallel instances would run netavark concurrently and race creating
 * its global iptables chains ("Chain already exists"). Linking every instance's lock to one file
 * restores the host-wide serialisation podman normally has (newer podman uses one global lock).
 */
async function sharedNetavarkLock(): Promise<string> {
  try {
    if ((await Deno.stat(SYSTEM_NETAVARK_LOCK)).isFile) return SYSTEM_NETAVARK_LOCK;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const cacheDir = `${tempRoot()}/drover-cache`;
  await Deno.mkdir(cacheDir, { recursive: true });
  const lock = `${cacheDir}/netavark.lock`;
  await Deno.writeFile(lock, new Uint8Array(), { append: true });
  return lock;
}

class IsolatedPodmanService implements PodmanService {
  readonly env: Readonly<Record<string, string>>;
  #process: ManagedProcess | undefined;
  #disposed = false;

  constructor(
    readonly owned: OwnedDir,
    readonly paths: PodmanPaths,
    readonly slot: NetworkSlot,
    readonly namespace?: TrixieNamespace,
  ) {
    this.env = podmanEnv(paths);
  }

  get socket(): string {
    return this.paths.socket;
  }

  get dir(): string {
    return this.paths.dir;
  }

  get logPath(): string {
    return this.paths.logPath;
  }

  get running(): boolean {
    return this.#process?.running ?? false;
  }

  cli(args: string[]): Promise<PodmanCliResult> {
    const { command, args: all } = this.#wrap("podman", [...podmanGlobalArgs(this.paths), ...args]);
    return runCommand(command, all, { env: this.env });
  }

  // The host's podman as is; trixie's inside its namespace.
  #wrap(command: string, args: string[]): { command: string; args: string[] } {
    return this.namespace?.wrap(command, args) ?? { command, args };
  }

  async start(): Promise<void> {
    if (this.running) return;
    const process = await ManagedProcess.spawn({
      ...this.#wrap("podman", [
        ...podmanGlobalArgs(this.paths),
        "system",
        "service",
        "--time=0",
        `unix://${this.paths.socket}`,
      ]),
      env: { ...this.env },
      logPath: this.paths.logPath,
    });
    this.#process = process;
    try {
      await waitUntilReady(process, () => this.#answersPing(), {
        timeoutMs: PODMAN_START_TIMEOUT_MS,
        message: `podman service answers _ping on ${this.paths.socket}`,
      });
    } catch (error) {
      await process.kill();
      throw new ServiceStartError(
        "podman service",
        `no _ping answer on ${this.paths.socket}`,
        await logTail(this.paths.logPath),
        { cause: error },
      );
    }
  }

  async #answersPing(): Promise<boolean> {
    try {
      const res = await podmanFetch(this.paths.socket, "/v4.0.0/libpod/_ping");
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  async stop(): Promise<void> {
    await this.#process?.stop();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      await cleanUpInstance(this.paths, this.slot.bridge, this.#process, this.namespace);
      // Checked before the slot is given back: afterwards the bridge name may be another's.
      if (await bridgeExists(this.slot.bridge)) {
        throw new CleanupError(`podman test instance left its bridge ${this.slot.bridge} behind`);
      }
    } finally {
      this.slot.release();
      await this.owned.remove().catch(() => {});
    }
  }
}

/**
 * Removes every trace of a podman instance from the host except its directory: containers (via
 * the CLI, which also tears down their network), the service, leftover conmon/cleanup processes,
 * runc state of containers the CLI could not remove, mounts and the bridge. A trixie instance
 * (`namespace`, or found by its marker when swept) also loses its mount namespace: every process
 * in it is killed, which drops all of its mounts.
 *
 * @throws {CleanupError} listing processes or mounts that could not be removed.
 */
async function cleanUpInstance(
  paths: PodmanPaths,
  bridge: string | undefined,
  service?: ManagedProcess,
  namespace?: TrixieNamespace,
): Promise<void> {
  const trixie = namespace !== undefined || await isTrixieInstance(paths.dir);
  const podmanArgs = [...podmanGlobalArgs(paths), "rm", "--all", "--force", "--time", "0"];
  // A swept trixie instance has no TrixieNamespace object: enter the namespace through any live
  // process of it. With none left, its mounts are gone and runc below removes the containers.
  const cli = namespace?.wrap("podman", podmanArgs) ??
    (trixie
      ? await enterLeftoverNamespace(paths, podmanArgs)
      : { command: "podman", args: podmanArgs });
  const removal = cli === undefined
    ? { code: 0, stdout: "", stderr: "" }
    : await runCommand(cli.command, cli.args, { env: podmanEnv(paths) });
  await service?.stop();
  bridge ??= await bridgeOf(paths);

  // A service orphaned by a dead test process would never exit on its own.
  const orphanedServices = (await processesReferencing(paths.dir))
    .filter((p) => p.commandLine.includes(" system service "));
  killAll(orphanedServices.map((p) => p.pid));
  // conmon and `podman container cleanup` exit shortly after their container is removed (the
  // namespace holder never does: it goes with its namespace below).
  const exitingOnTheirOwn = async () =>
    (await processesReferencing(paths.dir))
      .filter((p) => !p.commandLine.startsWith(NAMESPACE_HOLDER_NAME));
  let leftovers = await exitingOnTheirOwn();
  for (let waited = 0; leftovers.length > 0 && waited < LEFTOVER_PROCESS_GRACE_MS; waited += 100) {
    await abortableSleep(100);
    leftovers = await exitingOnTheirOwn();
  }
  if (trixie) {
    const inNamespace = await processesReferencing(paths.dir);
    await killMountNamespace([
      ...(namespace ? [namespace.holder.pid] : []),
      ...inNamespace.map((p) => p.pid),
    ]);
    await namespace?.holder.kill();
  }
  killAll((await processesReferencing(paths.dir)).map((p) => p.pid));

  // Containers the CLI could not remove still have runc state and processes: delete them with
  // runc itself (podman's runc state root as root is runc's default, /run/runc; a trixie
  // instance keeps it in its own directory).
  const remainingIds = await containerIdsInStorage(paths);
  if (trixie) await deleteRuncContainers(paths.dir, remainingIds);
  else for (const id of remainingIds) await runCommand("runc", ["delete", "--force", id]);

  const stillMounted = await unmountAllUnder(paths.dir);
  if (bridge !== undefined) await deleteBridge(bridge);

  const stillRunning = await processesReferencing(paths.dir);
  const problems = [
    ...stillRunning.map((p) => `process ${p.pid} still running: ${p.commandLine}`),
    ...stillMounted.map((m) => `still mounted: ${m}`),
  ];
  if (problems.length > 0) {
    const removalNote = removal.code === 0 ? "" : `\npodman rm failed: ${removal.stderr.trim()}`;
    throw new CleanupError(
      `Cannot clean up podman instance ${paths.dir}:\n${problems.join("\n")}${removalNote}`,
    );
  }
}

/** The podman command run inside the mount namespace of a live process of a swept instance. */
async function enterLeftoverNamespace(
  paths: PodmanPaths,
  podmanArgs: string[],
): Promise<{ command: string; args: string[] } | undefined> {
  const own = await Deno.readLink("/proc/self/ns/mnt");
  for (const process of await processesReferencing(paths.dir)) {
    const ns = await Deno.readLink(`/proc/${process.pid}/ns/mnt`).catch(() => own);
    if (ns === own) continue;
    return enterNamespaceOf(process.pid, "podman", podmanArgs);
  }
  return undefined;
}

async function bridgeExists(bridge: string): Promise<boolean> {
  try {
    await Deno.stat(`/sys/class/net/${bridge}`);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Netavark deletes the bridge with the last container, but not after a failed setup or a
 * crash. The slot is ours, so a bridge left behind is ours to delete.
 */
async function deleteBridge(bridge: string): Promise<void> {
  // A killed container's veth goes with its network namespace, which the kernel frees a moment
  // after the last process in it: wait for that, then delete the bridge whatever is left on it
  // (every container of the instance is gone by now).
  for (let waited = 0; waited < BRIDGE_PORTS_GRACE_MS; waited += 100) {
    const ports: string[] = [];
    try {
      for await (const port of Deno.readDir(`/sys/class/net/${bridge}/brif`)) ports.push(port.name);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return; // No such bridge.
      throw error;
    }
    if (ports.length === 0) break;
    await abortableSleep(100);
  }
  if (await bridgeExists(bridge)) await runCommand("ip", ["link", "delete", bridge]);
}

async function containerIdsInStorage(paths: PodmanPaths): Promise<string[]> {
  const ids: string[] = [];
  try {
    for await (const entry of Deno.readDir(`${paths.storage}/overlay-containers`)) {
      if (entry.isDirectory && /^[0-9a-f]{64}$/.test(entry.name)) ids.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return ids;
}

async function bridgeOf(paths: PodmanPaths): Promise<string | undefined> {
  try {
    const network = JSON.parse(await Deno.readTextFile(`${paths.networkDir}/podman.json`));
    return typeof network.network_interface === "string" ? network.network_interface : undefined;
  } catch {
    return undefined;
  }
}

const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * Sends one request to a podman REST socket: `path` is the URL path and query as podman
 * documents it, e.g. `/v4.0.0/libpod/containers/json?all=true`. The request goes to host
 * `libpod` (docs/podman-api.md: other host names make libpod endpoints behave like Docker's).
 *
 * The returned response can be streamed (events, logs, pulls). Read the body to the end or
 * cancel it: that also closes the connection.
 */
export async function podmanFetch(
  socket: string,
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  let response: Response;
  try {
    response = await fetch(`http://libpod${path}`, { ...init, client });
  } catch (error) {
    client.close();
    throw error;
  }
  const meta = {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  };
  if (response.body === null || NULL_BODY_STATUSES.has(response.status)) {
    await response.body?.cancel();
    client.close();
    return new Response(null, meta);
  }
  return new Response(closeWhenDone(response.body, client), meta);
}

/** Passes `body` through and closes `client` once the body is finished or cancelled. */
function closeWhenDone(
  body: ReadableStream<Uint8Array>,
  client: Deno.HttpClient,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let closed = false;
  const closeClient = () => {
    if (!closed) client.close();
    closed = true;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          closeClient();
          controller.close();
        } else {
          controller.enqueue(value);
        }
      } catch (error) {
        closeClient();
        controller.error(error);
      }
    },
    async cancel(reason) {
      try {
        await reader.cancel(reason);
      } finally {
        closeClient();
      }
    },
  });
}
