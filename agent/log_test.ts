import { closeLogging, errorText, logger, parseLogFormat, setupLogging } from "./log.ts";
import { assertEquals, assertMatch } from "../tests/support/assert.ts";

async function captureLogs(
  format: "text" | "json",
  emit: () => void,
): Promise<string> {
  const chunks: Uint8Array[] = [];
  const writable = new WritableStream<Uint8Array>({ write: (c) => void chunks.push(c) });
  await setupLogging({ level: "info", format, writable });
  emit();
  await closeLogging();
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

Deno.test("text lines carry level, category, message and context fields", async () => {
  const out = await captureLogs("text", () => {
    logger("reconcile").with({ device: "pi-1", deployment: "web" }).info("replaced {service}", {
      service: "nginx",
      revision: 7,
    });
    logger("reconcile").debug("not shown at info");
  });
  assertEquals(out.trim().split("\n").length, 1);
  assertMatch(out, /^INFO drover\.reconcile: replaced nginx /);
  assertMatch(out, /device=pi-1/);
  assertMatch(out, /deployment=web/);
  assertMatch(out, /revision=7/);
});

Deno.test("json lines parse and carry the fields", async () => {
  const out = await captureLogs("json", () => {
    logger("nats").with({ device: "pi-1" }).warn("bucket {bucket} missing", {
      bucket: "desired-state",
    });
  });
  const line = JSON.parse(out.trim());
  assertEquals(line.logger, "drover.nats");
  assertEquals(line.device, "pi-1");
  assertEquals(line.bucket, "desired-state");
  assertEquals(line.message, 'bucket "desired-state" missing');
});

Deno.test("errorText follows the cause chain", () => {
  const e = new Error("Cannot pull image", { cause: new Error("401 unauthorized") });
  assertEquals(errorText(e), "Cannot pull image: 401 unauthorized");
});

Deno.test("parseLogFormat defaults to text", () => {
  assertEquals(parseLogFormat(undefined), "text");
  assertEquals(parseLogFormat("JSON"), "json");
  assertEquals(parseLogFormat("yaml"), "text");
});

Deno.test("no log line shows a server URL's password or token, in either format", async () => {
  for (const format of ["text", "json"] as const) {
    const out = await captureLogs(format, () => {
      logger("nats").warn("Cannot connect to NATS: {error}", {
        servers: "nats://drover:s3cret@h1:4222,nats://t0ken@h2:4222",
        error: "Invalid URL: 'http://[drover:s3cret@bad host:4222]'",
      });
    });
    assertEquals(/s3cret|t0ken/.test(out), false, out);
    assertMatch(out, /nats:\/\/\*\*\*@h1:4222,nats:\/\/\*\*\*@h2:4222/);
  }
});
