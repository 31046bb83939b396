/**
 * Assertions in the style of `@std/assert` (not reachable here: jsr is
 * blocked), built on `node:assert/strict`.
 *
 * @module
 */

import nodeAssert from "node:assert/strict";

/** Fails unless `actual` deep-equals `expected`. */
export function assertEquals(actual: unknown, expected: unknown, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

/** Fails unless `condition` is truthy. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  nodeAssert.ok(condition, message);
}

/** Fails when `actual` is undefined or null (std's `assertExists`). */
export function assertExists<T>(
  actual: T,
  message = "expected a value, got undefined or null",
): asserts actual is NonNullable<T> {
  nodeAssert.ok(actual !== undefined && actual !== null, message);
}

/** Fails unless `text` is a string containing `part` (a missing text fails too). */
export function assertStringIncludes(
  text: string | undefined,
  part: string,
  message?: string,
): void {
  nodeAssert.ok(
    text !== undefined && text.includes(part),
    message ?? `expected ${JSON.stringify(text)} to include ${JSON.stringify(part)}`,
  );
}

/** Fails unless `text` is a string matching `pattern` (a missing text fails too). */
export function assertMatch(text: string | undefined, pattern: RegExp, message?: string): void {
  nodeAssert.ok(
    text !== undefined,
    message ?? `expected a text matching ${pattern}, got undefined`,
  );
  nodeAssert.match(text, pattern, message);
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

/** Fails unless `fn` throws an instance of `cls` whose message includes `includes`; returns the error. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  cls?: ErrorClass<E>,
  includes?: string,
): E {
  try {
    fn();
  } catch (e) {
    return checkError(e, cls, includes);
  }
  throw new nodeAssert.AssertionError({ message: "expected function to throw" });
}

/** Async form of {@linkcode assertThrows}. */
export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  cls?: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, cls, includes);
  }
  throw new nodeAssert.AssertionError({ message: "expected promise to reject" });
}

function checkError<E extends Error>(e: unknown, cls?: ErrorClass<E>, includes?: string): E {
  if (cls && !(e instanceof cls)) {
    throw new nodeAssert.AssertionError({
      message: `expected ${cls.name}, got ${(e as Error)?.name}: ${(e as Error)?.message}`,
    });
  }
  if (includes !== undefined && !String((e as Error)?.message).includes(includes)) {
    throw new nodeAssert.AssertionError({
      message: `expected error message to include ${JSON.stringify(includes)}, got ${
        JSON.stringify((e as Error)?.message)
      }`,
    });
  }
  return e as E;
}
