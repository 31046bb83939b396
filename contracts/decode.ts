/**
 * Decoding values that arrive over the wire (KV entries) into validated types.
 * Never throws: a bad value is a result the caller reports.
 *
 * @module
 */

import type { z } from "zod";
import { formatZodIssues } from "./errors.ts";

/** Largest value the agent and operator will try to parse (NATS' default max payload). */
export const MAX_VALUE_BYTES = 1024 * 1024;

/**
 * One decoder for every value: without `{ stream: true }` each `decode` starts
 * afresh, so one decoder serves every value instead of one built per value.
 */
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Outcome of {@linkcode decodeJson}. */
export type DecodeResult<T> = { ok: true; value: T } | { ok: false; error: string };

/** Parses UTF-8 JSON bytes (or a string) and validates it against `schema`. */
export function decodeJson<S extends z.ZodType>(
  schema: S,
  data: Uint8Array | string,
): DecodeResult<z.infer<S>> {
  const size = typeof data === "string" ? data.length : data.byteLength;
  if (size > MAX_VALUE_BYTES) {
    return { ok: false, error: `value is ${size} bytes, more than the ${MAX_VALUE_BYTES} allowed` };
  }
  let text: string;
  try {
    text = typeof data === "string" ? data : STRICT_UTF8.decode(data);
  } catch {
    // Not a JSON problem: the bytes are not text at all (a binary value, another encoding).
    return {
      ok: false,
      error: `value is not valid UTF-8 (${size} bytes); it must be JSON text in UTF-8`,
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `invalid JSON: ${(e as Error).message}` };
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    return { ok: false, error: formatZodIssues(result.error, undefined, schema) };
  }
  return { ok: true, value: result.data };
}
