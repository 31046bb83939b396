/**
 * Device-command refusals with the plain-config mirror of the account layout
 * (tests/support/drover_nats.ts, used by every agent test); the same checks
 * with real JWTs are in security_permissions_test.ts.
 */

import { connectAdmin, connectDevice, startDroverNats } from "../support/drover_nats.ts";
import { commandRefusals } from "./_command_refusals.ts";

Deno.test("security (plain config): device commands — own only, no asking others, no forged answers", async () => {
  await using nats = await startDroverNats(["a", "b"]);
  const op = await connectAdmin(nats.url);
  const a = await connectDevice(nats.url, "a");
  const b = await connectDevice(nats.url, "b");
  try {
    await commandRefusals(op, a, b);
  } finally {
    await Promise.all([op.close(), a.close(), b.close()]);
  }
});
