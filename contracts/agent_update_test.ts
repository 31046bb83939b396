import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import {
  AgentConfig,
  AgentReleaseVersion,
  ArtifactRequest,
  artifactSubject,
  compareReleaseVersions,
  ReleaseManifest,
  releaseObjectName,
} from "./mod.ts";

Deno.test("artifact subject is per device and refuses wildcards", () => {
  assertEquals(artifactSubject("pi-1"), "drover.artifact.pi-1");
  assertThrows(() => artifactSubject("*"));
  assertThrows(() => artifactSubject("a.b"));
});

Deno.test("release versions are one file-name-safe token, never 'factory'", () => {
  for (const ok of ["0.2.0", "1.0.0-rc.1", "2026.12.01+build_7"]) {
    assert(AgentReleaseVersion.safeParse(ok).success, ok);
  }
  for (const bad of ["", "../x", "a/b", ".hidden", "factory", "x".repeat(65), "a b"]) {
    assert(!AgentReleaseVersion.safeParse(bad).success, bad);
  }
  assertEquals(releaseObjectName("0.2.0", "aarch64"), "0.2.0/aarch64");
});

Deno.test("manifests are strict and name the bad field", () => {
  const good = {
    version: "0.2.0",
    arch: "x86_64",
    kind: "executable",
    size: 10,
    sha256: "a".repeat(64),
    published_at: "2026-12-01T00:00:00Z",
  };
  assert(ReleaseManifest.safeParse(good).success);
  const extra = ReleaseManifest.safeParse({ ...good, url: "http://x" });
  assert(!extra.success);
  const sha = ReleaseManifest.safeParse({ ...good, sha256: "A".repeat(64) });
  assert(!sha.success);
  assertEquals(sha.error.issues[0]?.path, ["sha256"]);
});

Deno.test("artifact requests: target and chunk only, offsets bounded", () => {
  assert(ArtifactRequest.safeParse({ op: "target", arch: "aarch64" }).success);
  assert(
    ArtifactRequest.safeParse({ op: "chunk", version: "1", arch: "x86_64", offset: 0 }).success,
  );
  assert(
    !ArtifactRequest.safeParse({ op: "chunk", version: "1", arch: "x86_64", offset: -1 })
      .success,
  );
  assert(!ArtifactRequest.safeParse({ op: "list" }).success);
  assert(!ArtifactRequest.safeParse({ op: "target", arch: "mips" }).success);
});

Deno.test("[update] release_key must be an ed25519 public key", () => {
  const base = { agent: { device_id: "pi-1" } };
  const key = "ed25519:" + "A".repeat(43);
  const ok = AgentConfig.parse({ ...base, update: { release_key: key } });
  assertEquals(ok.update?.check_seconds, 300);
  assertEquals(ok.update?.trial_seconds, 120);
  const bad = AgentConfig.safeParse({ ...base, update: { release_key: "SU123" } });
  assert(!bad.success);
  assertEquals(bad.error.issues[0]?.path, ["update", "release_key"]);
});

Deno.test("compareReleaseVersions: numbers by value, pre-releases before their release, build ignored", () => {
  const ordered = [
    "0.1.0",
    "0.2.0-rc1",
    "0.2.0-rc2",
    "0.2.0-rc10",
    "0.2.0",
    "0.2.1",
    "0.10.0",
    "1",
    "1.0.1",
    "2.0.0",
  ];
  for (let i = 0; i < ordered.length; i++) {
    for (let j = 0; j < ordered.length; j++) {
      const want = Math.sign(i - j);
      assertEquals(
        compareReleaseVersions(ordered[i]!, ordered[j]!),
        want,
        `${ordered[i]} vs ${ordered[j]}`,
      );
    }
  }
  assertEquals(compareReleaseVersions("1.0.0+build7", "1.0.0"), 0);
  assertEquals(compareReleaseVersions("1.0", "1.0.0"), 0);
});
