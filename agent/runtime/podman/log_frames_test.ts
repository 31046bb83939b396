import { assertEquals, assertThrows } from "../../../tests/support/assert.ts";
import { decodeLogFrames, encodeLogFrame, LogFrameDecoder } from "./log_frames.ts";

function join(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

Deno.test("decodeLogFrames reads podman's 8-byte-header frames", () => {
  // The exact bytes podman 4.3 sent for `echo hello; echo err >&2`.
  const body = new Uint8Array([
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    6,
    ...new TextEncoder().encode("hello\n"),
    2,
    0,
    0,
    0,
    0,
    0,
    0,
    4,
    ...new TextEncoder().encode("err\n"),
  ]);
  assertEquals(decodeLogFrames(body), [
    { stream: "stdout", text: "hello\n" },
    { stream: "stderr", text: "err\n" },
  ]);
});

Deno.test("LogFrameDecoder reassembles frames cut at every possible offset", () => {
  const body = join(
    encodeLogFrame("stdout", "first line\n"),
    encodeLogFrame("stderr", "ünïcödé\n"),
    encodeLogFrame("stdout", ""),
  );
  for (let cut = 0; cut <= body.length; cut++) {
    const decoder = new LogFrameDecoder();
    const frames = [...decoder.push(body.subarray(0, cut)), ...decoder.push(body.subarray(cut))];
    decoder.finish();
    assertEquals(frames, [
      { stream: "stdout", text: "first line\n" },
      { stream: "stderr", text: "ünïcödé\n" },
      { stream: "stdout", text: "" },
    ], `cut at ${cut}`);
  }
});

Deno.test("LogFrameDecoder reads a payload longer than 255 bytes (big-endian length)", () => {
  const text = "x".repeat(70_000);
  assertEquals(decodeLogFrames(encodeLogFrame("stdout", text)), [{ stream: "stdout", text }]);
});

Deno.test("decodeLogFrames refuses a truncated frame and an unknown stream byte", () => {
  const frame = encodeLogFrame("stdout", "hello\n");
  assertThrows(() => decodeLogFrames(frame.subarray(0, 10)), RangeError, "ended inside a frame");
  const bad = frame.slice();
  bad[0] = 7;
  assertThrows(() => decodeLogFrames(bad), RangeError, "stream byte is 7");
});
