import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { startNats } from "../../tests/support/mod.ts";
import { assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { OperationError } from "./cli.ts";
import { pruneDeployment } from "./apply.ts";

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
