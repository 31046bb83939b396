/**
 * Compose-style durations (`"10s"`, `"1m30s"`, `"500ms"`), shared by every
 * schema that takes one: the manifest's rollout timings and a service's
 * health check and stop timeout.
 *
 * @module
 */

import { z } from "zod";

const DURATION_UNITS_MS: Record<string, number> = {
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
  us: 0.001,
  "\u00b5s": 0.001,
  ns: 0.000001,
};
const DURATION = /^(?:[0-9]+(?:\.[0-9]+)?(?:h|ms|m|s|us|\u00b5s|ns))+$/;
const DURATION_WITH_DAYS = /^(?:[0-9]+(?:\.[0-9]+)?(?:d|h|ms|m|s|us|\u00b5s|ns))+$/;
const BARE_SECONDS = /^[0-9]+(?:\.[0-9]+)?$/;
const EXPECTED = 'expected a duration such as "30s", "5m" or "1m30s" (units h, m, s, ms)';

/** What {@linkcode parseDuration} accepts beyond a compose-style duration. */
export interface DurationGrammar {
  /** Days (`"90d"`), which compose files do not have but a log window may want. */
  days?: boolean;
  /** A bare number meaning seconds (`"30"`), as command-line timeouts take it. */
  bareSeconds?: boolean;
}

/**
 * Milliseconds of a duration: one or more number-and-unit parts (`"10s"`, `"1m30s"`,
 * `"500ms"`, `"1h"`; units `h`, `m`, `s`, `ms`, `us`, `ns`), plus what `grammar` allows.
 * Undefined when `text` is not one. The one duration grammar of the project: manifests use
 * it as is ({@linkcode parseComposeDuration}), the operator's command line and HTTP API with
 * days and bare seconds.
 *
 * @example
 * ```ts
 * parseDuration("1m30s"); // 90000
 * parseDuration("10"); // undefined: a unit is required
 * parseDuration("10", { bareSeconds: true }); // 10000
 * parseDuration("2d", { days: true }); // 172800000
 * ```
 */
export function parseDuration(text: string, grammar: DurationGrammar = {}): number | undefined {
  if (grammar.bareSeconds && BARE_SECONDS.test(text)) return Number(text) * 1000;
  if (!(grammar.days ? DURATION_WITH_DAYS : DURATION).test(text)) return undefined;
  let total = 0;
  for (
    const [, value, unit] of text.matchAll(/([0-9]+(?:\.[0-9]+)?)(d|h|ms|m|s|us|\u00b5s|ns)/g)
  ) {
    const perUnit = DURATION_UNITS_MS[unit ?? ""];
    // The pattern's unit alternatives are exactly the table's keys.
    if (perUnit === undefined) throw new Error(`duration unit ${unit} has no entry in the table`);
    total += Number(value) * perUnit;
  }
  return total;
}

/**
 * Milliseconds of a compose-style duration (`"10s"`, `"1m30s"`, `"500ms"`,
 * `"1h"`): one or more number-and-unit parts, units `h`, `m`, `s`, `ms`,
 * `us`, `ns`. Undefined when `text` is not one.
 *
 * @example
 * ```ts
 * parseComposeDuration("1m30s"); // 90000
 * parseComposeDuration("10"); // undefined: a unit is required
 * ```
 */
export function parseComposeDuration(text: string): number | undefined {
  return parseDuration(text);
}

/** Bounds of {@linkcode composeDuration}. */
export interface DurationBounds {
  /** Smallest value allowed, in ms (default 1). */
  minMs?: number;
  /** Largest value allowed, in ms (default none). */
  maxMs?: number;
  /** Only whole seconds (podman counts a stop timeout in seconds). */
  wholeSeconds?: boolean;
}

/** `90000` → `"1m30s"`, for messages. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0) parts.push(`${Math.round(rest * 1000) / 1000}ms`);
  return parts.join("");
}

/**
 * The problem with `text` as a duration within `bounds`, or undefined when it
 * is fine. Messages quote the value and say what is expected.
 */
export function durationProblem(text: string, bounds: DurationBounds = {}): string | undefined {
  const ms = parseComposeDuration(text);
  if (ms === undefined) return `${EXPECTED}, got ${JSON.stringify(text)}`;
  const min = bounds.minMs ?? 1;
  if (ms < min) return `${JSON.stringify(text)} is too short: at least ${formatDuration(min)}`;
  if (bounds.maxMs !== undefined && ms > bounds.maxMs) {
    return `${JSON.stringify(text)} is too long: at most ${formatDuration(bounds.maxMs)}`;
  }
  if (bounds.wholeSeconds && ms % 1000 !== 0) {
    return `${JSON.stringify(text)} is not a whole number of seconds (podman counts seconds)`;
  }
  return undefined;
}

/** A compose-style duration string within `bounds` (the value stays a string on the wire). */
export function composeDuration(bounds: DurationBounds = {}): z.ZodString {
  // The pattern is for JSON Schema readers; the refinement gives the message.
  return z.string().max(64).regex(DURATION, EXPECTED).superRefine((text, ctx) => {
    if (parseComposeDuration(text) === undefined) return; // the pattern said so
    const problem = durationProblem(text, bounds);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
}

/** A compose-style duration such as `"5m"` or `"1m30s"`, at least 1 ms. */
export const ComposeDuration = z.string().regex(DURATION, EXPECTED).refine(
  // A text the pattern already refused gets that one message, not a second one.
  (text) => (parseComposeDuration(text) ?? 1) >= 1,
  { message: `${EXPECTED}, at least 1ms` },
);
