/**
 * What `serve` says when a person starts it: the registered devices in its Ready line, a busy
 * port named, a second `serve` on another port saying it stands by and who acts. Real
 * nats-server, the real operator CLI and `serve` processes.
 */

import { freePort, startNats, waitFor } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { runOperatorCli, startOperatorService } from "../support/operator_process.ts";

Deno.test("serve: Ready counts registered devices; a busy port is named; a standby says who acts", async () => {
  await using nats = await startNats();
  for (const id of ["pi-a1", "pi-a2", "pi-a3"]) {
    const label = await runOperatorCli(nats.url, ["device", "label", id, "site=lab"]);
    assertEquals(label.code, 0, label.stderr);
  }
  const port = await freePort();
  await using first = await startOperatorService(nats.url, port);
  await waitFor(() => first.logs().includes("Ready:"), {
    timeoutMs: 20_000,
    message: "serve logs Ready",
  });
  assertStringIncludes(first.logs(), "3 device(s) registered (0 reporting)");
  assertStringIncludes(first.logs(), "acting (lease holder)");

  const busy = await runOperatorCli(nats.url, ["serve", "--listen", `127.0.0.1:${port}`]);
  assertEquals(busy.code, 1, busy.stderr);
  assertStringIncludes(
    busy.stderr,
    `error: Cannot listen on 127.0.0.1:${port}: the address is already in use`,
  );

  await using standby = await startOperatorService(nats.url, await freePort());
  await waitFor(() => standby.logs().includes("Ready:"), {
    timeoutMs: 20_000,
    message: "the standby logs Ready",
  });
  assertStringIncludes(standby.logs(), 'Standby: the operator lease is held by "operator-');
  assertStringIncludes(standby.logs(), `(API 127.0.0.1:${port})"`);
  assertStringIncludes(standby.logs(), 'standby (the lease is held by "operator-');
  assert(!first.logs().includes("Standby:"), first.logs());
});
