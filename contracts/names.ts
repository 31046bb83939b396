/**
 * Names used across Drover: device ids, deployment names and service names.
 *
 * They end up in NATS subjects (where `.`, `*` and `>` are special), in
 * container names and in label values, so they are restricted to a DNS label:
 * lower-case letters, digits and inner hyphens, at most 63 characters.
 *
 * @module
 */

/** The pattern every device id, deployment name and service name must match. */
export const NAME_PATTERN: RegExp = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Maximum length of a name (a DNS label). */
export const NAME_MAX_LENGTH = 63;

/** What kind of name is being checked; used in error messages. */
export type NameKind = "device id" | "deployment name" | "service name" | "name";

/**
 * Explains why `value` is not a valid name, or returns `undefined` when it is.
 *
 * @example
 * ```ts
 * nameProblem("Web"); // "must be lower-case: ..."
 * nameProblem("web"); // undefined
 * ```
 */
export function nameProblem(value: unknown): string | undefined {
  if (typeof value !== "string") return `must be a string, got ${typeof value}`;
  if (value.length === 0) return "must not be empty";
  if (value.length > NAME_MAX_LENGTH) {
    return `must be at most ${NAME_MAX_LENGTH} characters, got ${value.length}`;
  }
  if (NAME_PATTERN.test(value)) return undefined;
  if (/[A-Z]/.test(value)) return "must be lower-case";
  if (value.startsWith("-") || value.endsWith("-")) {
    return "must start and end with a letter or digit";
  }
  const bad = [...value].find((c) => !/[a-z0-9-]/.test(c));
  return `may only contain a-z, 0-9 and '-', found ${JSON.stringify(bad)}`;
}

/** Thrown when a string is not a valid Drover name. */
export class InvalidNameError extends Error {
  override name = "InvalidNameError";
  /** The rejected value. */
  readonly value: unknown;
  /** Which kind of name was expected. */
  readonly kind: NameKind;
  constructor(kind: NameKind, value: unknown, problem: string) {
    super(`Invalid ${kind} ${JSON.stringify(value)}: ${problem}`);
    this.kind = kind;
    this.value = value;
  }
}

/** Returns `value` if it is a valid name, throws {@linkcode InvalidNameError} otherwise. */
export function assertName(kind: NameKind, value: unknown): string {
  const problem = nameProblem(value);
  if (problem !== undefined) throw new InvalidNameError(kind, value, problem);
  return value as string;
}

/** True when `value` is a valid Drover name. */
export function isValidName(value: unknown): value is string {
  return nameProblem(value) === undefined;
}
