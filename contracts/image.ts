/**
 * Container image references (`[registry/]repository[:tag][@digest]`).
 *
 * The agent needs the registry host to pick credentials and to enforce the
 * device's registry allow-list, and the tag to decide whether to pull.
 *
 * A short name (`busybox:1`, `fedora:39`) must never reach podman: podman
 * resolves it through registries.conf short-name aliases and search
 * registries, and matches it against any local image whose name ends in
 * `/busybox:1` — so the registry the allow-list checked would not be the one
 * the container comes from. {@linkcode normalizeImageReference} gives the one
 * fully qualified string (Docker's rules) that the check, the pull, the
 * presence check and the create all use.
 *
 * @module
 */

/** Registry assumed for references without a registry host, as podman and docker do. */
export const DEFAULT_REGISTRY = "docker.io";
/** Docker's legacy name for {@linkcode DEFAULT_REGISTRY}; normalised to it, as Docker does. */
export const LEGACY_DEFAULT_REGISTRY = "index.docker.io";
/** Tag assumed when a reference has neither tag nor digest. */
export const DEFAULT_TAG = "latest";

/** A parsed image reference. */
export interface ImageReference {
  /** Registry host with optional port, e.g. `"registry.example.com:5000"`. */
  registry: string;
  /** Repository path without registry, e.g. `"library/nginx"`. */
  repository: string;
  /** Tag, when one was given. */
  tag?: string;
  /** Digest (`sha256:…`), when one was given. */
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;

/** Longest image reference accepted. */
export const IMAGE_REFERENCE_MAX_LENGTH = 512;

/**
 * Parses an image reference, or returns a string that says what is wrong.
 *
 * @example
 * ```ts
 * parseImageReference("127.0.0.1:5000/demo/web:1.2");
 * // { registry: "127.0.0.1:5000", repository: "demo/web", tag: "1.2" }
 * ```
 */
export function parseImageReference(ref: string): ImageReference | string {
  if (ref.length === 0) return "must not be empty";
  if (ref.length > IMAGE_REFERENCE_MAX_LENGTH) {
    return `must be at most ${IMAGE_REFERENCE_MAX_LENGTH} characters`;
  }
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return `invalid digest ${JSON.stringify(digest)}`;
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) return `invalid tag ${JSON.stringify(tag)}`;
  }
  const parts = rest.split("/");
  let registry = DEFAULT_REGISTRY;
  const first = parts[0] ?? "";
  if (
    parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost" ||
      first.startsWith("["))
  ) {
    if (!HOST.test(first)) return `invalid registry host ${JSON.stringify(first)}`;
    registry = first.toLowerCase() === LEGACY_DEFAULT_REGISTRY ? DEFAULT_REGISTRY : first;
    parts.shift();
  }
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) {
    return `invalid repository ${JSON.stringify(parts.join("/"))}: ` +
      "path components must be lower-case letters, digits and separators (. _ __ -)";
  }
  const repository = registry === DEFAULT_REGISTRY && parts.length === 1
    ? `library/${parts[0]}`
    : parts.join("/");
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** True when `host` is a valid registry host with optional port (e.g. `"127.0.0.1:5000"`). */
export function isRegistryHost(host: string): boolean {
  return HOST.test(host);
}

/** A fully qualified image reference: see {@linkcode normalizeImageReference}. */
export interface NormalizedImageReference extends ImageReference {
  /** Registry host in lower case (DNS names are case-insensitive). */
  registry: string;
  /** `registry/repository:tag`, `registry/repository@digest` or both: what podman is given. */
  name: string;
}

/**
 * The fully qualified form of an image reference, by Docker's rules: a first
 * path component is a registry host only when it contains "." or ":" or is
 * "localhost" (else the registry is `docker.io`); a one-component repository
 * on docker.io is `library/NAME`; the tag is `latest` unless a tag or digest
 * is given. Returns a string that says what is wrong for an invalid one.
 *
 * Idempotent: normalising `name` again gives `name`.
 *
 * @example
 * ```ts
 * normalizeImageReference("fedora:39").name; // "docker.io/library/fedora:39"
 * normalizeImageReference("localhost/web").name; // "localhost/web:latest"
 * ```
 */
export function normalizeImageReference(ref: string): NormalizedImageReference | string {
  const parsed = parseImageReference(ref);
  if (typeof parsed === "string") return parsed;
  const registry = parsed.registry.toLowerCase();
  const tag = parsed.tag ?? (parsed.digest === undefined ? DEFAULT_TAG : undefined);
  const name = `${registry}/${parsed.repository}` + (tag !== undefined ? `:${tag}` : "") +
    (parsed.digest !== undefined ? `@${parsed.digest}` : "");
  return {
    registry,
    repository: parsed.repository,
    ...(tag !== undefined ? { tag } : {}),
    ...(parsed.digest !== undefined ? { digest: parsed.digest } : {}),
    name,
  };
}

/**
 * {@linkcode normalizeImageReference}'s `name` for a reference that passed the
 * contract's schema.
 *
 * @throws {Error} naming the reference and the problem if it does not parse.
 */
export function qualifiedImageName(ref: string): string {
  const normalized = normalizeImageReference(ref);
  if (typeof normalized === "string") {
    throw new Error(`Cannot qualify image reference ${JSON.stringify(ref)}: ${normalized}`);
  }
  return normalized.name;
}
