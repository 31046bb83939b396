import { assertEquals } from "./support/assert.ts";
import { sectionNames, sectionOf, withSection } from "../bench/sections.ts";

Deno.test("bench sections: a kept section is found, replaced in place, or appended", () => {
  const section = "<!-- x:start -->\nfigures\n<!-- x:end -->\n";
  const doc = `# Results\n\n${section}\n## After\n`;
  assertEquals(sectionOf(doc, "x"), section);
  assertEquals(sectionOf(doc, "y"), "");
  const replaced = withSection(doc, "x", "<!-- x:start -->\nnew\n<!-- x:end -->\n");
  assertEquals(replaced, "# Results\n\n<!-- x:start -->\nnew\n<!-- x:end -->\n\n## After\n");
  assertEquals(withSection("# R\n", "x", section), `# R\n\n${section}`);
});

Deno.test("bench sections: every marked section is named, in order (deno task bench keeps them all)", () => {
  const doc = "# R\n<!-- a-b:start -->\n1\n<!-- a-b:end -->\ntext <!-- inline:start -->\n" +
    "<!-- chaos:start -->\n2\n<!-- chaos:end -->\n";
  assertEquals(sectionNames(doc), ["a-b", "chaos"]);
});
