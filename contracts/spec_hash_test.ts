import { assert, assertEquals } from "../tests/support/assert.ts";
import { canonicalJson, specHash } from "./mod.ts";

Deno.test("canonicalJson sorts keys at every level and drops undefined", () => {
  assertEquals(
    canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }], u: undefined }),
    '{"a":[2,{"c":4,"d":3}],"b":1}',
  );
  assertEquals(canonicalJson("x"), '"x"');
  assertEquals(canonicalJson(null), "null");
});

Deno.test("specHash ignores key order and changes with content", async () => {
  const a = await specHash({ name: "web", image: "x", env: { A: "1", B: "2" } });
  const b = await specHash({ env: { B: "2", A: "1" }, image: "x", name: "web" });
  const c = await specHash({ name: "web", image: "x", env: { A: "1", B: "3" } });
  assertEquals(a, b);
  assert(a !== c);
  assertEquals(a.length, 64);
  // Locked: the label value of an existing container must not change across releases.
  assertEquals(
    await specHash({}),
    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  );
});
