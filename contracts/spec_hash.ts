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

/**
 * What a service's spec hash covers: the service as written, plus — only
 * when it mounts configs or secrets — the content of each config it mounts
 * and the version (never the value) of each secret. A service without them
 * hashes exactly as before they existed, so an upgrade replaces nothing.
 */
export function serviceHashInput(
  service: object & {
    configs?: readonly (string | { source: string })[] | undefined;
    secrets?: readonly (string | { source: string })[] | undefined;
  },
  configs: Readonly<Record<string, { content: string }>> | undefined,
  secretVersions: ReadonlyMap<string, number>,
): unknown {
  const sourceOf = (ref: string | { source: string }) => typeof ref === "string" ? ref : ref.source;
  const mountedConfigs = (service.configs ?? []).map(sourceOf);
  const mountedSecrets = (service.secrets ?? []).map(sourceOf);
  if (mountedConfigs.length === 0 && mountedSecrets.length === 0) return service;
  return {
    service,
    ...(mountedConfigs.length > 0
      ? {
        config_content: Object.fromEntries(
          mountedConfigs.map((name) => [name, configs?.[name]?.content ?? null]),
        ),
      }
      : {}),
    ...(mountedSecrets.length > 0
      ? {
        secret_versions: Object.fromEntries(
          mountedSecrets.map((name) => [name, secretVersions.get(name) ?? null]),
        ),
      }
      : {}),
  };
}
