/**
 * A stand-in for the official Deno image, for machines that cannot reach any
 * registry: a rootfs holding this machine's own `deno` executable and the
 * shared libraries it links, with the official image's layout (`deno` on
 * PATH, `DENO_DIR=/deno-dir`, a `deno` user with uid 1993), imported with
 * `podman import`. `operator/Containerfile` builds on it via
 * `--build-arg DENO_IMAGE=<tag>`.
 *
 * @module
 */

/** Tag of the local base image. */
export const LOCAL_DENO_BASE_TAG = "localhost/drover/deno-base:2.9.6";

/** Something that runs the podman CLI on one instance (the test harness's `PodmanService`). */
export interface PodmanCli {
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** Shared libraries `binary` loads, from `ldd` (absolute paths). */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const text = await run("ldd", [binary]);
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (match?.[1] !== undefined) out.push(match[1]);
  }
  return out;
}

/**
 * Builds the base rootfs in `workDir` and imports it as `tag`; returns `tag`.
 * Uses the Deno running this code.
 */
export async function buildLocalDenoBase(
  podman: PodmanCli,
  workDir: string,
  tag: string = LOCAL_DENO_BASE_TAG,
): Promise<string> {
  const deno = await Deno.realPath(Deno.execPath());
  const root = `${workDir}/rootfs`;
  await Deno.mkdir(`${root}/usr/bin`, { recursive: true });
  await Deno.copyFile(deno, `${root}/usr/bin/deno`);
  await Deno.chmod(`${root}/usr/bin/deno`, 0o755);
  for (const lib of await sharedLibraries(deno)) {
    const target = `${root}${lib}`;
    await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(await Deno.realPath(lib), target);
  }
  await Deno.mkdir(`${root}/etc`, { recursive: true });
  await Deno.writeTextFile(
    `${root}/etc/passwd`,
    "root:x:0:0:root:/root:/sbin/nologin\ndeno:x:1993:1993:deno:/home/deno:/sbin/nologin\n",
  );
  await Deno.writeTextFile(`${root}/etc/group`, "root:x:0:\ndeno:x:1993:\n");
  for (const dir of ["tmp", "deno-dir", "home/deno", "root"]) {
    await Deno.mkdir(`${root}/${dir}`, { recursive: true });
  }
  await Deno.chmod(`${root}/tmp`, 0o1777);
  await Deno.chown(`${root}/deno-dir`, 1993, 1993);
  await Deno.chown(`${root}/home/deno`, 1993, 1993);
  const tarball = `${workDir}/deno-base.tar`;
  await run("tar", ["-C", root, "-cf", tarball, "."]);
  const imported = await podman.cli([
    "import",
    "--change",
    "ENV PATH=/usr/bin:/bin",
    "--change",
    "ENV DENO_DIR=/deno-dir",
    tarball,
    tag,
  ]);
  if (imported.code !== 0) throw new Error(`podman import failed: ${imported.stderr}`);
  await Deno.remove(tarball);
  await Deno.remove(root, { recursive: true });
  return tag;
}

/**
 * Builds `operator/Containerfile` as `tag` on the local Deno base (built in
 * `workDir`), lending the build this machine's npm cache as an overlay so
 * nothing is downloaded and the build's writes are discarded. Returns the
 * podman CLI result, for the caller to assert on.
 */
export async function buildOperatorImage(
  podman: PodmanCli,
  workDir: string,
  tag: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const base = await buildLocalDenoBase(podman, workDir);
  const repoRoot = new URL("../../", import.meta.url).pathname;
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;
  return await podman.cli([
    "build",
    "--build-arg",
    `DENO_IMAGE=${base}`,
    "--volume",
    `${denoDir}:/deno-dir:O`,
    "--file",
    `${repoRoot}operator/Containerfile`,
    "--tag",
    tag,
    repoRoot,
  ]);
}
