import { canonicalJson, specHash } from "@drover/contracts";
import { assertEquals } from "../../tests/support/assert.ts";
import { specHashSync } from "./spec_hashes.ts";

Deno.test("specHashSync is the contract's specHash (UTF-8, key order, the locked empty spec)", async () => {
  const specs = [
    {},
    { name: "web", image: "x", env: { A: "1", B: "2" } },
    { name: "wéb", image: "x", env: { "Ä": "日本", B: "" }, command: ["sh", "-c", "é"] },
  ];
  for (const spec of specs) assertEquals(specHashSync(spec), await specHash(spec));
  assertEquals(
    specHashSync({ env: { B: "2", A: "1" }, image: "x", name: "web" }),
    specHashSync({ name: "web", image: "x", env: { A: "1", B: "2" } }),
  );
  assertEquals(canonicalJson({}), "{}");
  assertEquals(
    specHashSync({}),
    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  );
});
