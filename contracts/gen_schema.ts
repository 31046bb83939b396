/**
 * Writes `contracts/schema/*.schema.json` from the zod schemas.
 * Run with `deno task schema` after changing a schema.
 *
 * @module
 */

import { renderJsonSchemas } from "./json_schema.ts";

if (import.meta.main) {
  const dir = new URL("./schema/", import.meta.url);
  await Deno.mkdir(dir, { recursive: true });
  for (const [file, text] of Object.entries(renderJsonSchemas())) {
    await Deno.writeTextFile(new URL(file, dir), text);
    console.log(`wrote contracts/schema/${file}`);
  }
}
