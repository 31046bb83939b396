/**
 * Spec hashes of desired services, computed once per desired value.
 *
 * Hashes are computed here once per value and handed to {@linkcode plan} in
 * {@linkcode PlanOptions.specHashes}, so the planner stays pure and a status
 * update reuses them.
 *
 * @module
 */

import { sha256Hex } from "@drover/common";
import { canonicalJson, serviceHashInput } from "@drover/contracts";
import type { DesiredEntry } from "./desired.ts";
import { hashKey } from "./plan.ts";

// Desired values are immutable once decoded, so a value's hashes never change.
const cache = new WeakMap<object, Map<string, string>>();
/** The same keyed by `<deployment>_<service>`, per entry (entries are immutable too). */
const byEntry = new WeakMap<DesiredEntry, ReadonlyMap<string, string>>();

/**
 * The contract's `specHash` (SHA-256 of the canonical JSON, the
 * `drover.spec-hash` label), computed synchronously: WebCrypto's `digest`
 * hops to a worker thread and back, which cost more than the hash itself on
 * every desired-state change (bench/agent_cpu.ts), and `node:crypto` would
 * load the Node layer on the device (common/sha256.ts). Tested equal to
 * `specHash`.
 */
export function specHashSync(spec: unknown): string {
  return sha256Hex(canonicalJson(spec));
}

/**
 * Spec hash per `<deployment>_<service>` for every valid entry. The hash covers
 * the service spec only (not the revision), so a revision-only change keeps it.
 *
 * It is the hash of the service as the operator wrote it — `image: busybox:1`
 * included — not of the agent's interpretation of it (the fully qualified
 * `docker.io/library/busybox:1` the container is created from). How the agent
 * interprets a spec may change between agent versions; hashing the received
 * value keeps such an upgrade from replacing every running container. The cost:
 * re-spelling an image in a manifest (short → qualified) replaces its
 * container once.
 */
export function serviceHashes(
  entries: Iterable<DesiredEntry>,
): ReadonlyMap<string, string> {
  let out: Map<string, string> | undefined;
  let only: ReadonlyMap<string, string> | undefined;
  for (const entry of entries) {
    if (entry.kind !== "valid") continue;
    const hashes = entryHashes(entry);
    // One entry (every pass and status update asks for one): its cached map as is.
    if (only === undefined && out === undefined) {
      only = hashes;
      continue;
    }
    out ??= new Map(only);
    for (const [key, hash] of hashes) out.set(key, hash);
  }
  return out ?? only ?? new Map();
}

/** Spec hash per `<deployment>_<service>` of one valid entry, computed once per entry. */
function entryHashes(entry: Extract<DesiredEntry, { kind: "valid" }>): ReadonlyMap<string, string> {
  const known = byEntry.get(entry);
  if (known !== undefined) return known;
  let hashes = cache.get(entry.state);
  if (hashes === undefined) {
    hashes = new Map();
    const { score, secrets } = entry.state;
    const versions = new Map((secrets ?? []).map((s) => [s.name, s.version]));
    for (const service of score.services) {
      // Start order is not part of the container: changing it replaces nothing.
      const { depends_on: _order, ...container } = service;
      // Plus mounted configs' content and secrets' versions, only where a service has them.
      hashes.set(
        service.name,
        specHashSync(serviceHashInput(container, score.configs, versions)),
      );
    }
    cache.set(entry.state, hashes);
  }
  const keyed = new Map<string, string>();
  for (const [service, hash] of hashes) keyed.set(hashKey(entry.deployment, service), hash);
  byEntry.set(entry, keyed);
  return keyed;
}
