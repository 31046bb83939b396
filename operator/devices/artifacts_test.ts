import { assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { ArtifactCache, ArtifactCacheBusyError } from "./artifacts.ts";

Deno.test("ArtifactCache: artifacts in use are not evicted for requests alternating others", async () => {
  const cache = new ArtifactCache(100, 1_000);
  let loads = 0;
  const load = () => {
    loads++;
    return Promise.resolve(new Uint8Array(1));
  };
  await cache.put("v1/x86_64", 60, load, 0);
  // Another artifact that does not fit while v1 is in use: refused, v1 stays.
  assertThrows(() => cache.put("v1/aarch64", 60, load, 10), ArtifactCacheBusyError);
  for (let t = 20; t < 900; t += 20) cache.get("v1/x86_64", t);
  assertThrows(() => cache.put("v1/aarch64", 60, load, 1_500), ArtifactCacheBusyError);
  assertEquals(loads, 1, "the artifact in use was read once");
  // Once idle long enough, the least recently used makes room.
  await cache.put("v1/aarch64", 60, load, 2_000);
  assertEquals(cache.names, ["v1/aarch64"]);
  // Smaller ones fit side by side.
  await cache.put("v2/x86_64", 40, load, 2_001);
  assertEquals(cache.names, ["v1/aarch64", "v2/x86_64"]);
});

Deno.test("ArtifactCache: a failed read is forgotten", async () => {
  const cache = new ArtifactCache(100, 1_000);
  await cache.put("v1/x86_64", 10, () => Promise.reject(new Error("gone")), 0).catch(() => {});
  assertEquals(cache.get("v1/x86_64", 1), undefined);
});
