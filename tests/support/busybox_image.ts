/**
 * A tiny test image built from this machine's static busybox, since no public registry is
 * reachable. The rootfs tarball is built once per machine (per busybox build) and cached; each
 * podman instance only imports it.
 *
 * @module
 */

import { runChecked } from "./_exec.ts";
import { tempRoot } from "./_owned_dir.ts";
import { CommandError } from "./errors.ts";
import type { PodmanService } from "./podman.ts";

/** The static busybox binary copied into the image (Debian package busybox-static). */
export const BUSYBOX_PATH = "/bin/busybox";
/** Bump when {@linkcode populateRootfs} changes, so cached tarballs of the old layout are not reused. */
const ROOTFS_LAYOUT_VERSION = 1;
/** Default tag of the imported image. */
export const DEFAULT_BUSYBOX_TAG = "localhost/drover/busybox:latest";
/** The page the image serves by default from /www (e.g. `httpd -f -p 80 -h /www`). */
export const BUSYBOX_INDEX_HTML = "hello from drover busybox\n";

/**
 * Imports the busybox test image into `podman` under `tag` and returns `tag`.
 *
 * The image has /bin/busybox with a symlink per applet (`sh`, `httpd`, `sleep`, `wget`, …),
 * `PATH=/bin`, `CMD ["/bin/sh"]`, /etc/passwd and /etc/group with root, a world-writable /tmp
 * and /www/index.html containing {@linkcode BUSYBOX_INDEX_HTML}.
 *
 * @example
 * ```ts
 * const image = await buildBusyboxImage(podman);
 * await podman.cli(["run", "-d", "-p", `127.0.0.1:${port}:80`, image, "httpd", "-f", "-p", "80", "-h", "/www"]);
 * ```
 *
 * @throws {CommandError} if building the tarball or `podman import` fails.
 */
export async function buildBusyboxImage(
  podman: PodmanService,
  tag: string = DEFAULT_BUSYBOX_TAG,
): Promise<string> {
  const tarball = await busyboxRootfsTarball();
  const result = await podman.cli([
    "import",
    "--change",
    "ENV PATH=/bin",
    "--change",
    'CMD ["/bin/sh"]',
    tarball,
    tag,
  ]);
  if (result.code !== 0) {
    throw new CommandError(["podman", "import", tarball, tag], result.code, result.stderr);
  }
  return tag;
}

/**
 * Path of the cached rootfs tarball, building it first if this busybox build has none yet.
 * Safe to call from parallel processes: each builds under a unique name and renames into place.
 */
export async function busyboxRootfsTarball(): Promise<string> {
  const busybox = await Deno.readFile(BUSYBOX_PATH);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", busybox));
  const key = [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const cacheDir = `${tempRoot()}/drover-cache`;
  const tarball = `${cacheDir}/busybox-rootfs-v${ROOTFS_LAYOUT_VERSION}-${key}.tar`;
  try {
    await Deno.stat(tarball);
    return tarball;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.mkdir(cacheDir, { recursive: true });
  const rootfs = await Deno.makeTempDir({ dir: cacheDir, prefix: "busybox-rootfs-" });
  const partial = `${tarball}.${crypto.randomUUID()}.partial`;
  try {
    await populateRootfs(rootfs);
    await runChecked("tar", [
      "--create",
      "--file",
      partial,
      "--numeric-owner",
      "--owner=0",
      "--group=0",
      "--directory",
      rootfs,
      ".",
    ]);
    await Deno.rename(partial, tarball);
  } finally {
    await Deno.remove(rootfs, { recursive: true }).catch(() => {});
    await Deno.remove(partial).catch(() => {});
  }
  return tarball;
}

async function populateRootfs(rootfs: string): Promise<void> {
  for (const dir of ["bin", "etc", "tmp", "www", "root"]) await Deno.mkdir(`${rootfs}/${dir}`);
  await Deno.chmod(`${rootfs}/tmp`, 0o1777);
  await Deno.copyFile(BUSYBOX_PATH, `${rootfs}/bin/busybox`);
  await Deno.chmod(`${rootfs}/bin/busybox`, 0o755);
  const applets = (await runChecked(BUSYBOX_PATH, ["--list"])).stdout.split("\n")
    .map((name) => name.trim())
    .filter((name) => /^[a-z0-9_.\[-]+$/.test(name) && name !== "busybox");
  for (const applet of applets) await Deno.symlink("busybox", `${rootfs}/bin/${applet}`);
  await Deno.writeTextFile(`${rootfs}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  await Deno.writeTextFile(`${rootfs}/etc/group`, "root:x:0:\n");
  await Deno.writeTextFile(`${rootfs}/www/index.html`, BUSYBOX_INDEX_HTML);
}
