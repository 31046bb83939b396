/**
 * podman 5.4 (Debian trixie) for the test harness on a bookworm machine: a trixie root file system
 * built once with `debootstrap` and cached in the repository's `.tmp/`, and a private mount
 * namespace per podman instance whose root is ROOT (pivot_root), in which `podman …` runs with the
 * instance's isolated storage. Selected with `DROVER_PODMAN=trixie` (see {@linkcode startPodman} in `podman.ts`).
 *
 * Why each mount is there (measured, docs/podman-api.md "podman 5.4"):
 * - `mount --bind ROOT ROOT`: without it every image unpack fails with "remount /, flags 0x44000:
 *   invalid argument" (/ must be a mount point); pivot_root needs it too.
 * - pivot_root, not chroot: `runc exec` (podman exec, health checks) joins the container's mount
 *   namespace with setns, which puts the process at the namespace's root mount. Under a mere
 *   chroot that root is the host's /, so health checks ran against the host's file system and
 *   never saw the container's files (measured: `test -e /tmp/ready` kept failing while `ls /tmp`
 *   in `podman exec` listed the host's /tmp). With ROOT pivoted in as the namespace's root, exec
 *   sees the container's own root.
 * - proc, /sys and /dev: podman, conmon and runc need them.
 * - tmpfs on ROOT/run: podman's and runc's run-time state stays per instance and vanishes with
 *   the namespace; the shared ROOT is not written while tests run.
 * - the host's /tmp on ROOT/tmp (and the instance directory and harness cache, if they live
 *   elsewhere): the same `--root/--runroot/--tmpdir` flags, config files, socket path, image
 *   tarballs and bind-mount sources work inside and outside.
 * - ROOT/run/runc bound to `<instance>/runc`: runc's state survives the namespace, so a sweeper
 *   can still delete containers whose conmon died (`runc --root <instance>/runc delete --force`).
 *
 * Nothing is mounted in the host's namespace: when the last process of an instance's namespace
 * exits (the holder, the service, conmon), the kernel drops all of its mounts. Cleanup therefore
 * means killing every process of that namespace ({@linkcode killMountNamespace}).
 *
 * @module
 */

import { runCommand } from "./_exec.ts";
import { killAll } from "./_host.ts";
import { ManagedProcess } from "./_managed_process.ts";
import { tempRoot } from "./_owned_dir.ts";
import { HarnessError } from "./errors.ts";
import { waitFor } from "./wait_for.ts";
import { exists } from "./files.ts";

/** Bump when the root's package list or files change, so an old cached root is not reused. */
export const TRIXIE_ROOT_VERSION = 2;
/**
 * Packages of the trixie root (without nftables published ports fail: "unable to execute nft";
 * netavark only recommends aardvark-dns, which debootstrap leaves out unless named, and without
 * it containers on a deployment's network cannot resolve each other's names).
 */
export const TRIXIE_PACKAGES = [
  "podman",
  "netavark",
  "aardvark-dns",
  "runc",
  "crun",
  "conmon",
  "nftables",
  "iptables",
  "ca-certificates",
];
/** Name (argv[0] prefix) of the process that holds an instance's mount namespace open. */
export const NAMESPACE_HOLDER_NAME = "drover-podman-ns";
/** Marker file in an instance directory naming the trixie root it runs in. */
export const TRIXIE_MARKER = "trixie-root";
/** How long the namespace holder may take to set up its mounts. */
const HOLDER_READY_TIMEOUT_MS = 10_000;

/** Which podman the harness runs, from `DROVER_PODMAN` ("" or "host": Debian's own; "trixie"). */
export function selectedPodman(env = Deno.env.get("DROVER_PODMAN") ?? ""): "host" | "trixie" {
  if (env === "" || env === "host") return "host";
  if (env === "trixie") return "trixie";
  throw new HarnessError(`Cannot select podman as DROVER_PODMAN=${env}: use "host" or "trixie"`);
}

/** `<repo>/.tmp/podman-trixie`: where roots are cached (gitignored). */
export function trixieCacheDir(): string {
  return new URL("../../.tmp/podman-trixie", import.meta.url).pathname;
}

/**
 * The cached trixie root, built first with `debootstrap` (≈ 35 s) if this version has none.
 * Parallel test processes wait on a file lock; only one builds.
 *
 * @throws {HarnessError} if debootstrap is missing or the build fails.
 */
export async function ensureTrixieRoot(): Promise<string> {
  const cache = trixieCacheDir();
  const root = `${cache}/root-v${TRIXIE_ROOT_VERSION}`;
  const stamp = `${root}/.drover-root-v${TRIXIE_ROOT_VERSION}`;
  if (await exists(stamp)) return root;
  await Deno.mkdir(cache, { recursive: true });
  using lock = await Deno.open(`${cache}/build.lock`, { create: true, write: true });
  await lock.lock(true);
  if (await exists(stamp)) return root;
  const partial = `${root}.partial`;
  await Deno.remove(partial, { recursive: true }).catch(() => {});
  const mirror = await debianMirror();
  const built = await runCommand("debootstrap", [
    "--variant=minbase",
    `--include=${TRIXIE_PACKAGES.join(",")}`,
    "trixie",
    partial,
    mirror,
  ]).catch((error) => {
    throw new HarnessError(
      "Cannot build the trixie root: debootstrap is not installed (run: bash scripts/prereqs.sh)",
      { cause: error },
    );
  });
  if (built.code !== 0) {
    throw new HarnessError(
      `Cannot build the trixie root with debootstrap from ${mirror} (exit ${built.code}):\n` +
        (built.stdout + built.stderr).trim().split("\n").slice(-15).join("\n"),
    );
  }
  for (const [path, text] of Object.entries(trixieRootFiles())) {
    await Deno.mkdir(`${partial}${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${partial}${path}`, text);
  }
  await Deno.remove(root, { recursive: true }).catch(() => {});
  await Deno.rename(partial, root);
  await Deno.writeTextFile(stamp, `${new Date().toISOString()}\n`);
  return root;
}

/** Files written into the root after debootstrap, by absolute path inside it (pure). */
export function trixieRootFiles(): Record<string, string> {
  return {
    // Defaults for a podman without systemd; each instance's own containers.conf (CONTAINERS_CONF)
    // repeats these and adds its isolation settings.
    "/etc/containers/containers.conf": [
      "[containers]",
      'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
      "",
      "[engine]",
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      "",
    ].join("\n"),
    // One netavark lock for every trixie instance (they share ROOT): concurrent netavark runs
    // race creating their firewall tables otherwise.
    "/etc/containers/networks/netavark.lock": "",
  };
}

/** The machine's Debian mirror (never a hard-coded host), as scripts/trixie_nats.sh finds it. */
async function debianMirror(): Promise<string> {
  try {
    const text = await Deno.readTextFile("/etc/apt/sources.list.d/debian.sources");
    for (const line of text.split("\n")) {
      if (!line.startsWith("URIs:")) continue;
      const uri = line.slice(5).trim().split(/\s+/).find((u) => !u.includes("security"));
      if (uri) return uri;
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  try {
    const text = await Deno.readTextFile("/etc/apt/sources.list");
    for (const line of text.split("\n")) {
      const fields = line.trim().split(/\s+/);
      if (fields[0] !== "deb" || line.includes("security")) continue;
      const uri = fields.find((f) => /^https?:/.test(f));
      if (uri) return uri;
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  throw new HarnessError("Cannot find the machine's Debian mirror in /etc/apt/sources*");
}

/** The shell script the namespace holder runs (pure); `$1` root, `$2` instance dir, `$3` cache. */
export function holderScript(): string {
  return [
    "set -eu",
    "root=$1 dir=$2 cache=$3",
    "mount --make-rprivate /",
    'mount --bind "$root" "$root"',
    'mount -t proc proc "$root/proc"',
    'mount --rbind /sys "$root/sys"',
    'mount --rbind /dev "$root/dev"',
    'mount -t tmpfs -o mode=755 tmpfs "$root/run"',
    // The host's /tmp itself: test directories there (bind-mount sources of deployments, image
    // tarballs) keep their paths inside the trixie root.
    'mount --rbind /tmp "$root/tmp"',
    'mkdir -p "$root/run/runc" "$dir/runc"',
    'for d in "$dir" "$cache"; do',
    '  if [ ! -d "$root$d" ]; then mkdir -p "$root$d"; mount --bind "$d" "$root$d"; fi',
    "done",
    'mount --bind "$dir/runc" "$root/run/runc"',
    'mkdir -p "$root/.host"',
    'cd "$root"',
    "pivot_root . .host",
    "umount -l /.host",
    'echo ready >"$dir/namespace.ready"',
    // The holder's command line names the instance, so processesReferencing(dir) finds it.
    `exec -a "${NAMESPACE_HOLDER_NAME} $dir" sleep infinity`,
  ].join("\n");
}

/** A private mount namespace with the trixie root set up for one podman instance. */
export class TrixieNamespace {
  private constructor(
    readonly root: string,
    readonly dir: string,
    readonly holder: ManagedProcess,
  ) {}

  /**
   * Builds (or reuses) the root and starts the namespace holder for instance `dir`.
   *
   * @throws {HarnessError} if the root cannot be built or the mounts cannot be set up.
   */
  static async create(dir: string): Promise<TrixieNamespace> {
    const root = await ensureTrixieRoot();
    const cache = `${tempRoot()}/drover-cache`;
    await Deno.mkdir(cache, { recursive: true });
    await Deno.writeTextFile(`${dir}/${TRIXIE_MARKER}`, `${root}\n`);
    const holder = ManagedProcess.spawn({
      command: "unshare",
      args: ["--mount", "--", "bash", "-c", holderScript(), "holder", root, dir, cache],
      logPath: `${dir}/namespace.log`,
    });
    try {
      await waitFor(() => exists(`${dir}/namespace.ready`), {
        timeoutMs: HOLDER_READY_TIMEOUT_MS,
        intervalMs: 20,
        message: `the trixie namespace for ${dir} is set up`,
      });
    } catch (error) {
      await holder.kill();
      throw new HarnessError(
        `Cannot set up the trixie mount namespace for ${dir}: ${await holder.logTail()}`,
        { cause: error },
      );
    }
    return new TrixieNamespace(root, dir, holder);
  }

  /** `command args…` as run inside the namespace, i.e. in the trixie root (pure). */
  wrap(command: string, args: string[]): { command: string; args: string[] } {
    return enterNamespaceOf(this.holder.pid, command, args);
  }
}

/** `command args…` run in the mount namespace of `pid` (setns puts it at that namespace's root). */
export function enterNamespaceOf(
  pid: number,
  command: string,
  args: string[],
): { command: string; args: string[] } {
  return { command: "nsenter", args: [`--mount=/proc/${pid}/ns/mnt`, "--", command, ...args] };
}

/** The mount namespace of `pid` as `mnt:[inode]`, or undefined when it is gone. */
async function mountNamespaceOf(pid: number | "self"): Promise<string | undefined> {
  try {
    return await Deno.readLink(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** Pids of processes in mount namespace `ns`. */
async function processesInNamespace(ns: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    if (await mountNamespaceOf(Number(entry.name)) === ns) pids.push(Number(entry.name));
  }
  return pids;
}

/**
 * Kills every process in the private mount namespace(s) of the given processes (never this
 * process's own namespace), which makes the kernel drop that namespace's mounts. Returns the pids
 * still alive after a short wait.
 */
export async function killMountNamespace(pids: number[]): Promise<number[]> {
  const own = await mountNamespaceOf("self");
  const namespaces = new Set<string>();
  for (const pid of pids) {
    const ns = await mountNamespaceOf(pid);
    if (ns !== undefined && ns !== own) namespaces.add(ns);
  }
  const alive: number[] = [];
  for (const ns of namespaces) {
    killAll(await processesInNamespace(ns));
    try {
      await waitFor(async () => (await processesInNamespace(ns)).length === 0, {
        timeoutMs: 3_000,
        intervalMs: 50,
        message: `mount namespace ${ns} is empty`,
      });
    } catch {
      alive.push(...await processesInNamespace(ns));
    }
  }
  return alive;
}

/** Whether instance `dir` ran podman in a trixie root (its marker file exists). */
export async function isTrixieInstance(dir: string): Promise<boolean> {
  return await exists(`${dir}/${TRIXIE_MARKER}`);
}

/** Deletes containers by id with the runc state kept in `<dir>/runc` (host runc reads it). */
export async function deleteRuncContainers(dir: string, ids: string[]): Promise<void> {
  for (const id of ids) {
    await runCommand("runc", ["--root", `${dir}/runc`, "delete", "--force", id]);
  }
}
