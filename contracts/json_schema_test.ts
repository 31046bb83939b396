import { assertEquals } from "../tests/support/assert.ts";
import { renderJsonSchemas } from "./json_schema.ts";

Deno.test("checked-in JSON Schema is up to date (run `deno task schema` if not)", async () => {
  for (const [file, text] of Object.entries(renderJsonSchemas())) {
    const onDisk = await Deno.readTextFile(new URL(`./schema/${file}`, import.meta.url));
    assertEquals(onDisk, text, `contracts/schema/${file} is stale: run \`deno task schema\``);
  }
});
