import { assertEquals, assertStringIncludes, assertThrows } from "../../tests/support/assert.ts";
import { DeploymentManifest, type DeploymentManifestInput } from "@drover/contracts";
import type { FileManifest } from "./file.ts";
import {
  planApply,
  planChangesSomething,
  planCounts,
  storedChange,
  type StoredDeployment,
} from "./plan.ts";

const manifest = (
  name: string,
  extra: Partial<DeploymentManifestInput> = {},
  image = "busybox:1",
): DeploymentManifest =>
  DeploymentManifest.parse({
    name,
    selector: { labels: { site: "lab" } },
    score: { type: "PodmanV0", services: [{ name: "main", image }] },
    ...extra,
  });

const inFile = (m: DeploymentManifest, file = `fleet/${m.name}.yaml`): FileManifest => ({
  manifest: m,
  file,
});

const DEVICES = [
  { id: "pi-a", labels: { site: "lab" } },
  { id: "pi-b", labels: { site: "lab" } },
  { id: "pi-c", labels: { site: "shop" } },
];

const stored = (...entries: [DeploymentManifest, number][]): Map<string, StoredDeployment> =>
  new Map(entries.map(([m, revision]) => [m.name, { revision, manifest: m }]));

Deno.test("storedChange: created, unchanged by canonical content, changed (also over an invalid value)", () => {
  const m = manifest("web");
  assertEquals(storedChange(undefined, m), "created");
  const reordered = { score: m.score, selector: m.selector, name: m.name } as DeploymentManifest;
  assertEquals(storedChange({ revision: 1, manifest: reordered }, m), "unchanged");
  assertEquals(
    storedChange({ revision: 1, manifest: manifest("web", {}, "busybox:2") }, m),
    "changed",
  );
  assertEquals(storedChange({ revision: 1 }, m), "changed");
});

Deno.test("storedChange: the same manifest as a rolled-back or failed revision is retried", () => {
  const m = manifest("web");
  assertEquals(storedChange({ revision: 4, manifest: m, stopped: "rolled_back" }, m), "retried");
  assertEquals(storedChange({ revision: 4, manifest: m, stopped: "failed" }, m), "retried");
  // A changed manifest is a change, stopped or not; the same one whose rollout did not stop is not.
  const edited = manifest("web", {}, "busybox:2");
  assertEquals(
    storedChange({ revision: 4, manifest: m, stopped: "rolled_back" }, edited),
    "changed",
  );
  assertEquals(storedChange({ revision: 4, manifest: m }, m), "unchanged");
  const plan = planApply(
    [inFile(m)],
    new Map([["web", { revision: 4, manifest: m, stopped: "rolled_back" as const }]]),
    DEVICES,
  );
  assertEquals(plan.entries.map((e) => [e.action, e.summary]), [
    ["retried", "retries revision 4 (rolled back)"],
  ]);
  assertEquals(planCounts(plan).retried, 1);
});

Deno.test("planApply: created, changed with history's summary, unchanged; devices counted from the registry", () => {
  const api = manifest("api", { source: "fleet" });
  const web = manifest("web", { source: "fleet" });
  const edited = manifest(
    "web",
    { selector: { devices: ["pi-c"], labels: { site: "lab" } } },
    "busybox:2",
  );
  const plan = planApply(
    [inFile(manifest("api")), inFile(edited), inFile(manifest("db"), "fleet/apps.yaml")],
    stored([api, 4], [web, 5]),
    DEVICES,
    { source: "fleet" },
  );
  assertEquals(plan.conflicts, []);
  assertEquals(
    plan.entries.map((e) => [e.name, e.action, e.devices, e.file, e.source, e.revision]),
    [
      ["api", "unchanged", 2, "fleet/api.yaml", "fleet", 4],
      ["db", "created", 2, "fleet/apps.yaml", "fleet", undefined],
      ["web", "changed", 3, "fleet/web.yaml", "fleet", 5],
    ],
  );
  assertEquals(plan.entries[0]?.summary, "");
  assertEquals(plan.entries[1]?.summary, "created: main=busybox:1");
  assertEquals(plan.entries[2]?.summary, "main: image busybox:1 → busybox:2; selector changed");
  // What is stored carries the source.
  assertEquals(plan.entries[1]?.manifest?.source, "fleet");
  assertEquals(planCounts(plan), {
    created: 1,
    changed: 1,
    unchanged: 1,
    retried: 0,
    deleted: 0,
  });
  assertEquals(planChangesSomething(plan), true);
});

Deno.test("planApply: the summary names env keys, services added and removed, rollout policy", () => {
  const before = DeploymentManifest.parse({
    name: "web",
    selector: { labels: {} },
    score: {
      type: "PodmanV0",
      services: [
        { name: "main", image: "busybox:1", env: { KEEP: "1", EDIT: "a", DROP: "x" } },
        { name: "old", image: "busybox:1" },
      ],
    },
  });
  const after = DeploymentManifest.parse({
    ...before,
    score: {
      type: "PodmanV0",
      services: [
        { name: "main", image: "busybox:1", env: { KEEP: "1", EDIT: "b", ADD: "y" } },
        { name: "new", image: "busybox:2" },
      ],
    },
    rollout: { batches: [{ limit: 1 }] },
  });
  const plan = planApply([inFile(after)], stored([before, 2]), DEVICES);
  assertEquals(
    plan.entries[0]?.summary,
    "main: env changed (env +ADD ~EDIT -DROP); +new (busybox:2); -old; rollout added",
  );
});

Deno.test("planApply --prune: deletes only this source's deployments missing from the set", () => {
  const kept = manifest("web", { source: "fleet" });
  const gone = manifest("gone", { source: "fleet", selector: { devices: ["pi-x"] } });
  const other = manifest("theirs", { source: "other-repo" });
  const byHand = manifest("manual");
  const invalid: StoredDeployment = { revision: 9 };
  const all = stored([kept, 1], [gone, 2], [other, 3], [byHand, 4]);
  all.set("broken", invalid);
  const plan = planApply([inFile(manifest("web"))], all, DEVICES, { source: "fleet", prune: true });
  assertEquals(plan.conflicts, []);
  assertEquals(plan.entries.map((e) => [e.name, e.action, e.devices]), [
    ["gone", "deleted", 1],
    ["web", "unchanged", 2],
  ]);
  assertStringIncludes(plan.entries[0]!.summary, 'not in source "fleet"');
  // Without --prune nothing is deleted.
  const noPrune = planApply([inFile(manifest("web"))], all, DEVICES, { source: "fleet" });
  assertEquals(noPrune.entries.map((e) => e.action), ["unchanged"]);
  assertEquals(planChangesSomething(noPrune), false);
  assertThrows(() => planApply([], all, DEVICES, { prune: true }), Error, "prune needs a source");
});

Deno.test("planApply: another source's deployment and a manifest's own different source are conflicts", () => {
  const theirs = manifest("web", { source: "other-repo" });
  const plan = planApply(
    [inFile(manifest("web")), inFile(manifest("api", { source: "x" }), "fleet/api.yaml")],
    stored([theirs, 1]),
    DEVICES,
    { source: "fleet" },
  );
  assertEquals(plan.entries, []);
  assertEquals(plan.conflicts.map((c) => [c.file, c.summary]), [
    ["fleet/web.yaml", 'deployment "web" belongs to source "other-repo", not "fleet"'],
    ["fleet/api.yaml", 'source: "x" in the manifest, but --source is "fleet"'],
  ]);
});

Deno.test("planApply: a hand-applied deployment is adopted by a source; applied by hand it is released with a warning", () => {
  const adopted = planApply([inFile(manifest("web"))], stored([manifest("web"), 1]), DEVICES, {
    source: "fleet",
  });
  assertEquals(adopted.entries[0]?.action, "changed");
  assertEquals(adopted.entries[0]?.summary, "source (none) → fleet");
  const released = planApply(
    [inFile(manifest("web"))],
    stored([manifest("web", { source: "fleet" }), 1]),
    DEVICES,
  );
  assertEquals(released.entries[0]?.summary, "source fleet → (none)");
  assertStringIncludes(released.warnings[0]!, 'applied from source "fleet"');
});

Deno.test("planApply: every manifest pins the current version of each secret it uses; a missing or oversized one is a conflict", () => {
  const withSecret = (versions?: Record<string, number>) =>
    DeploymentManifest.parse({
      name: "app",
      selector: { labels: { site: "lab" } },
      score: {
        type: "PodmanV0",
        services: [{
          name: "main",
          image: "busybox:1",
          secrets: ["db", { source: "api", type: "env", target: "API" }],
        }],
      },
      ...(versions !== undefined ? { secret_versions: versions } : {}),
    });
  const secrets = new Map([["db", { version: 3, sealedBytes: 100 }], ["api", {
    version: 1,
    sealedBytes: 100,
  }]]);
  // Whatever the file says, the store's current versions are pinned.
  const plan = planApply([inFile(withSecret({ db: 1 }))], new Map(), DEVICES, { secrets });
  assertEquals(plan.conflicts, []);
  assertEquals(plan.entries[0]?.manifest?.secret_versions, { api: 1, db: 3 });
  // Stored with the same pins: unchanged; a newer version stored since: changed.
  const same = planApply(
    [inFile(withSecret())],
    stored([withSecret({ api: 1, db: 3 }), 7]),
    DEVICES,
    { secrets },
  );
  assertEquals(same.entries[0]?.action, "unchanged");
  const older = planApply(
    [inFile(withSecret())],
    stored([withSecret({ api: 1, db: 2 }), 7]),
    DEVICES,
    { secrets },
  );
  assertEquals(older.entries[0]?.action, "changed");
  // A manifest without secrets drops a stray secret_versions.
  const plain = manifest("web", { secret_versions: { db: 1 } });
  assertEquals(
    "secret_versions" in
      (planApply([inFile(plain)], new Map(), DEVICES).entries[0]?.manifest ?? {}),
    false,
  );

  const missing = planApply([inFile(withSecret())], new Map(), DEVICES, {
    secrets: new Map([["db", { version: 3, sealedBytes: 1 }]]),
  });
  assertEquals(missing.entries, []);
  assertEquals(missing.conflicts.length, 1);
  assertStringIncludes(
    missing.conflicts[0]?.summary ?? "",
    'deployment "app" uses secret(s) the operator does not have: api',
  );
  assertEquals(missing.conflicts[0]?.details, [
    "store it first: operator secret set api --from-file FILE",
  ]);
  const huge = planApply([inFile(withSecret())], new Map(), DEVICES, {
    secrets: new Map([["db", { version: 3, sealedBytes: 400_000 }], ["api", {
      version: 1,
      sealedBytes: 200_000,
    }]]),
  });
  assertStringIncludes(huge.conflicts[0]?.summary ?? "", "600000 bytes of sealed secrets");
});
