import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { startNats } from "../../tests/support/mod.ts";
import { assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { type CliIo, OperationError } from "./cli.ts";
import { pruneDeployment } from "./apply.ts";
import { follow } from "./_wait.ts";
import { ensureBuckets } from "../nats/kv.ts";
import { ensureRolloutBuckets } from "../rollout/store.ts";

Deno.test("pruneDeployment deletes only the revision the plan saw; a repeated delete is success", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await new Kvm(nc).create("prune-test");
    const planned = await kv.put("web", "{}");
    const edited = await kv.put("web", '{"edited":true}');
    await assertRejects(
      () => pruneDeployment(kv, "web", planned),
      OperationError,
      `it changed since the plan was made (revision ${planned}, now ${edited})`,
    );
    assertEquals((await kv.get("web"))?.operation, "PUT", "the edited deployment is kept");
    await pruneDeployment(kv, "web", edited);
    assertEquals((await kv.get("web"))?.operation, "DEL");
    // A retry of a delete that already landed.
    await pruneDeployment(kv, "web", edited);
    assertEquals((await kv.get("web"))?.operation, "DEL");
  } finally {
    await nc.close();
  }
});

Deno.test("Ctrl-C during --wait says the rollout carries on and how to follow it", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const buckets = await ensureBuckets(nc);
    const { rollouts } = await ensureRolloutBuckets(nc);
    const interrupt = new AbortController();
    const out: string[] = [];
    const io: CliIo = {
      stdout: (t) => void out.push(t),
      stderr: (t) => void out.push(t),
      env: () => undefined,
      isTerminal: false,
      signal: interrupt.signal,
    };
    setTimeout(() => interrupt.abort(), 300);
    const e = await assertRejects(
      () => follow(buckets, rollouts, "web", 1, 60_000, io),
      OperationError,
      'Stopped waiting for "web" (interrupted)',
    );
    assertEquals(e.details, [
      "the rollout carries on in the operator without this command",
      "follow it with: drover-operator rollout status web",
    ]);
  } finally {
    await nc.close();
  }
});
