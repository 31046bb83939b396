import { assert, assertEquals } from "../tests/support/assert.ts";
import { canonicalJson, jsonEqual, specHash } from "./mod.ts";

Deno.test("canonicalJson sorts keys at every level and drops undefined", () => {
  assertEquals(
    canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }], u: undefined }),
    '{"a":[2,{"c":4,"d":3}],"b":1}',
  );
  assertEquals(canonicalJson("x"), '"x"');
  assertEquals(canonicalJson(null), "null");
  // Keys in code-unit order, escaped; nested arrays and empty containers.
  assertEquals(
    canonicalJson({ "é": 1, Z: 2, a: { y: [], x: {} }, '"q"': [null, [1, "two"]] }),
    '{"\\"q\\"":[null,[1,"two"]],"Z":2,"a":{"x":{},"y":[]},"é":1}',
  );
  assertEquals(canonicalJson([undefined, 1]), "[null,1]");
});

Deno.test("jsonEqual says what comparing canonicalJson strings says", () => {
  const values: unknown[] = [
    null,
    0,
    1,
    "1",
    true,
    [],
    {},
    [1, 2],
    [2, 1],
    [1, [2]],
    { a: 1 },
    { a: 1, b: undefined },
    { b: undefined, a: 1 },
    { a: "1" },
    { a: 1, b: 2 },
    { b: 2, a: 1 },
    { a: { b: [1, { c: null }] } },
    { a: { b: [1, { c: null, d: undefined }] } },
    { a: { b: [1, { c: 0 }] } },
    { a: [] },
    { a: {} },
  ];
  for (const a of values) {
    for (const b of values) {
      assertEquals(
        jsonEqual(a, b),
        canonicalJson(a) === canonicalJson(b),
        `${canonicalJson(a)} vs ${canonicalJson(b)}`,
      );
    }
  }
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
