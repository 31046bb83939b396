import { assertEquals, assertStringIncludes, assertThrows } from "../../tests/support/assert.ts";

import { detectFormat, ManifestError, parseManifest } from "./file.ts";

const YAML = `name: web
selector:
  labels:
    site: lab
score:
  type: PodmanV0
  services:
    - name: httpd
      image: busybox
      ports: ["8080:80"]
`;

const TOML = `name = "web"
[selector]
devices = ["pi-1"]
[score]
type = "PodmanV0"
[[score.services]]
name = "httpd"
image = "busybox"
`;

const JSON_TEXT = JSON.stringify({
  name: "web",
  selector: { labels: {} },
  score: { type: "PodmanV0", services: [{ name: "httpd", image: "busybox" }] },
});

function invalid(text: string, file: string): ManifestError {
  const e = assertThrows(() => parseManifest(text, file), ManifestError);
  assertStringIncludes(e.message, file);
  return e;
}

Deno.test("parseManifest: YAML, TOML and JSON give the same shape, defaults applied", () => {
  const y = parseManifest(YAML, "web.yaml");
  assertEquals(y.selector, { labels: { site: "lab" } });
  assertEquals(y.score.services[0]?.restart, "always");
  assertEquals(parseManifest(TOML, "web.toml").selector, { devices: ["pi-1"] });
  assertEquals(parseManifest(JSON_TEXT, "web.json").selector, { labels: {} });
});

Deno.test("detectFormat: extension first, then content", () => {
  assertEquals(detectFormat("a.yml", "{}"), "yaml");
  assertEquals(detectFormat("manifest", JSON_TEXT), "json");
  assertEquals(detectFormat("manifest", TOML), "toml");
  assertEquals(detectFormat("(stdin)", YAML), "yaml");
});

Deno.test("parseManifest: schema errors name the field path and the YAML line", () => {
  const e = invalid(YAML.replace("name: httpd", "name: HTTPD"), "web.yaml");
  assertStringIncludes(e.message, "score.services[0].name");
  assertStringIncludes(e.details.join("\n"), "must be lower-case (line 8)");
});

Deno.test("parseManifest: unknown key (typo) is named with its line", () => {
  const e = invalid(
    YAML.replace("      image: busybox", "      image: busybox\n      enviroment: {}"),
    "w.yaml",
  );
  assertEquals(
    e.details[0],
    'score.services[0].enviroment: unknown key; did you mean "env"? (line 10)',
  );
});

Deno.test("parseManifest: each unknown key on its own line, in TOML and JSON without lines", () => {
  const yaml = invalid(
    YAML.replace("selector:\n", "selector:\n  device: [pi-1]\n").replace(
      "      image: busybox",
      "      image: busybox\n      zzz: 1",
    ),
    "w.yaml",
  );
  assertEquals(yaml.details, [
    'selector.device: unknown key; did you mean "devices"? (line 3)',
    "score.services[0].zzz: unknown key (line 11)",
  ]);
  const json = invalid(
    JSON.stringify({
      name: "web",
      selector: { labels: {} },
      score: { type: "PodmanV0", services: [{ name: "web", image: "busybox:1", port: [] }] },
    }),
    "w.json",
  );
  assertEquals(json.details, ['score.services[0].port: unknown key; did you mean "ports"?']);
});

Deno.test("parseManifest: a missing selector is reported as required", () => {
  const e = invalid(YAML.replace(/selector:\n( {2}.*\n)+/, ""), "w.yaml");
  assertStringIncludes(e.message, "selector: required");
});

Deno.test("parseManifest: missing selector fields, bad port and bad image all reported", () => {
  const text = YAML.replace("  labels:\n    site: lab\n", "  {}\n").replace(
    '"8080:80"',
    '"99999:80"',
  )
    .replace("image: busybox", "image: Bad Image");
  const e = invalid(text, "w.yaml");
  const all = e.details.join("\n");
  assertStringIncludes(all, "selector");
  assertStringIncludes(all, 'selector needs at least one of "devices" or "labels"');
  assertStringIncludes(all, "score.services[0].ports[0]");
  assertStringIncludes(all, "out of range");
  assertStringIncludes(all, "score.services[0].image");
});

Deno.test("parseManifest: YAML syntax error and duplicate keys give a line", () => {
  const e = invalid("name: [web\nselector: x\n", "bad.yaml");
  assertStringIncludes(e.message, "not valid YAML");
  assertStringIncludes(e.details[0], "line ");
  const dup = invalid("name: a\nname: b\n", "dup.yaml");
  assertStringIncludes(dup.details[0], "unique");
});

Deno.test("parseManifest: TOML and JSON syntax errors", () => {
  const t = invalid('name = "web"\nselector = [\n', "bad.toml");
  assertStringIncludes(t.message, "not valid TOML");
  assertStringIncludes(t.details[0], "line 3");
  const j = invalid('{"name": ', "bad.json");
  assertStringIncludes(j.message, "not valid JSON");
});

Deno.test("parseManifest: wrong score type, empty services, not an object", () => {
  assertStringIncludes(
    invalid(YAML.replace("PodmanV0", "Compose"), "w.yaml").message,
    "score.type",
  );
  assertStringIncludes(
    invalid(
      JSON.stringify({
        name: "w",
        selector: { devices: [] },
        score: { type: "PodmanV0", services: [] },
      }),
      "w.json",
    )
      .message,
    "score.services",
  );
  assertStringIncludes(invalid("just a string", "w.yaml").message, "(root)");
});

Deno.test("parseManifest: duplicate service names and reserved labels", () => {
  const dup = YAML + "    - name: httpd\n      image: busybox\n";
  assertStringIncludes(invalid(dup, "w.yaml").details.join("\n"), 'duplicate service name "httpd"');
  const reserved = YAML.replace(
    "      image: busybox",
    '      image: busybox\n      labels: {"drover.x": "1"}',
  );
  assertStringIncludes(invalid(reserved, "w.yaml").details.join("\n"), "reserved");
});
