/**
 * The agent's shipped artifacts: the bundle (`deno task bundle`), the
 * aarch64 Deno next to it, and the compiled executable (`deno task compile`,
 * which needs a `denort` runtime this machine cannot download).
 *
 * @module
 */

import { run } from "./process.ts";

/** Sizes of what exists in dist/, with notes on what does not. */
export interface ArtifactSizes {
  items: { name: string; bytes: number | null; size: string }[];
  notes: string[];
}

/** How the agent runs under qemu (see `device.ts`), or why it was skipped. */
export interface Aarch64Result {
  summary: string;
  startToFirstStatusMs?: number;
  startToReadyMs?: number;
  idleCpuPercent?: number;
  rssMiB?: number;
}

/** Paths of the bundle artifacts, relative to the repository root. */
export const DIST = {
  bundle: "dist/drover-agent.bundle.js",
  arm64Deno: "dist/deno-aarch64",
} as const;

const COMPILED = [
  "dist/drover-agent-x86_64-unknown-linux-gnu",
  "dist/drover-agent-aarch64-unknown-linux-gnu",
];

async function size(path: string): Promise<number | null> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return null;
  }
}

function human(bytes: number | null, missing: string): string {
  if (bytes === null) return missing;
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB (${bytes} bytes)`;
}

/**
 * Builds the bundle with `deno task bundle` if it is missing (when the task
 * exists), then reports sizes.
 */
export async function artifactSizes(
  root: string,
  progress: (s: string) => void,
): Promise<ArtifactSizes> {
  const notes: string[] = [];
  if (await size(`${root}/${DIST.bundle}`) === null) {
    const tasks = JSON.parse(await Deno.readTextFile(`${root}/deno.json`)).tasks ?? {};
    if (tasks.bundle) {
      progress("artifacts: building the bundle with `deno task bundle`");
      const out = await run(Deno.execPath(), ["task", "bundle"]);
      if (out.code !== 0) notes.push(`deno task bundle failed: ${out.stderr.trim().slice(-400)}`);
    } else notes.push("no `bundle` task in deno.json");
  }
  const items = [];
  const bundle = await size(`${root}/${DIST.bundle}`);
  items.push({
    name: `agent bundle (${DIST.bundle})`,
    bytes: bundle,
    size: human(bundle, "missing"),
  });
  const gz = bundle === null ? null : await gzipSize(`${root}/${DIST.bundle}`);
  items.push({ name: "agent bundle, gzip -9", bytes: gz, size: human(gz, "–") });
  const arm = await size(`${root}/${DIST.arm64Deno}`);
  items.push({
    name: `aarch64 Deno runtime (${DIST.arm64Deno})`,
    bytes: arm,
    size: human(arm, "missing"),
  });
  const native = await size(Deno.execPath());
  items.push({
    name: `x86_64 Deno runtime (${Deno.execPath()})`,
    bytes: native,
    size: human(native, "missing"),
  });
  for (const path of COMPILED) {
    const bytes = await size(`${root}/${path}`);
    items.push({
      name: `compiled executable (${path})`,
      bytes,
      size: human(
        bytes,
        "not built: `deno compile` needs the denort runtime, which cannot be downloaded on this machine (no DENORT_BIN)",
      ),
    });
  }
  return { items, notes };
}

async function gzipSize(path: string): Promise<number | null> {
  const out = await new Deno.Command("gzip", { args: ["-9", "-c", path], stdout: "piped" })
    .output().catch(() => undefined);
  return out && out.code === 0 ? out.stdout.length : null;
}
