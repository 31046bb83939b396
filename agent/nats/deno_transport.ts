/**
 * A NATS transport for `@nats-io/nats-core` on Deno's own sockets (`Deno.connect`,
 * `Deno.startTls`), so a device does not load `@nats-io/transport-node` and the Node
 * compatibility layer under it (`node:net`, `node:tls`, `node:dns`…): ≈ 6 MiB of the agent's
 * idle RSS (bench/RESULTS.md, footprint).
 *
 * What it does: plain TCP; reads the server's INFO; upgrades to TLS when the server requires it
 * or offers it and TLS is configured, verifying the server against `tls.caFile`/`tls.ca` (or the
 * system roots). What it does not: client certificates — `Deno.startTls` cannot present one, so
 * {@linkcode needsNodeTransport} sends those configurations to transport-node; TLS-first
 * (`handshakeFirst`), which the agent's configuration has no setting for.
 *
 * @module
 */

import {
  checkOptions,
  type ConnectionOptions,
  type Deferred,
  deferred,
  errors,
  INFO,
  type Server,
  type ServerInfo,
  type Transport,
} from "@nats-io/nats-core/internal";

/** Reported to the server in CONNECT (shown in its `/connz`). */
export const DENO_TRANSPORT_LANG = "nats.js-deno";
const VERSION = "1";
/** Bytes read from the socket at a time. */
const READ_SIZE = 32 * 1024;
/** The longest INFO line accepted before the connection is refused as not NATS. */
const MAX_INFO_BYTES = 64 * 1024;

/**
 * True when the options ask for something this transport cannot do: a client certificate, or
 * TLS before INFO (pure).
 */
export function needsNodeTransport(options: ConnectionOptions): boolean {
  const tls = options.tls;
  if (tls === null || tls === undefined) return false;
  return tls.certFile !== undefined || tls.cert !== undefined || tls.keyFile !== undefined ||
    tls.key !== undefined || tls.handshakeFirst === true;
}

/**
 * Whether to upgrade to TLS after INFO (pure): when the server requires it, or offers it and
 * the client configured TLS.
 */
export function wantsTls(info: ServerInfo, options: ConnectionOptions): boolean {
  return info.tls_required === true ||
    (info.tls_available === true && options.tls !== null && options.tls !== undefined);
}

/** One connection to one server; nats-core makes a new one per (re)connect. */
export class DenoTransport implements Transport {
  readonly lang = DENO_TRANSPORT_LANG;
  readonly version = VERSION;
  closeError?: Error;

  #conn: Deno.TcpConn | Deno.TlsConn | undefined;
  #encrypted = false;
  #connected = false;
  #done = false;
  #inbox: Uint8Array[] = [];
  #wake: Deferred<void> = deferred();
  #outbox: Uint8Array[] = [];
  #writing = false;
  readonly #closed: Deferred<void | Error> = deferred();

  get isClosed(): boolean {
    return this.#done;
  }

  async connect(server: Server, options: ConnectionOptions): Promise<void> {
    if (needsNodeTransport(options)) {
      throw new errors.InvalidArgumentError(
        "tls: a client certificate or TLS-first needs @nats-io/transport-node (natsConnect)",
      );
    }
    try {
      const tcp = await Deno.connect({ hostname: server.hostname, port: server.port });
      this.#conn = tcp;
      if (this.#done) throw new errors.ConnectionError("connection abandoned");
      tcp.setNoDelay(true);
      const info = await this.#readInfo(tcp);
      checkOptions(info, options);
      if (wantsTls(info, options)) {
        const tls = options.tls ?? {};
        const ca = tls.caFile !== undefined ? await Deno.readTextFile(tls.caFile) : tls.ca;
        const secure = await Deno.startTls(tcp, {
          hostname: server.tlsName || server.hostname,
          ...(typeof ca === "string" ? { caCerts: [ca] } : {}),
        });
        this.#conn = secure;
        await secure.handshake();
        this.#encrypted = true;
      }
      if (this.#done) throw new errors.ConnectionError("connection abandoned");
      this.#connected = true;
      this.#pump(this.#conn);
    } catch (e) {
      this.#closeConn();
      throw e instanceof Deno.errors.ConnectionRefused
        ? new errors.ConnectionError("connection refused", { cause: e })
        : e;
    }
  }

  /** Reads up to the end of the server's INFO line; keeps what it read for the protocol. */
  async #readInfo(conn: Deno.TcpConn): Promise<ServerInfo> {
    const buffer = new Uint8Array(READ_SIZE);
    let seen = new Uint8Array(0);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) throw new errors.ConnectionError("the server closed before its INFO");
      const joined = new Uint8Array(seen.length + n);
      joined.set(seen);
      joined.set(buffer.subarray(0, n), seen.length);
      seen = joined;
      const end = seen.indexOf(0x0a);
      if (end >= 0) {
        const match = INFO.exec(new TextDecoder().decode(seen.subarray(0, end + 1)));
        if (!match?.[1]) throw new errors.ConnectionError("unexpected response from server");
        this.#inbox.push(seen);
        return JSON.parse(match[1]) as ServerInfo;
      }
      if (seen.length > MAX_INFO_BYTES) {
        throw new errors.ConnectionError("no INFO from the server (is it NATS?)");
      }
    }
  }

  /** Reads until the connection ends, handing each chunk to the iterator. */
  async #pump(conn: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(READ_SIZE);
    let error: Error | undefined;
    try {
      while (!this.#done) {
        const n = await conn.read(buffer);
        if (n === null) break;
        // A copy: the parser keeps views of a chunk (message payloads) after the next read.
        this.#inbox.push(buffer.slice(0, n));
        this.#wake.resolve();
      }
    } catch (e) {
      if (!this.#done) error = e instanceof Error ? e : new Error(String(e));
    }
    await this.#close(error, false);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    return this.#iterate();
  }

  async *#iterate(): AsyncIterableIterator<Uint8Array> {
    while (true) {
      if (this.#inbox.length === 0) {
        if (this.#done) return;
        await this.#wake;
        this.#wake = deferred();
      }
      const chunks = this.#inbox;
      this.#inbox = [];
      for (const chunk of chunks) yield chunk;
    }
  }

  isEncrypted(): boolean {
    return this.#encrypted;
  }

  send(frame: Uint8Array): void {
    if (this.#done || this.#conn === undefined) return;
    this.#outbox.push(frame);
    if (!this.#writing) void this.#flush();
  }

  /** Writes queued frames in order; a write error is seen by the reader as the connection's end. */
  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#outbox.length > 0 && this.#conn !== undefined) {
        const frames = this.#outbox;
        this.#outbox = [];
        const chunk = frames.length === 1 ? frames[0]! : concat(frames);
        for (let offset = 0; offset < chunk.length;) {
          offset += await this.#conn.write(chunk.subarray(offset));
        }
      }
    } catch {
      // The read side fails too and reports the connection closed.
    } finally {
      this.#writing = false;
    }
  }

  close(err?: Error): Promise<void> {
    return this.#close(err, false);
  }

  disconnect(): void {
    void this.#close(undefined, true);
  }

  closed(): Promise<void | Error> {
    return this.#closed;
  }

  discard(): void {
    this.#done = true;
    this.#closeConn();
    this.#wake.resolve();
  }

  /**
   * Ends the connection; once connected, tells nats-core through `closed()` (a connection that
   * never got up is only dropped: nats-core handles that failure from `connect`).
   */
  async #close(err: Error | undefined, flushFirst: boolean): Promise<void> {
    if (!this.#connected || this.#done) {
      this.#done = true;
      this.#closeConn();
      this.#wake.resolve();
      return;
    }
    if (err !== undefined) this.closeError = err;
    if (err === undefined && flushFirst) {
      // What is queued goes out first, for at most a second (a peer that stopped reading).
      const until = performance.now() + 1_000;
      while ((this.#writing || this.#outbox.length > 0) && performance.now() < until) {
        if (!this.#writing) void this.#flush();
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    this.#done = true;
    this.#closeConn();
    this.#wake.resolve();
    this.#closed.resolve(this.closeError);
  }

  #closeConn(): void {
    const conn = this.#conn;
    this.#conn = undefined;
    try {
      conn?.close();
    } catch {
      // Already closed.
    }
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const c of chunks) length += c.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}
