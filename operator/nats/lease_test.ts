import { connect } from "@nats-io/transport-node";
import { startNats, waitFor } from "../../tests/support/mod.ts";
import { assert, assertEquals } from "../../tests/support/assert.ts";
import { activeUntil, decideLease, Lease } from "./lease.ts";
import { ensureRolloutBuckets } from "../rollout/store.ts";

Deno.test("decideLease: acquire when free, renew our own, take over only after the ttl", () => {
  assertEquals(decideLease("a", { kind: "absent" }, 0), { kind: "acquire" });
  const held = { kind: "held" as const, holder: "b", ttlMs: 8000, kvRevision: 4, seenSince: 1000 };
  assertEquals(decideLease("b", held, 99_999), { kind: "renew", kvRevision: 4 });
  assertEquals(decideLease("a", held, 8999), { kind: "wait", holder: "b", expiresInMs: 1 });
  assertEquals(decideLease("a", held, 9000), { kind: "takeover", kvRevision: 4, from: "b" });
  // The holder stops acting well before a standby that saw its last renewal may take over.
  assert(activeUntil(1000, 8000) < 1000 + 8000);
});

Deno.test("lease on real NATS: one of two holds it; a dead holder is taken over, a stopped one at once", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const { leases } = await ensureRolloutBuckets(nc);
    const options = { ttlMs: 800, renewMs: 100 };
    const a = new Lease(leases, "a", options);
    await a.start();
    const b = new Lease(leases, "b", options);
    await b.start();
    assert(a.active && !b.active, "the first one holds it");
    // Over several renewals the holder never changes hands while it renews.
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 100));
      assert(a.active && !b.active, `round ${i}`);
    }
    // A holder that dies (stops renewing, keeps the key): b takes over after the ttl, and a
    // stopped counting itself active before that.
    const died = performance.now();
    await a.abandon();
    await waitFor(() => !a.active, { timeoutMs: 2000, message: "a stops acting" });
    await waitFor(() => b.active, { timeoutMs: 5000, message: "b takes over" });
    const took = performance.now() - died;
    assert(took >= 600, `took over after ${took} ms, not before the ttl`);
    // A clean stop hands over at the next look.
    const c = new Lease(leases, "c", options);
    await c.start();
    assert(!c.active);
    await b.stop();
    await waitFor(() => c.active, { timeoutMs: 1000, message: "c takes over at once" });
    await c.stop();
  } finally {
    await nc.close();
  }
});
