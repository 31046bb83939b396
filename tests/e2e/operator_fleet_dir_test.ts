/**
 * A fleet kept in git, through the real CLI and nats-server: `apply -f DIR`
 * with a multi-document file, every problem of a broken set reported with
 * nothing stored, `diff` (exit 0/1, what changed, how many devices),
 * `apply --dry-run` storing nothing, `--source` shown by `get deployments`,
 * `--prune` deleting exactly the deployment whose file is gone, and `--wait`
 * over two deployments run by hollow devices (the real agent over the FAKE
 * in-memory runtime, agent/hollow.ts) and the real `serve`.
 */

import type { KV } from "@nats-io/kv";
import { BUCKET_DEPLOYMENTS, BUCKET_DEVICES } from "@drover/contracts";
import { HollowDevice, type HollowFleetOptions } from "../../agent/hollow.ts";
import { setupLogging } from "../../agent/log.ts";
import { freePort, startNats, tempDir } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import {
  liveRevisions,
  operatorTaskArgs,
  runOperatorCli,
  startOperatorService,
  testKv,
} from "../support/operator_process.ts";

const REPO_ROOT = new URL("../../", import.meta.url).pathname;

const yaml = (name: string, selector: string, image = "busybox:1", env = "{ MODE: a }") =>
  `name: ${name}
selector: ${selector}
score:
  type: PodmanV0
  services:
    - name: main
      image: ${image}
      env: ${env}
`;

/** The fleet: a multi-document file, a JSON file in a sub-folder, a TOML file; a README. */
async function writeFleet(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/fleet/edge`, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/fleet/apps.yaml`,
    `# two deployments in one file\n${yaml("web", "{ labels: { site: lab } }")}---\n${
      yaml("api", "{ devices: [pi-a] }")
    }`,
  );
  await Deno.writeTextFile(
    `${dir}/fleet/edge/worker.json`,
    JSON.stringify({
      name: "worker",
      selector: { labels: {} },
      score: { type: "PodmanV0", services: [{ name: "main", image: "busybox:1" }] },
    }),
  );
  await Deno.writeTextFile(
    `${dir}/fleet/cache.toml`,
    `name = "cache"\n[selector]\ndevices = ["pi-c"]\n[score]\ntype = "PodmanV0"\n` +
      `[[score.services]]\nname = "main"\nimage = "busybox:1"\n`,
  );
  await Deno.writeTextFile(`${dir}/fleet/README.md`, "Not a manifest: a directory walk skips it.");
}

/** The deployments bucket's live keys → revision (empty when it does not exist yet). */
async function stored(kv: () => Promise<KV>): Promise<Map<string, number>> {
  try {
    return await liveRevisions(await kv());
  } catch (e) {
    if (/not found|no stream|stream not found/i.test((e as Error).message)) return new Map();
    throw e;
  }
}

Deno.test("fleet in git: apply -f DIR, broken sets store nothing, diff, --dry-run, --source, --prune", async () => {
  await using nats = await startNats();
  await using dir = await tempDir("operator-fleet-dir-");
  await using t = await testKv(nats.url);
  // Paths in messages relative to the directory the user ran the command in.
  const cli = (...args: string[]) => runOperatorCli(nats.url, args, { INIT_CWD: dir.path });
  const deployments = () => stored(() => t.open(BUCKET_DEPLOYMENTS));
  await writeFleet(dir.path);

  // Three registered devices decide the label selectors' device counts.
  for (const [id, site] of [["pi-a", "lab"], ["pi-b", "lab"], ["pi-c", "shop"]]) {
    const labelled = await cli("device", "register", id!, `site=${site}`);
    assertEquals(labelled.code, 0, labelled.stderr);
  }

  // Before anything: everything would be created; diff exits 1, a dry run exits 0; nothing stored.
  const first = await cli("diff", "-f", "fleet", "--source", "git-a");
  assertEquals(first.code, 1, first.stderr);
  assertStringIncludes(first.stdout, "4 to create, 0 to change, 0 to delete, 0 unchanged.");
  const firstRows = rowsOf(first.stdout);
  assertEquals(firstRows.get("web")?.slice(0, 3), ["created", "2", "fleet/apps.yaml (document 1)"]);
  assertEquals(firstRows.get("worker")?.slice(0, 3), ["created", "3", "fleet/edge/worker.json"]);
  const dry = await cli("apply", "-f", "fleet", "--source", "git-a", "--dry-run");
  assertEquals(dry.code, 0, dry.stderr);
  assertStringIncludes(dry.stdout, "4 to create");
  assertStringIncludes(dry.stdout, "Dry run: nothing was stored.");
  assertEquals(await deployments(), new Map());

  // A broken set: every problem named (file, document, line, key), a duplicate name naming
  // both files, and nothing stored.
  await Deno.mkdir(`${dir.path}/broken`);
  await Deno.writeTextFile(
    `${dir.path}/broken/apps.yaml`,
    `${yaml("web", "{ labels: {} }")}---\n${yaml("api", "{ devices: [pi-a] }", "Bad Image")}`,
  );
  await Deno.writeTextFile(`${dir.path}/broken/more.toml`, 'name = "x"\nselector = [\n');
  await Deno.writeTextFile(`${dir.path}/broken/same.yaml`, yaml("web", "{ labels: {} }"));
  const broken = await cli("apply", "-f", "broken", "--source", "git-a");
  assertEquals(broken.code, 3, broken.stdout + broken.stderr);
  assertStringIncludes(broken.stderr, "3 invalid manifests in 3 file(s); nothing was changed");
  assertStringIncludes(broken.stderr, "broken/apps.yaml (document 2):");
  assertStringIncludes(broken.stderr, 'score.services[0].image: invalid image "Bad Image"');
  assertStringIncludes(broken.stderr, "(line 16)");
  assertStringIncludes(broken.stderr, "broken/more.toml: not valid TOML");
  assertStringIncludes(
    broken.stderr,
    'broken/same.yaml: name: deployment "web" is also defined in broken/apps.yaml (document 1)',
  );
  assertEquals(await deployments(), new Map());

  // The set applies: four deployments from one multi-document file and two single files.
  const applied = await cli("apply", "-f", "fleet", "--source", "git-a");
  assertEquals(applied.code, 0, applied.stderr);
  for (const name of ["api", "cache", "web", "worker"]) {
    assertStringIncludes(applied.stdout, `deployment "${name}" created (revision `);
  }
  assertEquals([...(await deployments()).keys()].sort(), ["api", "cache", "web", "worker"]);
  // A hand-applied deployment and another repository's live next to it.
  await Deno.writeTextFile(`${dir.path}/manual.yaml`, yaml("manual", "{ devices: [pi-a] }"));
  await Deno.writeTextFile(`${dir.path}/theirs.yaml`, yaml("theirs", "{ devices: [pi-b] }"));
  assertEquals((await cli("apply", "-f", "manual.yaml")).code, 0);
  assertEquals((await cli("apply", "-f", "theirs.yaml", "--source", "git-b")).code, 0);
  const table = await cli("get", "deployments");
  const sources = new Map(
    table.stdout.trimEnd().split("\n").slice(1).map((l) => {
      const cells = l.split(/ +/);
      return [cells[0], cells.at(-1)];
    }),
  );
  assertEquals(Object.fromEntries(sources), {
    api: "git-a",
    cache: "git-a",
    manual: "-",
    theirs: "git-b",
    web: "git-a",
    worker: "git-a",
  });
  const json = JSON.parse((await cli("get", "deployments", "-o", "json")).stdout);
  assertEquals(json.find((d: { name: string }) => d.name === "web").source, "git-a");

  // Nothing changed: diff exits 0. An edit: diff exits 1 naming the change and its devices.
  const same = await cli("diff", "-f", "fleet", "--source", "git-a");
  assertEquals(same.code, 0, same.stdout + same.stderr);
  assertStringIncludes(same.stdout, "0 to create, 0 to change, 0 to delete, 4 unchanged.");
  const apps = await Deno.readTextFile(`${dir.path}/fleet/apps.yaml`);
  await Deno.writeTextFile(
    `${dir.path}/fleet/apps.yaml`,
    apps.replace(
      yaml("web", "{ labels: { site: lab } }"),
      yaml("web", "{ labels: { site: lab } }", "busybox:2", "{ MODE: b, DEBUG: '1' }"),
    ),
  );
  const before = await deployments();
  const edited = await cli("diff", "-f", "fleet", "--source", "git-a");
  assertEquals(edited.code, 1, edited.stdout + edited.stderr);
  assertEquals(rowsOf(edited.stdout).get("web")?.slice(0, 3), [
    "changed",
    "2",
    "fleet/apps.yaml (document 1)",
  ]);
  assertStringIncludes(
    edited.stdout,
    "main: image busybox:1 → busybox:2; env changed (env +DEBUG ~MODE)",
  );
  assertStringIncludes(edited.stdout, "0 to create, 1 to change, 0 to delete, 3 unchanged.");
  const editedJson = await cli("diff", "-f", "fleet", "--source", "git-a", "-o", "json");
  assertEquals(editedJson.code, 1);
  const plan = JSON.parse(editedJson.stdout);
  assertEquals(plan.counts, { created: 0, changed: 1, unchanged: 3, retried: 0, deleted: 0 });
  const web = plan.changes.find((c: { name: string }) => c.name === "web");
  assertEquals([web.action, web.devices, web.file, web.source], [
    "changed",
    2,
    "fleet/apps.yaml",
    "git-a",
  ]);
  // A dry run of the edit stores nothing.
  assertEquals((await cli("apply", "-f", "fleet", "--source", "git-a", "--dry-run")).code, 0);
  assertEquals(await deployments(), before);

  // The worker's file is removed: --prune without --source is refused; with it, the plan
  // lists the deletion and apply deletes exactly that deployment.
  await Deno.remove(`${dir.path}/fleet/edge/worker.json`);
  const refused = await cli("apply", "-f", "fleet", "--prune");
  assertEquals(refused.code, 2);
  assertStringIncludes(refused.stderr, "--prune needs --source NAME");
  const pruneDiff = await cli("diff", "-f", "fleet", "--source", "git-a", "--prune");
  assertEquals(pruneDiff.code, 1);
  assertEquals(rowsOf(pruneDiff.stdout).get("worker")?.slice(0, 3), ["deleted", "3", "-"]);
  assertEquals(
    rowsOf(pruneDiff.stdout).has("manual") || rowsOf(pruneDiff.stdout).has("theirs"),
    false,
  );
  const pruned = await cli("apply", "-f", "fleet", "--source", "git-a", "--prune");
  assertEquals(pruned.code, 0, pruned.stderr);
  assertStringIncludes(pruned.stdout, 'deployment "web" configured (revision ');
  assertStringIncludes(
    pruned.stdout,
    'deployment "worker" deleted (not in source "git-a" any more)',
  );
  assertEquals([...(await deployments()).keys()].sort(), [
    "api",
    "cache",
    "manual",
    "theirs",
    "web",
  ]);
  const settled = await cli("diff", "-f", "fleet", "--source", "git-a", "--prune");
  assertEquals(settled.code, 0, settled.stdout);

  // One repository cannot take over another's deployment: refused, nothing stored.
  const after = await deployments();
  await Deno.writeTextFile(`${dir.path}/fleet/theirs.yaml`, yaml("theirs", "{ devices: [pi-a] }"));
  const takeover = await cli("apply", "-f", "fleet", "--source", "git-a");
  assertEquals(takeover.code, 3);
  assertStringIncludes(
    takeover.stderr,
    'deployment "theirs" belongs to source "git-b", not "git-a"',
  );
  assertEquals(await deployments(), after);
  // The device registry was only read.
  assertEquals((await stored(() => t.open(BUCKET_DEVICES))).size, 3);
});

Deno.test("apply -f - reads a multi-document stream from standard input", async () => {
  await using nats = await startNats();
  const child = new Deno.Command(Deno.execPath(), {
    args: [...await operatorTaskArgs(), "apply", "-f", "-", "--source", "piped"],
    env: { NATS_URL: nats.url, INIT_CWD: REPO_ROOT },
    cwd: REPO_ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(
    new TextEncoder().encode(
      `${yaml("one", "{ devices: [pi-a] }")}---\n${yaml("two", "{ devices: [pi-a] }")}`,
    ),
  );
  await writer.close();
  const out = await child.output();
  const stdout = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  assertStringIncludes(stdout, 'deployment "one" created');
  assertStringIncludes(stdout, 'deployment "two" created');
});

Deno.test("apply --wait over two deployments follows both rollouts and names the one that fails", async () => {
  await setupLogging({ level: "warning", format: "text" });
  await using nats = await startNats();
  await using dir = await tempDir("operator-fleet-wait-");
  await using _operator = await startOperatorService(nats.url, await freePort());
  const cli = (...args: string[]) => runOperatorCli(nats.url, args, { INIT_CWD: dir.path });
  const fleet: HollowFleetOptions = {
    servers: [nats.url],
    labels: {},
    heartbeatSeconds: 1,
  };
  const devices = [new HollowDevice("hw-a"), new HollowDevice("hw-b")];
  const stop = new AbortController();
  const runs = devices.map((d) => d.run(fleet, stop.signal));
  try {
    await Deno.mkdir(`${dir.path}/fleet`);
    const selector = "{ devices: [hw-a, hw-b] }";
    const held = "docker.io/library/busybox:latest";
    /** Both deployments in one file, then `apply --wait` of the folder. */
    const applyAndWait = async (alphaEnv: string, betaImage: string) => {
      await Deno.writeTextFile(
        `${dir.path}/fleet/apps.yaml`,
        `${yaml("alpha", selector, held, alphaEnv)}---\n${yaml("beta", selector, betaImage)}`,
      );
      return await cli("apply", "-f", "fleet", "--source", "w", "--wait", "--timeout", "60s");
    };
    const ok = await applyAndWait("{ MODE: a }", held);
    assertEquals(ok.code, 0, ok.stdout + ok.stderr);
    assertStringIncludes(ok.stdout, "alpha: rolled out, 2/2 ready");
    assertStringIncludes(ok.stdout, "beta: rolled out, 2/2 ready");

    // beta's new image cannot be pulled on either device; alpha's edit rolls out.
    for (const d of devices) {
      d.runtime.setPull("registry.invalid/beta:2", { error: "manifest unknown (planted)" });
    }
    const bad = await applyAndWait("{ MODE: b }", "registry.invalid/beta:2");
    assertEquals(bad.code, 1, bad.stdout + bad.stderr);
    assertStringIncludes(bad.stdout, "alpha: rolled out, 2/2 ready");
    assertStringIncludes(bad.stderr, "1 of 2 rollouts did not succeed: beta");
    assertStringIncludes(bad.stderr, 'Rollout of "beta"');
    assert(!bad.stderr.includes('Rollout of "alpha"'), bad.stderr);
  } finally {
    stop.abort();
    await Promise.allSettled(runs);
  }
});

/** The plan table's rows: DEPLOYMENT → [CHANGE, DEVICES, FILE]. */
function rowsOf(stdout: string): Map<string, string[]> {
  const lines = stdout.split("\n\n")[0]!.split("\n").slice(1);
  return new Map(lines.map((l) => {
    const [name, ...cells] = l.split(/ {2,}/);
    return [name!, cells];
  }));
}
