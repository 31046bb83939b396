import { parse } from "yaml";
import { DeploymentManifest } from "@drover/contracts";
import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { tempDir } from "../../tests/support/mod.ts";
import { main } from "../main.ts";
import type { CliIo } from "./cli.ts";

function captureIo(env: Record<string, string>, cwd: string) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = {
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    env: (name) => env[name],
    isTerminal: false,
    signal: new AbortController().signal,
    cwd,
  };
  return { io, out: () => out.join(""), err: () => err.join("") };
}

Deno.test("convert: .env beside the file, the environment over it, warnings on stderr, exit 0", async () => {
  await using dir = await tempDir("drover-convert-");
  await Deno.writeTextFile(
    `${dir.path}/docker-compose.yml`,
    [
      "services:",
      "  web:",
      "    image: ${REGISTRY}/web:${TAG:-1}",
      "    environment: { MODE: '${MODE}', LEVEL: '${LEVEL}' }",
      "    container_name: web1",
      "",
    ].join("\n"),
  );
  await Deno.writeTextFile(`${dir.path}/.env`, "REGISTRY=registry.example.com\nMODE=from-dotenv\n");
  const { io, out, err } = captureIo({ MODE: "from-env" }, dir.path);
  const code = await main(["convert", "-f", "docker-compose.yml", "--selector", "site=lab"], io);
  assertEquals(code, 0, err());
  const manifest = DeploymentManifest.parse(parse(out()));
  const [web] = manifest.score.services;
  assertEquals(web?.image, "registry.example.com/web:1");
  assertEquals(web?.env, { MODE: "from-env", LEVEL: "" });
  assertEquals(manifest.selector, { labels: { site: "lab" } });
  assertStringIncludes(err(), "warning: ${LEVEL}: variable is not set");
  assertStringIncludes(err(), "warning: services.web.container_name: ");
  // The deployment name is the directory's, as compose's project name.
  assertEquals(
    manifest.name,
    dir.path.split("/").at(-1)?.toLowerCase().replace(/[^a-z0-9-]+/g, "-"),
  );
});

Deno.test("convert: exit 3 when nothing usable remains, 2 without -f, 3 on bad YAML", async () => {
  await using dir = await tempDir("drover-convert-");
  await Deno.writeTextFile(`${dir.path}/build.yml`, "services:\n  app:\n    build: .\n");
  await Deno.writeTextFile(`${dir.path}/bad.yml`, "services: [\n");
  const run = async (args: string[]) => {
    const c = captureIo({}, dir.path);
    return { code: await main(["convert", ...args], c.io), out: c.out(), err: c.err() };
  };
  const nothing = await run(["-f", "build.yml"]);
  assertEquals(nothing.code, 3);
  assertEquals(nothing.out, "");
  assertStringIncludes(nothing.err, "nothing usable remains");
  assertEquals((await run([])).code, 2);
  assertEquals((await run(["-f", "bad.yml"])).code, 3);
  assertEquals((await run(["-f", "missing.yml"])).code, 3);
});
