/**
 * Resumable, checksummed download of one release into a `.part` file: chunks
 * are pulled by offset, so a download interrupted by a restart or a power cut
 * continues where the file ends. Disk use is bounded by the manifest's size
 * (and the manifest's size by MAX_AGENT_ARTIFACT_BYTES).
 *
 * @module
 */

import type { ReleaseManifest } from "@drover/contracts";
import { ReleaseRefusedError } from "./verify.ts";

/** One chunk as the artifact service sent it. */
export interface Chunk {
  bytes: Uint8Array;
  /** The artifact's total size, as the service says. */
  size: number;
}

/** Where chunks come from (the artifact service over NATS, in production). */
export type ChunkSource = (offset: number) => Promise<Chunk>;

/** Bytes already in `part` (0 when absent). */
export async function partSize(part: string): Promise<number> {
  try {
    return (await Deno.stat(part)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
}

/** The SHA-256 of a file, read in pieces (an artifact may be ~90 MB on a 1 GB device). */
export async function sha256File(path: string): Promise<string> {
  // Loaded here, during an update only: a node: module starts Deno's Node compatibility layer.
  const { createHash } = await import("node:crypto");
  const hash = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  const buffer = new Uint8Array(256 * 1024);
  for (;;) {
    const n = await file.read(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

/**
 * Completes `part` for `manifest` from `source`, then checks its sha256.
 * `onProgress` is told the bytes on disk after each chunk.
 *
 * @throws {ReleaseRefusedError} (and deletes the part) when the bytes do not
 * match the signed size or checksum.
 */
export async function downloadRelease(
  part: string,
  manifest: ReleaseManifest,
  source: ChunkSource,
  options: { onProgress?: (bytes: number) => void; signal?: AbortSignal } = {},
): Promise<void> {
  const what = `release ${manifest.version} (${manifest.arch})`;
  let offset = await partSize(part);
  if (offset > manifest.size) {
    await Deno.remove(part);
    offset = 0;
  }
  options.onProgress?.(offset);
  {
    using file = await Deno.open(part, { write: true, create: true, append: true, mode: 0o600 });
    while (offset < manifest.size) {
      options.signal?.throwIfAborted();
      const chunk = await source(offset);
      if (chunk.size !== manifest.size) {
        throw new ReleaseRefusedError(
          `${what} refused: the service says it has ${chunk.size} bytes, the signed manifest ${manifest.size}`,
        );
      }
      if (chunk.bytes.length === 0) {
        throw new Error(`${what}: the service sent no bytes at offset ${offset}`);
      }
      const bytes = chunk.bytes.subarray(0, manifest.size - offset);
      for (let written = 0; written < bytes.length;) {
        written += await file.write(bytes.subarray(written));
      }
      offset += bytes.length;
      options.onProgress?.(offset);
    }
    await file.sync();
  }
  const sha = await sha256File(part);
  if (sha !== manifest.sha256) {
    await Deno.remove(part).catch(() => {});
    throw new ReleaseRefusedError(
      `${what} refused: its sha256 is ${sha}, the signed manifest says ${manifest.sha256}`,
    );
  }
}
