/**
 * Canonical JSON and the service spec hash stored in the `drover.spec-hash`
 * label: two specs that mean the same thing hash the same, whatever the key
 * order, so a container is replaced only when its spec really changed.
 *
 * @module
 */

import { createHash } from "node:crypto";

/**
 * JSON with object keys sorted at every level and `undefined` members dropped.
 *
 * @example
 * ```ts
 * canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }); // '{"a":[2,{"c":4,"d":3}],"b":1}'
 * ```
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    const json = JSON.stringify(value);
    return json === undefined ? "null" : json;
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/**
 * Hex SHA-256 of the canonical JSON of `spec` (a parsed `PodmanService`).
 * Synchronous: WebCrypto's digest hops to a worker thread and back, which
 * cost an agent more than the hash itself on every desired-state change
 * (bench/agent_cpu.ts).
 */
export function specHashSync(spec: unknown): string {
  return createHash("sha256").update(canonicalJson(spec)).digest("hex");
}

/** {@linkcode specHashSync}, for callers that await it. */
export function specHash(spec: unknown): Promise<string> {
  return Promise.resolve(specHashSync(spec));
}
