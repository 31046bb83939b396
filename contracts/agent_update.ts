/**
 * Agent self-update: the signed release manifest, the artifact service's
 * requests and replies (`drover.artifact.<device>`), and the update state an
 * agent reports.
 *
 * Devices have no JetStream (docs/security.md), so they cannot read the
 * Object Store the releases live in; `operator serve` answers for it on one
 * private service per device. A device asks three things there: which version
 * it should run (`target`), and the bytes of that release in chunks
 * (`chunk`, pulled by offset so an interrupted download resumes).
 *
 * Trust comes from the release key alone: the operator signs the exact bytes
 * of the manifest JSON (version, arch, kind, size, sha256) with an Ed25519 key
 * whose public half is in the agent's config. The transport, the operator's
 * NATS identity and the object store are not trusted with what runs.
 *
 * @module
 */

import { z } from "zod";
import { assertName } from "./names.ts";

/** Architectures an agent artifact is built for (`uname -m`). */
export const AgentArch = z.enum(["aarch64", "x86_64"]);
/** An architecture. */
export type AgentArch = z.infer<typeof AgentArch>;

/**
 * A release version: what `operator agent publish --version` names and what
 * the device directory of a staged release is called, so it is a single
 * file-name-safe token.
 */
export const AgentReleaseVersion = z.string().regex(
  /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/,
  'must be 1-64 of A-Z a-z 0-9 . + _ -, starting with a letter or digit (e.g. "0.2.0")',
).refine((v) => v !== "factory", { message: '"factory" names the installed agent' });

/**
 * What the artifact is: a self-contained `executable` (deno compile), run
 * directly; or a `bundle` (deno task bundle), run by the installed Deno.
 */
export const AgentArtifactKind = z.enum(["executable", "bundle"]);
/** What the artifact is. */
export type AgentArtifactKind = z.infer<typeof AgentArtifactKind>;

/**
 * Orders release versions like semver, and any other version string
 * sensibly: `+build` is ignored; the rest splits at the first `-` into the
 * release and a pre-release (which sorts before the release itself); each
 * splits at `.`, `-` and `_`, and between digits and letters, into parts
 * compared as numbers when both are digits, else as text (a number sorts before text); a missing part counts
 * as 0. Negative when `a` is older. Pure.
 */
export function compareReleaseVersions(a: string, b: string): number {
  const split = (v: string) => {
    const core = v.split("+")[0] ?? "";
    const dash = core.indexOf("-");
    return dash < 0
      ? [core, undefined] as const
      : [core.slice(0, dash), core.slice(dash + 1)] as const;
  };
  // "rc10" is ["rc", "10"]: digits inside a part compare as numbers too.
  const parts = (text: string) => text.split(/[._-]/).flatMap((p) => p.match(/\d+|\D+/g) ?? [""]);
  const comparePart = (x: string, y: string): number => {
    const xn = /^\d+$/.test(x);
    const yn = /^\d+$/.test(y);
    if (xn && yn) return Math.sign(Number(x) - Number(y));
    if (xn !== yn) return xn ? -1 : 1;
    return x < y ? -1 : x > y ? 1 : 0;
  };
  const compareParts = (x: string[], y: string[], missing: string): number => {
    for (let i = 0; i < Math.max(x.length, y.length); i++) {
      const c = comparePart(x[i] ?? missing, y[i] ?? missing);
      if (c !== 0) return c;
    }
    return 0;
  };
  const [aCore, aPre] = split(a);
  const [bCore, bPre] = split(b);
  const core = compareParts(parts(aCore), parts(bCore), "0");
  if (core !== 0) return core;
  if (aPre === undefined || bPre === undefined) {
    return aPre === bPre ? 0 : aPre === undefined ? 1 : -1;
  }
  return compareParts(parts(aPre), parts(bPre), "");
}

/** Largest artifact accepted (a compiled agent is ~90 MB). */
export const MAX_AGENT_ARTIFACT_BYTES = 256 * 1024 * 1024;

/** The signed facts about one artifact. Strict: a signer never adds unknown keys. */
export const ReleaseManifest = z.strictObject({
  version: AgentReleaseVersion,
  arch: AgentArch,
  kind: AgentArtifactKind,
  size: z.number().int().positive().max(MAX_AGENT_ARTIFACT_BYTES),
  /** Lower-case hex SHA-256 of the whole artifact. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lower-case hex digits"),
  /** RFC 3339 time of publishing (informational). */
  published_at: z.iso.datetime(),
  /**
   * Signed as a rollback: agents running a newer version accept it. Without
   * it an agent refuses a version older than the one it runs, so whoever
   * holds the operator's NATS identity cannot put back an old release with a
   * known hole (`agent publish --rollback`).
   */
  rollback: z.literal(true).optional(),
});
/** The signed facts about one artifact. */
export type ReleaseManifest = z.infer<typeof ReleaseManifest>;

/**
 * A manifest with its signature. `manifest` is the JSON text exactly as
 * signed (no re-serialisation on either side); `signature` is the base64
 * Ed25519 signature of its UTF-8 bytes.
 */
export const SignedRelease = z.object({
  manifest: z.string().min(2).max(4096),
  signature: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, "must be base64").max(200),
});
/** A manifest with its signature. */
export type SignedRelease = z.infer<typeof SignedRelease>;

/** Prefix of the public release key as written in `[update] release_key`. */
export const RELEASE_KEY_PREFIX = "ed25519:";

/** `ed25519:` + base64url of the raw 32-byte public key. */
export const ReleasePublicKey = z.string().regex(
  /^ed25519:[A-Za-z0-9_-]{43}$/,
  'must be "ed25519:" followed by 43 base64url characters (from "operator agent key")',
);

/** Prefix of the artifact service: `drover.artifact.<device>`. */
export const ARTIFACT_PREFIX = "drover.artifact";
/** Queue group of the operators answering it. */
export const ARTIFACT_QUEUE = "drover-operator";

/** Subject device `device` asks the artifact service on. */
export function artifactSubject(device: string): string {
  return `${ARTIFACT_PREFIX}.${assertName("device id", device)}`;
}

/**
 * Bytes per chunk: with NATS headers well below the devices' 256 KiB payload
 * limit, and small enough that a slow link finishes one in a request timeout.
 */
export const ARTIFACT_CHUNK_BYTES = 128 * 1024;

/** A request to the artifact service. Strict: the operator answers only what it knows. */
export const ArtifactRequest = z.discriminatedUnion("op", [
  /** Which version should this device run? */
  z.strictObject({ op: z.literal("target"), arch: AgentArch }),
  /** `ARTIFACT_CHUNK_BYTES` bytes of a release from `offset`. */
  z.strictObject({
    op: z.literal("chunk"),
    version: AgentReleaseVersion,
    arch: AgentArch,
    offset: z.number().int().nonnegative().max(MAX_AGENT_ARTIFACT_BYTES),
  }),
]);
/** A request to the artifact service. */
export type ArtifactRequest = z.infer<typeof ArtifactRequest>;

/**
 * The answer to `target`: the version the operator wants on this device and
 * its signed manifest for the device's arch, or `version: null` when no
 * rollout names the device. Stripping: newer operators may add fields.
 */
export const ArtifactTargetReply = z.union([
  z.object({ version: z.null() }),
  z.object({ version: AgentReleaseVersion, release: SignedRelease }),
  z.object({ error: z.string().max(500) }),
]);
/** The answer to `target`. */
export type ArtifactTargetReply = z.infer<typeof ArtifactTargetReply>;

/**
 * Headers of a `chunk` reply; its body is the raw bytes (possibly empty at the
 * end). On failure only {@linkcode ARTIFACT_ERROR_HEADER} is set.
 */
export const ARTIFACT_OFFSET_HEADER = "Drover-Offset";
/** Total size of the artifact, on every chunk reply. */
export const ARTIFACT_SIZE_HEADER = "Drover-Size";
/** Why the service cannot answer (unknown release, operator not ready, bad request). */
export const ARTIFACT_ERROR_HEADER = "Drover-Error";
/**
 * Set with {@linkcode ARTIFACT_ERROR_HEADER} when the refusal is only for now
 * (the device is over its rate, or the service is at its limit): milliseconds
 * to wait before asking again.
 */
export const ARTIFACT_RETRY_AFTER_HEADER = "Drover-Retry-After-Ms";

/** Where an agent is in updating itself. */
export const AgentUpdatePhase = z.enum([
  /** Running what the operator wants (or no rollout names it). */
  "idle",
  /** Fetching the wanted release. */
  "downloading",
  /** Verified and staged; about to switch and restart. */
  "staged",
  /** The new version runs on trial: it must connect, reconcile and report before its deadline. */
  "trial",
  /** The wanted release was refused or rolled back; the message says why. */
  "failed",
]);
/** Where an agent is in updating itself. */
export type AgentUpdatePhase = z.infer<typeof AgentUpdatePhase>;

/** The update part of `agent-status/<device>`. Stripping: newer agents may add fields. */
export const AgentUpdateStatus = z.object({
  /** The release this agent was started from, or `factory` (the installed one). */
  running: z.string().max(64),
  /** The version the operator wants, when a rollout names this device. */
  wanted: z.string().max(64).optional(),
  phase: AgentUpdatePhase,
  /** Bytes downloaded of `size`, while downloading. */
  downloaded: z.number().int().nonnegative().optional(),
  size: z.number().int().nonnegative().optional(),
  /** Why the update failed, in one short line. */
  message: z.string().max(500).optional(),
});
/** The update part of the status. */
export type AgentUpdateStatus = z.infer<typeof AgentUpdateStatus>;

/** The KV bucket holding the agent version each device should run: key = device id. */
export const BUCKET_AGENT_UPDATES = "agent-updates";
/** The Object Store bucket holding release artifacts: object `<version>/<arch>`. */
export const OBJECT_STORE_AGENT_RELEASES = "agent-releases";

/** Object name of a release artifact in {@linkcode OBJECT_STORE_AGENT_RELEASES}. */
export function releaseObjectName(version: string, arch: AgentArch): string {
  return `${AgentReleaseVersion.parse(version)}/${arch}`;
}

/** The value of `agent-updates/<device>`: the version it should run. */
export const AgentUpdateTarget = z.strictObject({
  version: AgentReleaseVersion,
  /** RFC 3339 time the rollout wrote it. */
  requested_at: z.iso.datetime(),
});
/** The value of `agent-updates/<device>`. */
export type AgentUpdateTarget = z.infer<typeof AgentUpdateTarget>;
