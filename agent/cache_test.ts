import {
  cachePath,
  decodeCache,
  encodeCache,
  loadDesiredCache,
  saveDesiredCache,
} from "./cache.ts";
import type { DesiredEntry } from "./reconcile/desired.ts";
import { DesiredState } from "@drover/contracts";
import { assert, assertEquals } from "../tests/support/assert.ts";

const web: DesiredEntry = {
  kind: "valid",
  deployment: "web",
  revision: 7,
  state: DesiredState.parse({
    deployment: "web",
    score: {
      type: "PodmanV0",
      services: [{
        name: "nginx",
        image: "127.0.0.1:5000/web:1",
        ports: ["8080:80"],
        env: { A: "1" },
      }],
    },
  }),
};
const broken: DesiredEntry = {
  kind: "invalid",
  deployment: "db",
  revision: 9,
  error: "invalid JSON",
};

Deno.test("save then load round-trips valid and invalid entries", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await saveDesiredCache(`${dir}/state`, "pi-1", [web, broken]);
    const loaded = await loadDesiredCache(`${dir}/state`, "pi-1");
    assert(loaded.kind === "loaded", JSON.stringify(loaded));
    assertEquals(loaded.entries.get("web"), web);
    assertEquals(loaded.entries.get("db"), broken);
    // No temp files left behind.
    const names = [...Deno.readDirSync(`${dir}/state`)].map((e) => e.name);
    assertEquals(names, ["desired-cache.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saving replaces the previous cache", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await saveDesiredCache(dir, "pi-1", [web, broken]);
    await saveDesiredCache(dir, "pi-1", [broken]);
    const loaded = await loadDesiredCache(dir, "pi-1");
    assert(loaded.kind === "loaded");
    assertEquals([...loaded.entries.keys()], ["db"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an absent cache is absent, a corrupt one unusable with a reason", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assertEquals(await loadDesiredCache(dir, "pi-1"), { kind: "absent" });
    await Deno.writeTextFile(cachePath(dir), '{"format":1,"device_id":"pi-1","entr');
    const loaded = await loadDesiredCache(dir, "pi-1");
    assert(
      loaded.kind === "unusable" && loaded.reason.includes("invalid JSON"),
      JSON.stringify(loaded),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a cache of another device is unusable", () => {
  const loaded = decodeCache("pi-2", encodeCache("pi-1", [web]));
  assert(loaded.kind === "unusable" && loaded.reason.includes('"pi-1"'), JSON.stringify(loaded));
});

Deno.test("a cached value that no longer validates becomes an invalid entry, not a removal", () => {
  const text = JSON.stringify({
    format: 1,
    device_id: "pi-1",
    saved_at: new Date().toISOString(),
    entries: [{ kind: "valid", deployment: "web", revision: 3, state: { deployment: "web" } }],
  });
  const loaded = decodeCache("pi-1", text);
  assert(loaded.kind === "loaded");
  const entry = loaded.entries.get("web");
  assert(entry?.kind === "invalid" && entry.error.includes("score"), JSON.stringify(entry));
  assertEquals(entry.revision, 3);
});

Deno.test("wrong shapes are unusable, with the field named", () => {
  const loaded = decodeCache("pi-1", JSON.stringify({ format: 1, device_id: "pi-1" }));
  assert(loaded.kind === "unusable" && loaded.reason.includes("saved_at"), JSON.stringify(loaded));
});
