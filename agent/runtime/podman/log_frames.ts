/**
 * Decoder for podman's multiplexed log stream.
 *
 * The libpod logs endpoint always frames output (even for TTY containers):
 * an 8-byte header `[stream, 0, 0, 0, uint32 big-endian length]` followed by
 * `length` bytes of payload. Frames may straddle network chunks.
 *
 * Used by `PodmanClient.containerLogs`, which nothing calls yet: kept for the
 * coming device-logs work.
 *
 * @module
 */

/** Which stream a log frame came from. */
export type LogStream = "stdin" | "stdout" | "stderr";

/** One decoded log frame. */
export interface LogFrame {
  /** Origin of the bytes. */
  stream: LogStream;
  /** Payload as text (UTF-8, invalid bytes replaced). Usually one line with its `\n`. */
  text: string;
}

const HEADER_BYTES = 8;
const STREAM_BY_BYTE: Record<number, LogStream> = { 0: "stdin", 1: "stdout", 2: "stderr" };

/**
 * Incremental, pure frame decoder: {@linkcode LogFrameDecoder.push} chunks,
 * then {@linkcode LogFrameDecoder.finish} to check nothing was cut off.
 */
export class LogFrameDecoder {
  #buffer: Uint8Array = new Uint8Array(0);
  #decoder = new TextDecoder();

  /** Adds bytes and returns every frame they complete. */
  push(chunk: Uint8Array): LogFrame[] {
    this.#buffer = concat(this.#buffer, chunk);
    const frames: LogFrame[] = [];
    let offset = 0;
    while (this.#buffer.length - offset >= HEADER_BYTES) {
      const header = this.#buffer.subarray(offset, offset + HEADER_BYTES);
      // The loop condition guarantees a whole header.
      const stream = STREAM_BY_BYTE[header[0]!];
      if (stream === undefined) {
        throw new RangeError(
          `Cannot decode log frame at byte ${offset}: stream byte is ${
            header[0]
          }, expected 0, 1 or 2`,
        );
      }
      const length = new DataView(header.buffer, header.byteOffset, HEADER_BYTES).getUint32(4);
      const end = offset + HEADER_BYTES + length;
      if (end > this.#buffer.length) break;
      const payload = this.#buffer.subarray(offset + HEADER_BYTES, end);
      frames.push({ stream, text: this.#decoder.decode(payload) });
      offset = end;
    }
    this.#buffer = this.#buffer.slice(offset);
    return frames;
  }

  /** @throws {RangeError} if the stream ended inside a frame. */
  finish(): void {
    if (this.#buffer.length > 0) {
      throw new RangeError(
        `Cannot decode log frames as the stream ended inside a frame: ${this.#buffer.length} bytes left over`,
      );
    }
  }
}

/** Decodes a complete multiplexed log body. */
export function decodeLogFrames(bytes: Uint8Array): LogFrame[] {
  const decoder = new LogFrameDecoder();
  const frames = decoder.push(bytes);
  decoder.finish();
  return frames;
}

/** Builds one frame; the inverse of the decoder (used by tests and fakes). */
export function encodeLogFrame(stream: LogStream, text: string): Uint8Array {
  const payload = new TextEncoder().encode(text);
  const frame = new Uint8Array(HEADER_BYTES + payload.length);
  frame[0] = stream === "stdin" ? 0 : stream === "stdout" ? 1 : 2;
  new DataView(frame.buffer).setUint32(4, payload.length);
  frame.set(payload, HEADER_BYTES);
  return frame;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
