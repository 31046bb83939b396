import { assertEquals, assertThrows } from "../../../tests/support/assert.ts";
import { LineSplitter, parseJsonLine, readJsonLines } from "./ndjson.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("LineSplitter joins a line split across chunks", () => {
  const splitter = new LineSplitter();
  assertEquals(splitter.push(bytes('{"a":')), []);
  assertEquals(splitter.push(bytes('1}\n{"b"')), ['{"a":1}']);
  assertEquals(splitter.push(bytes(":2}\n")), ['{"b":2}']);
  assertEquals(splitter.flush(), []);
});

Deno.test("LineSplitter returns several lines from one chunk and strips CRLF", () => {
  const splitter = new LineSplitter();
  assertEquals(splitter.push(bytes("one\r\ntwo\nthree")), ["one", "two"]);
  assertEquals(splitter.flush(), ["three"]);
});

Deno.test("LineSplitter keeps a multi-byte character split between chunks intact", () => {
  const encoded = bytes('{"msg":"grüße €"}\n');
  // Cut inside the 3-byte "€" and inside the 2-byte "ü".
  const euro = encoded.indexOf(0xe2);
  const umlaut = encoded.indexOf(0xc3);
  const splitter = new LineSplitter();
  const lines = [
    ...splitter.push(encoded.subarray(0, umlaut + 1)),
    ...splitter.push(encoded.subarray(umlaut + 1, euro + 1)),
    ...splitter.push(encoded.subarray(euro + 1, euro + 2)),
    ...splitter.push(encoded.subarray(euro + 2)),
    ...splitter.flush(),
  ];
  assertEquals(lines, ['{"msg":"grüße €"}']);
});

Deno.test("LineSplitter refuses a line longer than its limit", () => {
  const splitter = new LineSplitter(10);
  assertEquals(splitter.push(bytes("short\n")), ["short"]);
  assertThrows(() => splitter.push(bytes("x".repeat(11))), RangeError, "exceeds 10 characters");
});

Deno.test("parseJsonLine skips blank lines and names a broken line", () => {
  assertEquals(parseJsonLine("   "), undefined);
  assertEquals(parseJsonLine('{"x":[1]}'), { x: [1] });
  assertThrows(() => parseJsonLine('{"x":'), SyntaxError, 'Cannot parse JSON line "{\\"x\\":"');
});

Deno.test("readJsonLines parses values across byte-by-byte chunks", async () => {
  const text = '{"stream":"Trying…\\n"}\n\n{"error":"unauthorized"}';
  const all = bytes(text);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const b of all) controller.enqueue(new Uint8Array([b]));
      controller.close();
    },
  });
  const values = await Array.fromAsync(readJsonLines(body));
  assertEquals(values, [{ stream: "Trying…\n" }, { error: "unauthorized" }]);
});

Deno.test("readJsonLines cancels the stream when the consumer stops early", async () => {
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(bytes('{"n":1}\n'));
    },
    cancel() {
      cancelled = true;
    },
  });
  for await (const value of readJsonLines(body)) {
    assertEquals(value, { n: 1 });
    break;
  }
  assertEquals(cancelled, true);
});
