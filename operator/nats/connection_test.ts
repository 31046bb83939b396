import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { freePort } from "../../tests/support/ports.ts";
import { startNats } from "../../tests/support/mod.ts";
import { captureIo } from "../commands/_capture_io.ts";
import { EXIT } from "../commands/cli.ts";
import { serversForDisplay } from "./connection.ts";
import { main } from "../main.ts";
import { tolerateTransportResets } from "@drover/common";

// A refused connection's late TCP reset may arrive after its test: the guard covers the file,
// as operator/main.ts installs it for the process.
tolerateTransportResets();

Deno.test("serversForDisplay redacts every server's credentials", () => {
  assertEquals(
    serversForDisplay(["nats://drover:s3cret@h1:4222", "t0ken@h2:4222", "nats://h3:4222"]),
    "nats://***@h1:4222,***@h2:4222,nats://h3:4222",
  );
});

Deno.test("a failed connect names the servers without their password or token", async () => {
  const closed = await freePort(); // reserved, nothing listens on it
  for (
    const [server, shown] of [
      [`nats://drover:s3cret@127.0.0.1:${closed}`, `nats://***@127.0.0.1:${closed}`],
      // The NATS client quotes an unparsable URL in its own message.
      ["nats://drover:s3cret@bad host:4222", "nats://***@bad host:4222"],
      [`nats://s3cret@127.0.0.1:${closed}`, `nats://***@127.0.0.1:${closed}`],
    ] as const
  ) {
    const { io, err } = captureIo();
    const code = await main(["get", "devices", "--nats", server], io);
    assertEquals(code, EXIT.failed, err());
    assertStringIncludes(err(), `Cannot connect to NATS at ${shown}`);
    assertEquals(err().includes("s3cret"), false, err());
  }
});

Deno.test("a server that wants credentials: none given says how; wrong ones say they were refused", async () => {
  await using nats = await startNats({ extraConfig: `authorization { token: "s3cret-token" }` });
  const none = captureIo();
  assertEquals(await main(["get", "devices", "--nats", nats.url], none.io), EXIT.failed);
  assertStringIncludes(
    none.err(),
    "the server requires credentials: pass --creds FILE or set NATS_CREDS",
  );
  const wrong = captureIo();
  assertEquals(
    await main(["get", "devices", "--nats", nats.url, "--token", "nope"], wrong.io),
    EXIT.failed,
  );
  assertStringIncludes(wrong.err(), "the server refused the user/password or token given");
  // The control: the right token gets in.
  const right = captureIo();
  assertEquals(
    await main(["get", "devices", "--nats", nats.url, "--token", "s3cret-token"], right.io),
    EXIT.ok,
    right.err(),
  );
});
