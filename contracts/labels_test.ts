import { assertEquals } from "../tests/support/assert.ts";
import { formatLabels, labelPairs, parseLabels, splitLabel } from "./labels.ts";

Deno.test("splitLabel: at the first '=', a value may be empty or hold '='; no key is no label", () => {
  assertEquals(splitLabel("site=lab"), ["site", "lab"]);
  assertEquals(splitLabel("site="), ["site", ""]);
  assertEquals(splitLabel("a=b=c"), ["a", "b=c"]);
  assertEquals(splitLabel("=lab"), undefined);
  assertEquals(splitLabel("site"), undefined);
});

Deno.test("parseLabels: arguments (comma lists where asked) to a map; a bad part or a repeat is named", () => {
  assertEquals(parseLabels(["site=lab", "arch=arm64"]), {
    ok: true,
    labels: { site: "lab", arch: "arm64" },
  });
  assertEquals(parseLabels(["site=lab,arch=arm64"], { commas: true }), {
    ok: true,
    labels: { site: "lab", arch: "arm64" },
  });
  // Without commas the comma is part of the value.
  assertEquals(parseLabels(["site=lab,arch=arm64"]), {
    ok: true,
    labels: { site: "lab,arch=arm64" },
  });
  assertEquals(parseLabels(["site"]), { ok: false, problem: 'expected KEY=VALUE, got "site"' });
  assertEquals(parseLabels(["a=1", "a=2"]), { ok: false, problem: '"a" given twice in "a=2"' });
  assertEquals(parseLabels([]), { ok: true, labels: {} });
});

Deno.test("labelPairs and formatLabels: k=v in the map's order, any separator, empty for none", () => {
  const labels = { site: "lab", arch: "arm64" };
  assertEquals(labelPairs(labels), ["site=lab", "arch=arm64"]);
  assertEquals(formatLabels(labels), "site=lab,arch=arm64");
  assertEquals(formatLabels(labels, " "), "site=lab arch=arm64");
  assertEquals(formatLabels({}), "");
  // Round trip.
  const parsed = parseLabels([formatLabels(labels)], { commas: true });
  assertEquals(parsed, { ok: true, labels });
});
