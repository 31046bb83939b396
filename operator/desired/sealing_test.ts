import { DeploymentManifest, type SecretRecord } from "@drover/contracts";
import { createSealingKey, openFrom, sealTo } from "@drover/common";
import { assert, assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { desiredContent, desiredStateOf, diff, sealingOf, type StoredDesired } from "./fanout.ts";
import { Sealer } from "./sealing.ts";
import { FleetState } from "../fleet/state.ts";
import { changeSummary } from "../rollout/history.ts";
import { pinSecretVersions } from "../rollout/secret_versions.ts";

const operator = createSealingKey();
const pi1 = createSealingKey();
const pi2 = createSealingKey();
const bytes = (s: string) => new TextEncoder().encode(s);

function record(name: string, values: string[], key = operator): SecretRecord {
  return {
    name,
    key: key.getPublicKey(),
    versions: values.map((v, i) => ({
      version: i + 1,
      created_at: "2026-12-06T12:00:00.000Z",
      sealed: sealTo(key, key.getPublicKey(), bytes(v)),
    })),
  };
}

const manifest = DeploymentManifest.parse({
  name: "app",
  selector: { labels: {} },
  score: {
    type: "PodmanV0",
    services: [{ name: "web", image: "busybox:1", secrets: ["db"] }],
  },
  secret_versions: { db: 2 },
});

Deno.test("Sealer: each device gets the pinned version sealed to its own key, openable only by it", () => {
  const sealer = new Sealer(operator, new Map([["db", record("db", ["one", "two"])]]));
  const [entry] = sealer.seal("pi-1", pi1.getPublicKey(), [{ name: "db", version: 2 }]);
  assert(entry?.sealed !== undefined && entry.sender !== undefined, JSON.stringify(entry));
  assertEquals(entry.recipient, pi1.getPublicKey());
  assertEquals(openFrom(pi1, entry.sender, entry.sealed), bytes("two"));
  assertEquals(openFrom(pi2, entry.sender, entry.sealed), undefined);
  // What the diff compares does not change with the (random) sealed bytes.
  const again = sealer.seal("pi-1", pi1.getPublicKey(), [{ name: "db", version: 2 }]);
  assert(again[0]?.sealed !== entry.sealed);
  assertEquals(sealingOf(again), sealingOf([entry]));
  assertEquals(
    sealingOf(sealer.expected("pi-1", pi1.getPublicKey(), [{ name: "db", version: 2 }])),
    sealingOf([entry]),
  );
});

Deno.test("Sealer: what cannot be sealed says why, naming what to do", () => {
  const refs = [{ name: "db", version: 1 }];
  const problem = (sealer: Sealer, key: string | undefined) =>
    sealer.seal("pi-1", key, refs)[0]?.problem ?? "";
  const store = new Map([["db", record("db", ["one"])]]);
  assertStringIncludes(
    problem(new Sealer(operator, store), undefined),
    'device "pi-1" has no sealing key',
  );
  assertStringIncludes(problem(new Sealer(undefined, store), pi1.getPublicKey()), "--dir");
  assertStringIncludes(
    problem(new Sealer(operator, new Map()), pi1.getPublicKey()),
    'secret "db" does not exist',
  );
  assertStringIncludes(
    new Sealer(operator, store).seal("pi-1", pi1.getPublicKey(), [{ name: "db", version: 7 }])[0]
      ?.problem ?? "",
    "version 7 is no longer kept",
  );
  const foreign = new Map([["db", record("db", ["one"], createSealingKey())]]);
  assertStringIncludes(
    problem(new Sealer(operator, foreign), pi1.getPublicKey()),
    "another operator key",
  );
});

Deno.test("fan-out: secrets are device-independent content; a device's new key rewrites only its copy", () => {
  const value = desiredStateOf(manifest, 5);
  assertEquals(value.secrets, [{ name: "db", version: 2 }]);
  const sealer = new Sealer(operator, new Map([["db", record("db", ["one", "two"])]]));
  const keys: Record<string, string> = { "pi-1": pi1.getPublicKey(), "pi-2": pi2.getPublicKey() };
  const expected = (key: string) => {
    const device = key.split(".")[0]!;
    return sealingOf(sealer.expected(device, keys[device], value.secrets ?? []))!;
  };
  const storedFor = (device: string): StoredDesired => {
    const sealed = sealer.seal(device, keys[device], value.secrets ?? []);
    return {
      canonical: desiredContent({ ...value, secrets: sealed }),
      deploymentRevision: 5,
      sealing: sealingOf(sealed)!,
    };
  };
  const wanted = new Map([["pi-1.app", value], ["pi-2.app", value]]);
  const current = new Map([["pi-1.app", storedFor("pi-1")], ["pi-2.app", storedFor("pi-2")]]);
  assertEquals(diff(wanted, current, new Set(), new Set(), expected).put.size, 0);
  // pi-2 re-provisioned: a new key in the registry.
  keys["pi-2"] = createSealingKey().getPublicKey();
  assertEquals([...diff(wanted, current, new Set(), new Set(), expected).put.keys()], ["pi-2.app"]);
});

Deno.test("a manifest whose secrets are not pinned is invalid: never fanned out with a made-up version", () => {
  const state = new FleetState();
  const { secret_versions: _, ...unpinned } = manifest;
  state.applyDeployment({
    key: "app",
    revision: 1,
    operation: "PUT",
    value: bytes(JSON.stringify(unpinned)),
    created: new Date(),
  });
  assertStringIncludes(
    state.manifests.get("app")?.error ?? "",
    "no version pinned for secret(s) db",
  );
  assertEquals(state.validManifests().length, 0);
});

Deno.test("history names secret versions and config changes, never values; apply pins only referenced secrets", () => {
  const next = { ...manifest, secret_versions: { db: 3 } };
  assertEquals(changeSummary(manifest, next), "secret db v3");
  const withConfig = (content: string) =>
    DeploymentManifest.parse({
      ...manifest,
      score: { ...manifest.score, configs: { app: { content } } },
    });
  assertEquals(changeSummary(withConfig("a"), withConfig("b")), "config app changed");
  const pinned = pinSecretVersions(
    { ...manifest, secret_versions: { db: 1, other: 9 } },
    new Map([["db", 4], ["unused", 1]]),
  );
  assertEquals(pinned.secret_versions, { db: 4 });
  const plain = DeploymentManifest.parse({
    name: "plain",
    selector: { labels: {} },
    score: { type: "PodmanV0", services: [{ name: "web", image: "busybox:1" }] },
    secret_versions: { db: 1 },
  });
  assertEquals("secret_versions" in pinSecretVersions(plain, new Map()), false);
});
