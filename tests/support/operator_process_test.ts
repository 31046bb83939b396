import { assertEquals } from "./assert.ts";
import { collectOutput } from "./operator_process.ts";

Deno.test("collectOutput decodes each stream on its own: a split character survives", async () => {
  // "é" is C3 A9; its halves arrive in two stdout chunks with a stderr chunk in between.
  const steps: [string, number[]][] = [["out", [0xc3]], ["err", [0x78]], ["out", [0xa9]]];
  const controllers: Record<string, ReadableStreamDefaultController<Uint8Array>> = {};
  const stream = (name: string) =>
    new ReadableStream<Uint8Array>({ start: (c) => void (controllers[name] = c) });
  const output = collectOutput({ stdout: stream("out"), stderr: stream("err") });
  for (const [name, bytes] of steps) {
    controllers[name]?.enqueue(new Uint8Array(bytes));
    // Let the reader take this chunk before the next one is offered.
    await new Promise((r) => setTimeout(r, 0));
  }
  controllers.out?.close();
  controllers.err?.close();
  await output.done;
  assertEquals([...output.text()].sort(), ["x", "é"]);
});
