import { assertEquals } from "../../tests/support/assert.ts";
import { backoffDelay, DEFAULT_BACKOFF } from "./backoff.ts";

// The curve itself is tested with the shared function (common/backoff_test.ts).
Deno.test("default backoff starts at a second and caps at two minutes", () => {
  assertEquals(backoffDelay(0, DEFAULT_BACKOFF, () => 0), 1_000);
  assertEquals(backoffDelay(30, DEFAULT_BACKOFF, () => 0), 120_000);
});
