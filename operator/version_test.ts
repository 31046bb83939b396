import { assertEquals } from "../tests/support/assert.ts";
import { OPERATOR_VERSION } from "./version.ts";

Deno.test("OPERATOR_VERSION matches operator/deno.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("./deno.json", import.meta.url)));
  assertEquals(OPERATOR_VERSION, config.version);
});
