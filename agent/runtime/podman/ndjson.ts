/**
 * Newline-delimited JSON, as podman streams pulls and events.
 *
 * A network chunk can end anywhere: mid-line, or even mid-way through a
 * multi-byte UTF-8 character. {@linkcode LineSplitter} is the pure part that
 * turns arbitrary byte chunks into whole lines.
 *
 * @module
 */

/** Longest line accepted before the stream is declared broken (16 MiB of text). */
export const DEFAULT_MAX_LINE_CHARS = 16 * 1024 * 1024;

/**
 * Splits a byte stream into text lines. Pure and synchronous: feed it chunks
 * with {@linkcode LineSplitter.push}, then call {@linkcode LineSplitter.flush}
 * at end of stream for a last line without a trailing newline.
 */
export class LineSplitter {
  #decoder = new TextDecoder();
  #pending = "";
  readonly #maxLineChars: number;

  /** @param maxLineChars guard against a runaway stream that never sends a newline. */
  constructor(maxLineChars: number = DEFAULT_MAX_LINE_CHARS) {
    this.#maxLineChars = maxLineChars;
  }

  /** Adds a chunk and returns the lines it completed (without `\n` or `\r\n`). */
  push(chunk: Uint8Array): string[] {
    return this.#split(this.#decoder.decode(chunk, { stream: true }));
  }

  /** Ends the stream: returns the unterminated last line, if any. */
  flush(): string[] {
    const lines = this.#split(this.#decoder.decode());
    const last = this.#pending;
    this.#pending = "";
    if (last !== "") lines.push(stripCarriageReturn(last));
    return lines;
  }

  #split(text: string): string[] {
    const parts = (this.#pending + text).split("\n");
    this.#pending = parts.pop() ?? "";
    if (this.#pending.length > this.#maxLineChars) {
      throw new RangeError(
        `Cannot read JSON lines as a line exceeds ${this.#maxLineChars} characters`,
      );
    }
    return parts.map(stripCarriageReturn);
  }
}

function stripCarriageReturn(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

/**
 * Parses one NDJSON line. Blank lines yield `undefined` (podman sends none,
 * but proxies and keep-alives may).
 *
 * @throws {SyntaxError} naming the offending line when it is not JSON.
 */
export function parseJsonLine(line: string): unknown {
  if (line.trim() === "") return undefined;
  try {
    return JSON.parse(line);
  } catch (err) {
    const shown = line.length > 200 ? `${line.slice(0, 200)}…` : line;
    throw new SyntaxError(`Cannot parse JSON line ${JSON.stringify(shown)}`, { cause: err });
  }
}

/**
 * Reads a byte stream as NDJSON values. The reader lock is released and the
 * stream cancelled if the consumer stops early, so no resource leaks.
 */
export async function* readJsonLines(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<unknown, void, undefined> {
  const splitter = new LineSplitter();
  const reader = body.getReader();
  let finished = false;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const line of splitter.push(value)) {
        const parsed = parseJsonLine(line);
        if (parsed !== undefined) yield parsed;
      }
    }
    finished = true;
    for (const line of splitter.flush()) {
      const parsed = parseJsonLine(line);
      if (parsed !== undefined) yield parsed;
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
