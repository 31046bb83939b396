import { assertEquals } from "../tests/support/assert.ts";
import { isValidName, nameProblem } from "./mod.ts";

Deno.test("names: DNS labels only", () => {
  for (const ok of ["a", "pi-1", "0", "a".repeat(63), "web-01-x"]) {
    assertEquals(isValidName(ok), true, ok);
  }
  for (
    const bad of ["", "A", "a.b", "a_b", "-a", "a-", "a".repeat(64), "é", "a/b", "a b", "__proto__"]
  ) {
    assertEquals(isValidName(bad), false, bad);
  }
  assertEquals(nameProblem(42), "must be a string, got number");
});
