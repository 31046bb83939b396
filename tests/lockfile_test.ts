/**
 * Reproducible dependencies: deno.lock is frozen by deno.json, so a lock file that no longer
 * matches the import map stops every run with Deno's "lockfile is out of date" error instead of
 * being rewritten quietly. Checked on a copy of the workspace configs in a temp dir, offline (an
 * import taken out of the map needs no registry to be noticed).
 */

import { runCommand } from "./support/_exec.ts";
import { tempDir } from "./support/temp_dir.ts";
import { assert, assertEquals, assertStringIncludes } from "./support/assert.ts";

const ROOT = new URL("../", import.meta.url);

interface RootConfig {
  workspace?: string[];
  imports: Record<string, string>;
}

/** The repository's deno.json and deno.lock, with each workspace member's deno.json, in `dir`. */
async function copyConfigs(dir: string): Promise<RootConfig> {
  const text = await Deno.readTextFile(new URL("deno.json", ROOT));
  await Deno.writeTextFile(`${dir}/deno.json`, text);
  await Deno.copyFile(new URL("deno.lock", ROOT), `${dir}/deno.lock`);
  const config = JSON.parse(text) as RootConfig;
  for (const member of config.workspace ?? []) {
    await Deno.mkdir(`${dir}/${member}`, { recursive: true });
    await Deno.copyFile(new URL(`${member}/deno.json`, ROOT), `${dir}/${member}/deno.json`);
  }
  await Deno.writeTextFile(`${dir}/main.ts`, "export {};\n");
  return config;
}

function check(dir: string) {
  return runCommand(Deno.execPath(), ["check", "main.ts"], {
    cwd: dir,
    env: { NO_COLOR: "1" },
  });
}

Deno.test("deno.lock matches deno.json's import map", async () => {
  await using dir = await tempDir("drover-lock-");
  await copyConfigs(dir.path);
  const result = await check(dir.path);
  assertEquals(
    result.code,
    0,
    `deno.lock is out of date: run \`deno install --frozen=false\` and commit deno.lock\n` +
      result.stderr,
  );
});

Deno.test("a stale deno.lock fails with Deno's error and is left untouched", async () => {
  await using dir = await tempDir("drover-lock-");
  const config = await copyConfigs(dir.path);
  const [removed] = Object.keys(config.imports);
  assert(removed, "deno.json has no imports to take out");
  delete config.imports[removed];
  await Deno.writeTextFile(`${dir.path}/deno.json`, JSON.stringify(config, null, 2));
  const lock = await Deno.readTextFile(`${dir.path}/deno.lock`);

  const result = await check(dir.path);
  assert(result.code !== 0, `deno check accepted a stale lock file:\n${result.stderr}`);
  assertStringIncludes(result.stderr, "The lockfile is out of date");
  assertEquals(
    await Deno.readTextFile(`${dir.path}/deno.lock`),
    lock,
    "the lock file was rewritten: is deno.json's lock still frozen?",
  );
});
