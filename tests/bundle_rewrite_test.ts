import { assertEquals, assertThrows } from "./support/assert.ts";
import {
  asciiOnly,
  deferNodeBuiltins,
  eagerNodeImports,
  NODE_IMPORT_REWRITES,
} from "../scripts/bundle.ts";
import { CompileError } from "../scripts/compile.ts";

Deno.test("asciiOnly: non-ASCII characters become escapes that mean the same", () => {
  const source = '/** a — b … */ const s = "é😀";';
  const ascii = asciiOnly(source);
  assertEquals(/[\u0080-\uffff]/.test(ascii), false);
  assertEquals(ascii, '/** a \\u2014 b \\u2026 */ const s = "\\u00e9\\ud83d\\ude00";');
  assertEquals(new Function(`${ascii} return s;`)(), "é😀");
  assertEquals(asciiOnly("plain"), "plain");
});

Deno.test("deferNodeBuiltins: each rewrite exactly once, else a build error naming it", () => {
  const bundle = NODE_IMPORT_REWRITES.map((r) => r.from).join("\n// agent code\n");
  assertEquals(eagerNodeImports(bundle), ["node:module", "node:util"]);
  const deferred = deferNodeBuiltins(bundle);
  assertEquals(eagerNodeImports(deferred), []);
  for (const { to } of NODE_IMPORT_REWRITES) assertEquals(deferred.includes(to), true);
  const missing = NODE_IMPORT_REWRITES[1]!.from;
  assertThrows(
    () => deferNodeBuiltins(bundle.replace(missing, "")),
    CompileError,
    "@logtape/logtape's node:util import in the bundle: found 0 times",
  );
});

Deno.test("eagerNodeImports: top-level imports only, not lazy ones", () => {
  const source = [
    'import { createHash } from "node:crypto";',
    'import util from "node:util";',
    'const { x } = await import("node:v8");',
    'var fs = __require("node:fs");',
  ].join("\n");
  assertEquals(eagerNodeImports(source), ["node:crypto", "node:util"]);
});
