/**
 * Canonical JSON and the service spec hash stored in the `drover.spec-hash`
 * label: two specs that mean the same thing hash the same, whatever the key
 * order, so a container is replaced only when its spec really changed.
 *
 * @module
 */

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

/** Hex SHA-256 of the canonical JSON of `spec` (a parsed `PodmanService`). */
export async function specHash(spec: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(canonicalJson(spec));
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
