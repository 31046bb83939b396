/**
 * Agent releases: stored in the `agent-releases` Object Store of the `DROVER`
 * account (object `<version>/<arch>`, the signed manifest in its metadata),
 * the version each device should run in the `agent-updates` KV bucket, and
 * the artifact service that serves both to devices on
 * `drover.artifact.<device>` — devices have no JetStream and cannot read the
 * store themselves (docs/security.md).
 *
 * @module
 */

import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { headers } from "@nats-io/transport-node";
import { type ObjectStore, Objm } from "@nats-io/obj";
import type { KV } from "@nats-io/kv";
import { getLogger } from "@logtape/logtape";
import {
  type AgentArch,
  type AgentArtifactKind,
  AgentUpdateTarget,
  ARTIFACT_CHUNK_BYTES,
  ARTIFACT_ERROR_HEADER,
  ARTIFACT_OFFSET_HEADER,
  ARTIFACT_PREFIX,
  ARTIFACT_QUEUE,
  ARTIFACT_RETRY_AFTER_HEADER,
  ARTIFACT_SIZE_HEADER,
  ArtifactRequest,
  type ArtifactTargetReply,
  BUCKET_AGENT_UPDATES,
  isValidName,
  MAX_AGENT_ARTIFACT_BYTES,
  OBJECT_STORE_AGENT_RELEASES,
  type ReleaseManifest,
  releaseObjectName,
  SignedRelease,
} from "@drover/contracts";
import { signRelease } from "../auth/release_key.ts";
import { openBucket } from "../nats/kv.ts";
import { DeviceGate, FloodReport } from "../fleet/device_gate.ts";

const log = getLogger(["drover", "operator", "artifacts"]);

/** Object metadata key holding the signed release (JSON of {@linkcode SignedRelease}). */
export const RELEASE_METADATA_KEY = "drover-release";

/**
 * Opens (creating when missing, with `replicas` copies in a cluster) the
 * release store and the wanted-version bucket.
 */
export async function openReleaseStores(
  nc: NatsConnection,
  replicas = 1,
): Promise<{ releases: ObjectStore; updates: KV }> {
  const releases = await new Objm(nc).create(OBJECT_STORE_AGENT_RELEASES, { replicas });
  const updates = await openBucket(nc, BUCKET_AGENT_UPDATES, { history: 1, replicas });
  return { releases, updates: updates! };
}

/** Lower-case hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What {@linkcode publishRelease} needs. */
export interface PublishInput {
  bytes: Uint8Array<ArrayBuffer>;
  version: string;
  arch: AgentArch;
  kind: AgentArtifactKind;
  signingKey: CryptoKey;
  /** Sign it as a rollback: agents running a newer version accept it (they refuse it otherwise). */
  rollback?: boolean;
}

/** How long a device refused for now is told to wait before asking again. */
const RETRY_AFTER_MS = 1_000;

/**
 * Answers `msg` with an error header only (the requester may be gone: then
 * nothing); `retry`: the refusal is only for now.
 */
function respondError(msg: Msg, error: string, retry = false): void {
  const h = headers();
  h.set(ARTIFACT_ERROR_HEADER, error.slice(0, 300));
  if (retry) h.set(ARTIFACT_RETRY_AFTER_HEADER, String(RETRY_AFTER_MS));
  try {
    msg.respond(new Uint8Array(), { headers: h });
  } catch {
    // The connection is closing; the requester times out.
  }
}

/** Signs and stores one artifact; returns its manifest. */
export async function publishRelease(
  releases: ObjectStore,
  input: PublishInput,
): Promise<ReleaseManifest> {
  if (input.bytes.length === 0 || input.bytes.length > MAX_AGENT_ARTIFACT_BYTES) {
    throw new RangeError(
      `Cannot publish an artifact of ${input.bytes.length} bytes: it must be 1 to ` +
        `${MAX_AGENT_ARTIFACT_BYTES} bytes`,
    );
  }
  const manifest: ReleaseManifest = {
    version: input.version,
    arch: input.arch,
    kind: input.kind,
    size: input.bytes.length,
    sha256: await sha256Hex(input.bytes),
    published_at: new Date().toISOString(),
    ...(input.rollback === true ? { rollback: true as const } : {}),
  };
  const signed = await signRelease(input.signingKey, manifest);
  await releases.putBlob({
    name: releaseObjectName(input.version, input.arch),
    description: `Drover agent ${input.version} for ${input.arch} (${input.kind})`,
    metadata: { [RELEASE_METADATA_KEY]: JSON.stringify(signed) },
    options: { max_chunk_size: ARTIFACT_CHUNK_BYTES },
  }, input.bytes);
  return manifest;
}

/** The signed release of `version`/`arch`, or undefined when it was never published. */
export async function readSignedRelease(
  releases: ObjectStore,
  version: string,
  arch: AgentArch,
): Promise<SignedRelease | undefined> {
  const info = await releases.info(releaseObjectName(version, arch));
  if (info === null || info.deleted) return undefined;
  const text = info.metadata?.[RELEASE_METADATA_KEY];
  if (text === undefined) return undefined;
  return SignedRelease.parse(JSON.parse(text));
}

/** Architectures `version` was published for. */
export async function publishedArches(
  releases: ObjectStore,
  version: string,
): Promise<AgentArch[]> {
  const out: AgentArch[] = [];
  for (const arch of ["aarch64", "x86_64"] as const) {
    if (await readSignedRelease(releases, version, arch) !== undefined) out.push(arch);
  }
  return out;
}

/** Writes the version `device` should run. */
export async function setWantedVersion(
  updates: KV,
  device: string,
  version: string,
): Promise<void> {
  const value: AgentUpdateTarget = { version, requested_at: new Date().toISOString() };
  await updates.put(device, JSON.stringify(AgentUpdateTarget.parse(value)));
}

/** The version `device` should run, or null. */
export async function wantedVersion(updates: KV, device: string): Promise<string | null> {
  const entry = await updates.get(device);
  if (entry === null || entry.operation !== "PUT") return null;
  const parsed = AgentUpdateTarget.safeParse(entry.json());
  return parsed.success ? parsed.data.version : null;
}

/**
 * Memory for artifacts being served: a fleet pulls the same one or two, and
 * the largest allowed is {@linkcode MAX_AGENT_ARTIFACT_BYTES}.
 */
export const ARTIFACT_CACHE_BYTES = 2 * MAX_AGENT_ARTIFACT_BYTES;
/**
 * An artifact used within this long is never evicted for another: requests
 * that alternate between artifacts (a device naming the other architecture
 * each time) are refused as busy instead of re-reading whole artifacts.
 */
export const ARTIFACT_MIN_RESIDENCY_MS = 60_000;

/** The cache has no room for another artifact right now. */
export class ArtifactCacheBusyError extends Error {
  override name = "ArtifactCacheBusyError";
}

/**
 * Artifacts in memory, within a byte budget, least recently used evicted
 * first, but only once idle for {@linkcode ARTIFACT_MIN_RESIDENCY_MS}. Pure
 * bookkeeping: the caller loads the bytes.
 */
export class ArtifactCache {
  readonly #budget: number;
  readonly #minResidencyMs: number;
  readonly #entries = new Map<
    string,
    { bytes: Promise<Uint8Array>; size: number; usedAt: number }
  >();
  #bytes = 0;

  constructor(budgetBytes = ARTIFACT_CACHE_BYTES, minResidencyMs = ARTIFACT_MIN_RESIDENCY_MS) {
    this.#budget = budgetBytes;
    this.#minResidencyMs = minResidencyMs;
  }

  /** Names held, least recently used first. */
  get names(): string[] {
    return [...this.#entries.keys()];
  }

  /** The bytes of `name` if held (and marks it used at `now`). */
  get(name: string, now: number): Promise<Uint8Array> | undefined {
    const entry = this.#entries.get(name);
    if (entry === undefined) return undefined;
    entry.usedAt = now;
    this.#entries.delete(name);
    this.#entries.set(name, entry);
    return entry.bytes;
  }

  /**
   * Holds `bytes` (of `size`) as `name`, evicting idle entries to make room.
   *
   * @throws {ArtifactCacheBusyError} the entries in the way were used too recently
   */
  put(
    name: string,
    size: number,
    bytes: () => Promise<Uint8Array>,
    now: number,
  ): Promise<Uint8Array> {
    if (size > this.#budget) throw new ArtifactCacheBusyError(`${name} is larger than the cache`);
    const evict: string[] = [];
    let free = this.#budget - this.#bytes;
    for (const [held, entry] of this.#entries) {
      if (free >= size) break;
      if (now - entry.usedAt < this.#minResidencyMs) continue;
      evict.push(held);
      free += entry.size;
    }
    if (free < size) {
      throw new ArtifactCacheBusyError(`no room for ${name}: the artifacts held are in use`);
    }
    for (const held of evict) this.forget(held);
    const promise = bytes();
    this.#entries.set(name, { bytes: promise, size, usedAt: now });
    this.#bytes += size;
    promise.catch(() => {
      if (this.#entries.get(name)?.bytes === promise) this.forget(name);
    });
    return promise;
  }

  /** Drops `name`. */
  forget(name: string): void {
    const entry = this.#entries.get(name);
    if (entry === undefined) return;
    this.#entries.delete(name);
    this.#bytes -= entry.size;
  }
}

/** Options of {@linkcode ArtifactService}. */
export interface ArtifactServiceOptions {
  /** Copies of the release store and bucket when they are created (`serve --replicas`). */
  replicas?: number;
  /** Bytes of artifacts kept in memory for chunk requests (default {@linkcode ARTIFACT_CACHE_BYTES}). */
  cacheBytes?: number;
  /** Refusals of devices over their rate are reported here (one per operator process). */
  floods?: FloodReport;
  /**
   * Called before a chunk is answered; tests use it to hold a download at a
   * known offset (a fault a real network cannot produce on demand).
   */
  beforeChunk?: (device: string, offset: number) => Promise<void>;
}

/**
 * Answers `drover.artifact.<device>`: `target` from `agent-updates/<device>`
 * and the release's signed manifest; `chunk` from the artifact's bytes, held
 * in an in-memory {@linkcode ArtifactCache} (the whole fleet pulls the same
 * artifact). Every request passes the device's gate first (its rate, the
 * service's cap on requests in progress), refused from memory before any
 * parsing or read.
 */
export class ArtifactService implements AsyncDisposable {
  readonly #nc: NatsConnection;
  readonly #options: ArtifactServiceOptions;
  #stores: Promise<{ releases: ObjectStore; updates: KV }> | undefined;
  readonly #cache: ArtifactCache;
  readonly #gate: DeviceGate;
  #subscription: Subscription | undefined;
  #chunks = 0;
  #targets = 0;

  constructor(nc: NatsConnection, options: ArtifactServiceOptions = {}) {
    this.#nc = nc;
    this.#options = options;
    this.#cache = new ArtifactCache(options.cacheBytes);
    this.#gate = new DeviceGate("artifact", options.floods ?? new FloodReport());
  }

  /** Chunk requests answered so far. */
  get chunksServed(): number {
    return this.#chunks;
  }

  /** `target` requests answered so far. */
  get targetsAnswered(): number {
    return this.#targets;
  }

  /** Creates the stores if needed and starts answering. */
  async start(): Promise<void> {
    this.#stores = openReleaseStores(this.#nc, this.#options.replicas);
    await this.#stores;
    this.#subscription = this.#nc.subscribe(`${ARTIFACT_PREFIX}.*`, {
      queue: ARTIFACT_QUEUE,
      callback: (error, msg) => {
        if (error === null) this.#admit(msg);
      },
    });
  }

  #admit(msg: Msg): void {
    if (!msg.reply) return;
    const device = msg.subject.slice(ARTIFACT_PREFIX.length + 1);
    const ticket = this.#gate.admit(device);
    if (!ticket.ok) {
      const why = ticket.reason === "rate" ? "too many requests: slow down" : "busy: retry";
      respondError(msg, why, true);
      return;
    }
    void this.#answer(msg, device).finally(ticket.release);
  }

  async #answer(msg: Msg, device: string): Promise<void> {
    const fail = (error: string) => respondError(msg, error);
    try {
      if (!isValidName(device)) return fail("invalid device id");
      if (msg.data.length > 1024) return fail("request too large");
      let json: unknown;
      try {
        json = JSON.parse(new TextDecoder().decode(msg.data));
      } catch {
        return fail("request is not JSON");
      }
      const request = ArtifactRequest.safeParse(json);
      if (!request.success) return fail("invalid request");
      const { releases, updates } = await this.#stores!;
      if (request.data.op === "target") {
        const version = await wantedVersion(updates, device);
        let reply: ArtifactTargetReply;
        if (version === null) reply = { version: null };
        else {
          const release = await readSignedRelease(releases, version, request.data.arch);
          reply = release === undefined
            ? { error: `release ${version} was not published for ${request.data.arch}` }
            : { version, release };
        }
        msg.respond(new TextEncoder().encode(JSON.stringify(reply)));
        this.#targets++;
        return;
      }
      const { version, arch, offset } = request.data;
      // Only the release this device is meant to run: nothing else is readable.
      if (await wantedVersion(updates, device) !== version) {
        return fail(`release ${version} is not the one wanted for ${device}`);
      }
      const bytes = await this.#artifact(releases, version, arch);
      if (bytes === undefined) return fail(`release ${version} was not published for ${arch}`);
      if (offset > bytes.length) return fail(`offset ${offset} is past the end (${bytes.length})`);
      await this.#options.beforeChunk?.(device, offset);
      const h = headers();
      h.set(ARTIFACT_OFFSET_HEADER, String(offset));
      h.set(ARTIFACT_SIZE_HEADER, String(bytes.length));
      msg.respond(bytes.subarray(offset, offset + ARTIFACT_CHUNK_BYTES), { headers: h });
      this.#chunks++;
    } catch (e) {
      if (e instanceof ArtifactCacheBusyError) return respondError(msg, "busy: retry", true);
      log.warn("Cannot answer artifact request of {device}: {error}", {
        device,
        error: (e as Error).message,
      });
      fail("the operator cannot read the release store");
    }
  }

  async #artifact(
    releases: ObjectStore,
    version: string,
    arch: AgentArch,
  ): Promise<Uint8Array | undefined> {
    const name = releaseObjectName(version, arch);
    const now = Date.now();
    let bytes = this.#cache.get(name, now);
    if (bytes === undefined) {
      const info = await releases.info(name);
      if (info === null || info.deleted) return undefined;
      bytes = this.#cache.get(name, now) ?? this.#cache.put(name, info.size, async () => {
        const blob = await releases.getBlob(name);
        if (blob === null) throw new Error(`no object ${name}`);
        return blob;
      }, now);
    }
    try {
      return await bytes;
    } catch {
      return undefined;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#subscription?.unsubscribe();
    await this.#subscription?.closed;
  }
}
