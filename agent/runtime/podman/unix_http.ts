/**
 * HTTP/1.1 over a unix socket, answered as a fetch `Response`: podman's REST API without Deno's
 * fetch client, whose native HTTP stack costs a device ≈ 1.5–3 MiB of RSS (bench/RESULTS.md,
 * footprint) for what is one local socket.
 *
 * One connection per request (`Connection: close`; a unix socket connects in microseconds).
 * Bodies framed by `Content-Length`, `Transfer-Encoding: chunked` or the end of the connection,
 * streamed as they arrive (podman's event and log streams never end on their own).
 *
 * @module
 */

/** The longest status line plus headers accepted. */
const MAX_HEAD_BYTES = 64 * 1024;
const READ_SIZE = 16 * 1024;
const CRLF = new Uint8Array([0x0d, 0x0a]);

/** A request to send. */
export interface UnixRequest {
  method: string;
  /** The request line's target: a path and query, or an absolute URL. */
  target: string;
  /** `Host` header (podman reads the API flavour from the URL, not the host). */
  host: string;
  headers?: Headers;
  body?: Uint8Array | string | undefined;
  signal?: AbortSignal | undefined;
}

/** Connections of one client, so closing the client ends its open streams. */
export class UnixHttp {
  readonly #path: string;
  readonly #open = new Set<Deno.Conn>();

  constructor(socketPath: string) {
    this.#path = socketPath;
  }

  /** Sends `request`; resolves once the response head arrived. */
  async fetch(request: UnixRequest): Promise<Response> {
    const { signal } = request;
    signal?.throwIfAborted();
    const conn = await Deno.connect({ transport: "unix", path: this.#path });
    this.#open.add(conn);
    const reader = new ConnReader(conn);
    const end = () => {
      if (!this.#open.delete(conn)) return;
      signal?.removeEventListener("abort", end);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    };
    signal?.addEventListener("abort", end, { once: true });
    try {
      await writeAll(conn, requestHead(request));
      const head = parseHead(await reader.readHead());
      return new Response(bodyStream(request, head, reader, end), {
        status: head.status,
        statusText: head.statusText,
        headers: head.headers,
      });
    } catch (e) {
      end();
      if (signal?.aborted) throw signal.reason;
      throw e;
    }
  }

  /** Ends every open request and stream. */
  close(): void {
    for (const conn of [...this.#open]) {
      this.#open.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  }
}

/** The request bytes: head and body (pure). */
export function requestHead(request: UnixRequest): Uint8Array {
  const body = typeof request.body === "string"
    ? new TextEncoder().encode(request.body)
    : request.body;
  const lines = [`${request.method} ${request.target} HTTP/1.1`, `Host: ${request.host}`];
  for (const [name, value] of request.headers ?? []) {
    if (/[\r\n]/.test(name + value)) throw new TypeError(`Invalid header ${JSON.stringify(name)}`);
    lines.push(`${name}: ${value}`);
  }
  if (body !== undefined || !["GET", "HEAD"].includes(request.method)) {
    lines.push(`Content-Length: ${body?.length ?? 0}`);
  }
  lines.push("Connection: close", "", "");
  const head = new TextEncoder().encode(lines.join("\r\n"));
  if (body === undefined || body.length === 0) return head;
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/** A parsed response head. */
export interface ResponseHead {
  status: number;
  statusText: string;
  headers: Headers;
}

/** Parses a status line and headers, without the final empty line (pure). */
export function parseHead(text: string): ResponseHead {
  const [statusLine = "", ...lines] = text.split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!match) throw new TypeError(`Not an HTTP response: ${JSON.stringify(statusLine)}`);
  const headers = new Headers();
  for (const line of lines) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new TypeError(`Malformed response header ${JSON.stringify(line)}`);
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return { status: Number(match[1]), statusText: match[2] ?? "", headers };
}

function bodyStream(
  request: UnixRequest,
  head: ResponseHead,
  reader: ConnReader,
  end: () => void,
): ReadableStream<Uint8Array> | null {
  if (request.method === "HEAD" || head.status === 204 || head.status === 304) {
    end();
    return null;
  }
  const chunked = /\bchunked\b/i.test(head.headers.get("transfer-encoding") ?? "");
  const length = head.headers.get("content-length");
  let remaining = chunked ? 0 : length !== null ? Number(length) : Infinity;
  if (!Number.isSafeInteger(remaining) && remaining !== Infinity) {
    end();
    throw new TypeError(`Invalid Content-Length ${JSON.stringify(length)}`);
  }
  let afterChunk = false;
  const fail = (e: unknown) => request.signal?.aborted ? request.signal.reason : e;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (chunked && remaining === 0) {
          if (afterChunk && (await reader.readLine()) !== "") {
            throw new TypeError("Malformed chunked response body");
          }
          afterChunk = false;
          remaining = parseInt((await reader.readLine()).split(";")[0]!.trim(), 16);
          if (!Number.isSafeInteger(remaining) || remaining < 0) {
            throw new TypeError("Malformed chunked response body");
          }
          if (remaining === 0) {
            // The last chunk; trailers (podman sends none) end with an empty line.
            while ((await reader.readLine()) !== "");
          }
        }
        if (remaining === 0) {
          end();
          controller.close();
          return;
        }
        const bytes = await reader.readSome(remaining);
        if (bytes === null) {
          if (remaining !== Infinity) throw new TypeError("The response body ended early");
          end();
          controller.close();
          return;
        }
        remaining -= bytes.length;
        if (chunked && remaining === 0) afterChunk = true;
        controller.enqueue(bytes);
      } catch (e) {
        end();
        controller.error(fail(e));
      }
    },
    cancel() {
      end();
    },
  });
}

/** Buffered reads from a connection. */
class ConnReader {
  readonly #conn: Deno.Conn;
  #buffered = new Uint8Array(0);

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(READ_SIZE);
    const n = await this.#conn.read(chunk);
    if (n === null) return false;
    const joined = new Uint8Array(this.#buffered.length + n);
    joined.set(this.#buffered);
    joined.set(chunk.subarray(0, n), this.#buffered.length);
    this.#buffered = joined;
    return true;
  }

  /** Up to the empty line ending a response head, as text (without that line). */
  async readHead(): Promise<string> {
    for (;;) {
      const end = indexOf(this.#buffered, new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a]));
      if (end >= 0) {
        const head = new TextDecoder().decode(this.#buffered.subarray(0, end));
        this.#buffered = this.#buffered.slice(end + 4);
        return head;
      }
      if (this.#buffered.length > MAX_HEAD_BYTES) throw new TypeError("Response head too long");
      if (!await this.#fill()) throw new TypeError("The connection closed before a response");
    }
  }

  async readLine(): Promise<string> {
    for (;;) {
      const end = indexOf(this.#buffered, CRLF);
      if (end >= 0) {
        const line = new TextDecoder().decode(this.#buffered.subarray(0, end));
        this.#buffered = this.#buffered.slice(end + 2);
        return line;
      }
      if (this.#buffered.length > MAX_HEAD_BYTES) throw new TypeError("Line too long");
      if (!await this.#fill()) throw new TypeError("The response body ended early");
    }
  }

  /** At most `max` bytes, waiting only when nothing is buffered; null at the end. */
  async readSome(max: number): Promise<Uint8Array | null> {
    if (this.#buffered.length === 0 && !await this.#fill()) return null;
    const n = Math.min(max, this.#buffered.length);
    const out = this.#buffered.slice(0, n);
    this.#buffered = this.#buffered.subarray(n);
    return out;
  }
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) {
    offset += await conn.write(bytes.subarray(offset));
  }
}
