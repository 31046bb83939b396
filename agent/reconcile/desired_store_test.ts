import { assert, assertEquals } from "../../tests/support/assert.ts";
import { DesiredState } from "@drover/contracts";
import { DesiredStore } from "./desired_store.ts";
import type { DesiredEntry } from "./desired.ts";

function entry(deployment: string, revision: number): DesiredEntry {
  const state = DesiredState.parse({
    deployment,
    score: { type: "PodmanV0", services: [{ name: "app", image: "busybox:1" }] },
  });
  return { kind: "valid", deployment, revision, state };
}

Deno.test("DesiredStore's version changes with every replace and update, and only then", () => {
  const store = new DesiredStore();
  const seen = [store.version];
  store.replace(new Map([["a", entry("a", 1)]]), true);
  seen.push(store.version);
  assertEquals(store.version, seen[1], "reading changes nothing");
  store.update("a", entry("a", 2));
  seen.push(store.version);
  store.update("a", null);
  seen.push(store.version);
  assertEquals(new Set(seen).size, seen.length, `versions ${seen.join(", ")} repeat`);
  assert(seen.every((v, i) => i === 0 || v > seen[i - 1]!), `versions ${seen.join(", ")}`);
});
