import { assert, assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import type { ReleaseManifest } from "@drover/contracts";
import { downloadRelease, sha256File } from "./download.ts";
import { downgradeRefusal, planUpdate } from "./plan.ts";
import { formatTrial, parseRolledBack, parseTrial } from "./slots.ts";
import { ReleaseRefusedError } from "./verify.ts";

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function manifestOf(bytes: Uint8Array<ArrayBuffer>): Promise<ReleaseManifest> {
  return {
    version: "2.0.0",
    arch: "x86_64",
    kind: "executable",
    size: bytes.length,
    sha256: await sha256(bytes),
    published_at: "2026-12-01T00:00:00Z",
  };
}

/** A chunk source over `bytes`, 10 bytes a chunk, recording the offsets asked for. */
function source(bytes: Uint8Array, asked: number[]) {
  return (offset: number) => {
    asked.push(offset);
    return Promise.resolve({ bytes: bytes.slice(offset, offset + 10), size: bytes.length });
  };
}

Deno.test("planUpdate: idle, fetch, or failed with the reason", () => {
  const none = new Map<string, string>();
  const base = { running: "1.0.0", rolledBack: undefined, refused: none };
  assertEquals(planUpdate({ ...base, wanted: null }), { kind: "idle" });
  assertEquals(planUpdate({ ...base, wanted: "1.0.0" }), { kind: "idle" });
  assertEquals(planUpdate({ ...base, wanted: "2.0.0" }), { kind: "fetch", version: "2.0.0" });
  const rolled = planUpdate({
    ...base,
    wanted: "2.0.0",
    rolledBack: { version: "2.0.0", reason: "crashed" },
  });
  assertEquals(rolled, { kind: "failed", message: "release 2.0.0 was rolled back: crashed" });
  // A rollback of another version does not block this one.
  assertEquals(
    planUpdate({ ...base, wanted: "3.0.0", rolledBack: { version: "2.0.0", reason: "x" } }).kind,
    "fetch",
  );
  const refused = planUpdate({
    ...base,
    wanted: "2.0.0",
    refused: new Map([["2.0.0", "bad sig"]]),
  });
  assertEquals(refused, { kind: "failed", message: "bad sig" });
  const unmanaged = planUpdate({ ...base, running: undefined, wanted: "2.0.0" });
  assert(unmanaged.kind === "failed");
  assertStringIncludes(unmanaged.message, "not started by drover-agent-launch");
});

Deno.test("trial and rolled-back files round-trip; garbage is not a trial", () => {
  const marker = { version: "2.0.0", previous: "factory", starts: 2 };
  assertEquals(parseTrial(formatTrial(marker)), marker);
  assertEquals(parseTrial("2.0.0 factory"), undefined);
  assertEquals(parseTrial("2.0.0 factory x"), undefined);
  assertEquals(parseRolledBack("2.0.0 crashed at start\n"), {
    version: "2.0.0",
    reason: "crashed at start",
  });
  assertEquals(parseRolledBack(""), undefined);
});

Deno.test("downloadRelease resumes from the part file and checks the sha256", async () => {
  const dir = await Deno.makeTempDir({ prefix: "drover-download-" });
  try {
    const bytes = new TextEncoder().encode("0123456789".repeat(5) + "tail");
    const manifest = await manifestOf(bytes);
    const part = `${dir}/2.0.0-x86_64.part`;
    // A previous run got 20 bytes before it was cut.
    await Deno.writeFile(part, bytes.slice(0, 20));
    const asked: number[] = [];
    await downloadRelease(part, manifest, source(bytes, asked));
    assertEquals(asked, [20, 30, 40, 50]);
    assertEquals(await sha256File(part), manifest.sha256);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("downloadRelease refuses bytes that are not the signed ones, and deletes them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "drover-download-" });
  try {
    const bytes = new TextEncoder().encode("the real artifact bytes");
    const manifest = await manifestOf(bytes);
    const tampered = new TextEncoder().encode("the evil artifact bytes");
    const part = `${dir}/p.part`;
    let error: unknown;
    await downloadRelease(part, manifest, source(tampered, [])).catch((e) => error = e);
    assert(error instanceof ReleaseRefusedError, String(error));
    assertStringIncludes((error as Error).message, "release 2.0.0 (x86_64) refused: its sha256 is");
    let exists = true;
    await Deno.stat(part).catch(() => exists = false);
    assertEquals(exists, false, "the refused bytes were deleted");
    // A service that claims another size is refused before anything is written past it.
    const wrongSize = () => Promise.resolve({ bytes: bytes.slice(0, 5), size: 999 });
    error = undefined;
    await downloadRelease(part, manifest, wrongSize).catch((e) => error = e);
    assert(error instanceof ReleaseRefusedError);
    assertStringIncludes((error as Error).message, "the service says it has 999 bytes");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("downgradeRefusal: an older release only when signed as a rollback", () => {
  assertEquals(downgradeRefusal({ version: "1.3.0" }, "1.2.0"), undefined, "newer: accepted");
  assertEquals(downgradeRefusal({ version: "1.2.0" }, "1.2.0"), undefined);
  const refused = downgradeRefusal({ version: "1.1.9" }, "1.2.0");
  assert(refused !== undefined);
  assertStringIncludes(refused, "older than the running 1.2.0 and not signed as a rollback");
  assertEquals(downgradeRefusal({ version: "1.1.9", rollback: true }, "1.2.0"), undefined);
});
