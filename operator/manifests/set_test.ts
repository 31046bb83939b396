import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { tempDir } from "../../tests/support/temp_dir.ts";
import { problemsError } from "./file.ts";
import { displayPath, manifestSet, readManifestTexts } from "./set.ts";

const yaml = (name: string, image = "busybox:1") =>
  `name: ${name}
selector: { labels: { site: lab } }
score:
  type: PodmanV0
  services: [{ name: main, image: ${image} }]
`;

const noStdin = () => Promise.reject(new Error("no stdin in this test"));

Deno.test("manifestSet: a multi-document file and single files; empty documents skipped", () => {
  const set = manifestSet([
    { file: "fleet/apps.yaml", text: `---\n${yaml("api")}---\n# nothing here\n---\n${yaml("db")}` },
    {
      file: "fleet/web.json",
      text: JSON.stringify({
        name: "web",
        selector: { labels: {} },
        score: { type: "PodmanV0", services: [{ name: "m", image: "busybox" }] },
      }),
    },
  ]);
  assertEquals(set.problems, []);
  assertEquals(set.manifests.map((m) => [m.manifest.name, m.file, m.document]), [
    ["api", "fleet/apps.yaml", 1],
    ["db", "fleet/apps.yaml", 3],
    ["web", "fleet/web.json", undefined],
  ]);
});

Deno.test("manifestSet: every problem of every file, with document and line; duplicates name both files", () => {
  const set = manifestSet([
    {
      file: "a.yaml",
      text: `${yaml("api")}---\n${yaml("web").replace("image: busybox:1", "image: Bad Image")}`,
    },
    { file: "b.toml", text: 'name = "x"\nselector = [\n' },
    { file: "c.yaml", text: yaml("api") },
  ]);
  assertEquals(set.problems.map((p) => [p.file, p.document]), [
    ["a.yaml", 2],
    ["b.toml", undefined],
    ["c.yaml", undefined],
  ]);
  const e = problemsError(set.problems);
  assertStringIncludes(e.message, "3 invalid manifests in 3 file(s)");
  const all = e.details.join("\n");
  assertStringIncludes(all, "a.yaml (document 2):\n  score.services[0].image");
  assertStringIncludes(all, "(line 11)");
  assertStringIncludes(all, "b.toml: not valid TOML");
  assertStringIncludes(
    all,
    'c.yaml: name: deployment "api" is also defined in a.yaml (document 1)',
  );
});

Deno.test("manifestSet: nothing at all is a problem", () => {
  assertEquals(
    manifestSet([{ file: "empty.yaml", text: "" }]).problems[0]?.summary,
    "no manifest found",
  );
});

Deno.test("readManifestTexts: directories recursively by extension, hidden entries skipped; unreadable paths are problems", async () => {
  await using dir = await tempDir("manifest-set-");
  await Deno.mkdir(`${dir.path}/fleet/site-b`, { recursive: true });
  await Deno.mkdir(`${dir.path}/fleet/.git`);
  await Deno.writeTextFile(`${dir.path}/fleet/a.yaml`, yaml("a"));
  await Deno.writeTextFile(`${dir.path}/fleet/site-b/b.YML`, yaml("b"));
  await Deno.writeTextFile(`${dir.path}/fleet/site-b/c.toml`, "");
  await Deno.writeTextFile(`${dir.path}/fleet/README.md`, "not a manifest");
  await Deno.writeTextFile(`${dir.path}/fleet/.git/x.yaml`, "not read");
  await Deno.symlink(`${dir.path}/fleet`, `${dir.path}/fleet/site-b/loop`);
  await Deno.mkdir(`${dir.path}/empty`);
  await Deno.writeTextFile(`${dir.path}/named.txt`, yaml("n"));
  const read = await readManifestTexts(
    [
      `${dir.path}/fleet`,
      `${dir.path}/named.txt`,
      `${dir.path}/missing`,
      `${dir.path}/empty`,
      "-",
      "-",
    ],
    () => Promise.resolve(yaml("s")),
    (p) => displayPath(p, dir.path),
  );
  assertEquals(read.texts.map((t) => t.file), [
    "fleet/a.yaml",
    "fleet/site-b/b.YML",
    "fleet/site-b/c.toml",
    "named.txt",
    "(stdin)",
  ]);
  // An unreadable path is named whole (where it was looked for), the others as shown.
  assertEquals(read.problems.map((p) => p.file), [`${dir.path}/missing`, "empty"]);
  assertStringIncludes(read.problems[1]!.summary, "no .yaml, .yml, .json, .toml file");
  const failing = await readManifestTexts(["-"], noStdin);
  assertStringIncludes(failing.problems[0]!.summary, "no stdin in this test");
});

Deno.test("displayPath: relative inside the directory, else as given", () => {
  assertEquals(displayPath("/repo/fleet/a.yaml", "/repo"), "fleet/a.yaml");
  assertEquals(displayPath("/repo/fleet/a.yaml", "/repo/"), "fleet/a.yaml");
  assertEquals(displayPath("/other/a.yaml", "/repo"), "/other/a.yaml");
  assertEquals(displayPath("/repository/a.yaml", "/repo"), "/repository/a.yaml");
  assertEquals(displayPath("a.yaml", undefined), "a.yaml");
});
