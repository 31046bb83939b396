import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { BUCKET_DEPLOYMENT_HISTORY, DeploymentManifest } from "@drover/contracts";
import { startNats } from "../../tests/support/mod.ts";
import { assertEquals } from "../../tests/support/assert.ts";
import { historyEntry, readRevision, recordOutcome, recordRevision } from "./history.ts";

const manifest = DeploymentManifest.parse({
  name: "web",
  selector: { devices: ["pi-1"] },
  score: { type: "PodmanV0", services: [{ name: "main", image: "busybox:1" }] },
});

Deno.test("recordRevision: the first record stays, unless the writer replaces it (an undo)", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await new Kvm(nc).create(BUCKET_DEPLOYMENT_HISTORY);
    const now = new Date("2026-12-01T10:00:00Z");
    // The operator's fill-in lands first, not knowing the revision is an undo.
    assertEquals(await recordRevision(kv, historyEntry(manifest, 5, manifest, now)), true);
    const undo = historyEntry(manifest, 5, manifest, now, "undo to revision 1: ");
    assertEquals(await recordRevision(kv, undo), false, "a plain record keeps the first one");
    assertEquals((await readRevision(kv, "web", 5))?.summary, "no change");
    assertEquals(await recordRevision(kv, undo, { replace: true }), true);
    assertEquals((await readRevision(kv, "web", 5))?.summary, "undo to revision 1: no change");
    // How its rollout ended is added to what is stored now (the undo's summary stays).
    const ended = await recordOutcome(kv, "web", 5, "rolled_back");
    assertEquals([ended?.summary, ended?.outcome], [
      "undo to revision 1: no change",
      "rolled_back",
    ]);
    assertEquals((await readRevision(kv, "web", 5))?.outcome, "rolled_back");
    assertEquals(await recordOutcome(kv, "web", 99, "complete"), undefined, "no such revision");
  } finally {
    await nc.close();
  }
});
