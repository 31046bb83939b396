import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { freePort } from "../../tests/support/ports.ts";
import { captureIo } from "../commands/_capture_io.ts";
import { EXIT } from "../commands/cli.ts";
import { serversForDisplay } from "./connection.ts";
import { main } from "../main.ts";

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
