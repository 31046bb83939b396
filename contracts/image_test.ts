import { assertEquals, assertThrows } from "../tests/support/assert.ts";
import { normalizeImageReference, parseImageReference, qualifiedImageName } from "./mod.ts";

const DIGEST = `sha256:${"a".repeat(64)}`;

Deno.test("normalizeImageReference: Docker's rules for registry, library/ and the default tag", () => {
  const cases: [string, string][] = [
    ["busybox", "docker.io/library/busybox:latest"],
    ["busybox:1", "docker.io/library/busybox:1"],
    ["fedora:39", "docker.io/library/fedora:39"],
    ["library/busybox:1", "docker.io/library/busybox:1"],
    ["someone/app:2", "docker.io/someone/app:2"],
    ["docker.io/busybox:1", "docker.io/library/busybox:1"],
    ["index.docker.io/busybox:1", "docker.io/library/busybox:1"],
    ["docker.io/library/busybox:1", "docker.io/library/busybox:1"],
    // A first component is a host only with "." or ":" or when it is "localhost".
    ["localhost/web", "localhost/web:latest"],
    ["localhost:5000/web:1", "localhost:5000/web:1"],
    ["localhost", "docker.io/library/localhost:latest"],
    ["evil.example.com/busybox:1", "evil.example.com/busybox:1"],
    ["Quay.IO/org/app:3", "quay.io/org/app:3"],
    ["127.0.0.1:5000/demo/web:1.0", "127.0.0.1:5000/demo/web:1.0"],
    ["registry/app:1", "docker.io/registry/app:1"],
    // A digest pins the content: no tag is invented; a given tag is kept.
    [`busybox@${DIGEST}`, `docker.io/library/busybox@${DIGEST}`],
    [`busybox:1@${DIGEST}`, `docker.io/library/busybox:1@${DIGEST}`],
  ];
  for (const [input, name] of cases) {
    const normalized = normalizeImageReference(input);
    assertEquals(typeof normalized === "string" ? normalized : normalized.name, name, input);
    // Idempotent, and the parts agree with the parser's view of the name.
    assertEquals(qualifiedImageName(name), name, `${name} again`);
    const again = parseImageReference(name);
    if (typeof normalized !== "string" && typeof again !== "string") {
      assertEquals(again.registry, normalized.registry, input);
      assertEquals(again.repository, normalized.repository, input);
    }
  }
});

Deno.test("normalizeImageReference: invalid references say what is wrong", () => {
  assertEquals(normalizeImageReference(""), "must not be empty");
  assertEquals(typeof normalizeImageReference("Bad Image"), "string");
  assertEquals(typeof normalizeImageReference("busybox@sha256:short"), "string");
  assertThrows(() => qualifiedImageName("Bad Image"), Error, '"Bad Image"');
});
