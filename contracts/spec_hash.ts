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
  // Index loops and string appends: this runs on every status change of every
  // device, and destructuring or iterator callbacks allocate per element in the
  // interpreter the agent runs in (`--lite-mode`, bench/agent_cpu.ts).
  if (value === null || typeof value !== "object") {
    const json = JSON.stringify(value);
    return json === undefined ? "null" : json;
  }
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + canonicalJson(value[i]);
    return out + "]";
  }
  const record = value as Record<string, unknown>;
  // Code-unit order, as `a < b`.
  const keys = Object.keys(record).sort();
  let out = "{";
  for (let i = 0; i < keys.length; i++) {
    const member = record[keys[i]!];
    if (member === undefined) continue;
    out += (out.length === 1 ? "" : ",") + JSON.stringify(keys[i]) + ":" + canonicalJson(member);
  }
  return out + "}";
}

/**
 * True when two JSON values have the same {@linkcode canonicalJson} — key
 * order and `undefined` members do not count — without building either string.
 * For JSON data (no NaN, functions or class instances).
 *
 * @example
 * ```ts
 * jsonEqual({ a: 1, b: [2], c: undefined }, { b: [2], a: 1 }); // true
 * ```
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let members = 0;
  for (const key in x) {
    if (!Object.hasOwn(x, key) || x[key] === undefined) continue;
    if (!Object.hasOwn(y, key) || !jsonEqual(x[key], y[key])) return false;
    members++;
  }
  for (const key in y) {
    if (Object.hasOwn(y, key) && y[key] !== undefined) members--;
  }
  return members === 0;
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
