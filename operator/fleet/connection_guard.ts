/**
 * At most a few NATS connections per device identity. A user JWT has no
 * connection limit of its own, and the devices' account limit is one pool:
 * one device's creds could fill it and lock every other device out. The guard
 * watches the devices' account from the system account (its own connection,
 * creds limited to these subjects: contracts' `connectionGuardSubjects`):
 *
 * - it mirrors the account's open connections from the servers' connect and
 *   disconnect events, and resyncs the whole picture from every server's CONNZ
 *   at start, after its connection came back, when its picture overflowed and
 *   every {@linkcode RESYNC_EVERY_MS} — level-triggered: a missed event heals;
 * - {@linkcode excessConnections} (pure) decides: per identity (user key) the
 *   newest `limit` stay (a device behind NAT whose old TCP connection is
 *   half-open reconnects; the new one is the live one), the rest go;
 * - on nats-server 2.10+ it closes them (`$SYS.REQ.SERVER.<id>.KICK`); a
 *   server without KICK (2.9) gets them reported instead: a gauge, and a
 *   throttled warning naming the device and `operator device revoke`.
 *
 * Flood-proof: events only mark an identity dirty and are decided together on
 * the next turn, kicks in flight are capped, the picture holds at most
 * `maxTracked` connections, and log lines go through a {@linkcode LogThrottle}.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { z } from "zod";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { abortableSleep, LogThrottle, type ThrottledLine } from "@drover/common";
import {
  connectionGuardSubjects,
  DEVICE_USER_PREFIX,
  serverRequestSubject,
} from "@drover/contracts";

const log = getLogger(["drover", "operator", "connections"]);

/** Connections one device identity may hold by default (`serve --max-connections-per-device`). */
export const DEFAULT_CONNECTIONS_PER_DEVICE = 2;
/** Full resync from CONNZ this often (events keep the picture current in between). */
export const RESYNC_EVERY_MS = 300_000;
/** Resyncs asked for (reconnect, overflow) come at most this often. */
const MIN_RESYNC_GAP_MS = 2_000;
/** Connections per CONNZ page (each entry carries its JWT: about 2.5 KiB). */
const CONNZ_PAGE = 256;
/** How long a CONNZ or KICK request may take. */
const REQUEST_TIMEOUT_MS = 5_000;
/** After the first server's CONNZ answer, how long to wait for more servers'. */
const CONNZ_STALL_MS = 500;
/** After a close failed (timeout, server error), the identity is decided again this much later. */
const KICK_RETRY_MS = 1_000;
/** KICK requests in flight at once. */
const MAX_KICKS_IN_FLIGHT = 32;
/** At most one line per device (and kind) this often. */
const LINE_INTERVAL_MS = 10_000;
/** Lines over all devices, per second. */
const LINES_PER_SECOND = 2;
/** Devices named in {@linkcode ConnectionGuard.overLimit} at most (a bounded metric). */
const MAX_NAMED_OVER_LIMIT = 100;

/** One open connection of the devices' account. */
export interface DeviceConnection {
  /** Id of the server holding it. */
  server: string;
  /** Its client id on that server. */
  cid: number;
  /** The user's public key: the identity the limit is per. */
  user: string;
  /** The device id (from the JWT's name), or the user key when it names none. */
  device: string;
  /** When it connected, µs since the epoch (CONNZ and the events give ns; µs keeps order). */
  startUs: number;
}

/**
 * Which connections to close: for each identity, all but its newest `limit`
 * (by start time, then client id: on one server a later cid is newer). Pure.
 */
export function excessConnections(
  connections: Iterable<DeviceConnection>,
  limit: number,
): DeviceConnection[] {
  const byUser = new Map<string, DeviceConnection[]>();
  for (const c of connections) {
    const list = byUser.get(c.user);
    if (list === undefined) byUser.set(c.user, [c]);
    else list.push(c);
  }
  const out: DeviceConnection[] = [];
  for (const list of byUser.values()) {
    if (list.length <= limit) continue;
    list.sort((a, b) => b.startUs - a.startUs || b.cid - a.cid || (a.server < b.server ? 1 : -1));
    out.push(...list.slice(limit));
  }
  return out;
}

/** Whether nats-server `version` answers `$SYS.REQ.SERVER.<id>.KICK` (2.10 and later). Pure. */
export function serverCanKick(version: string): boolean {
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  if (m === null) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 2 || (major === 2 && minor >= 10);
}

/**
 * An RFC 3339 time with up to nanoseconds (as nats-server writes them) in µs
 * since the epoch; NaN when unreadable. Pure.
 */
export function parseStartUs(text: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (m === null) return NaN;
  const seconds = Date.parse(`${m[1]}${m[3]}`);
  const fraction = Number(((m[2] ?? "") + "000000").slice(0, 6));
  return seconds * 1000 + fraction;
}

/** The device id a user JWT's name tag stands for (`device-<id>`), else the user key. Pure. */
function deviceOf(nameTag: string | undefined, user: string): string {
  return nameTag?.startsWith(DEVICE_USER_PREFIX) ? nameTag.slice(DEVICE_USER_PREFIX.length) : user;
}

const ServerInfo = z.object({ id: z.string().min(1).max(128), ver: z.string().max(64) });

/** A connect or disconnect event's parts the guard reads. */
const ConnectEvent = z.object({
  server: ServerInfo,
  client: z.object({
    id: z.number().int().nonnegative(),
    start: z.string().max(64),
    user: z.string().max(128).optional(),
    name_tag: z.string().max(256).optional(),
    kind: z.string().max(32).optional(),
  }),
});

/** One server's CONNZ answer, the parts the guard reads. */
const ConnzReply = z.object({
  server: ServerInfo,
  data: z.object({
    total: z.number().int().nonnegative(),
    offset: z.number().int().nonnegative(),
    connections: z.array(z.object({
      cid: z.number().int().nonnegative(),
      start: z.string().max(64),
      kind: z.string().max(32).optional(),
      authorized_user: z.string().max(128).optional(),
      name_tag: z.string().max(256).optional(),
    })).nullish(),
  }).optional(),
  error: z.object({ description: z.string().max(1024).optional() }).optional(),
});

/** A KICK answer: nothing but the server on success, an `error` otherwise. */
const KickReply = z.object({
  error: z.object({ code: z.number().optional(), description: z.string().max(1024).optional() })
    .optional(),
});

/** A device holding more connections than the limit. */
export interface DeviceOverLimit {
  device: string;
  connections: number;
}

/** Options of {@linkcode ConnectionGuard}. */
export interface ConnectionGuardOptions {
  /** Public key of the devices' account. */
  account: string;
  /** Connections one identity may hold. */
  limit: number;
  /** Connections the picture holds at most (a bound on memory; about the account's limit). */
  maxTracked: number;
}

interface Tracked extends DeviceConnection {
  /** The resync generation it was last seen in (or learned during). */
  seen: number;
}

/** Watches the devices' account and closes (or reports) connections beyond the limit. */
export class ConnectionGuard {
  readonly #nc: NatsConnection;
  readonly #options: ConnectionGuardOptions;
  readonly #subjects: ReturnType<typeof connectionGuardSubjects>;
  /** `server/cid` → connection. */
  readonly #connections = new Map<string, Tracked>();
  /** user → its connections' keys. */
  readonly #byUser = new Map<string, Set<string>>();
  /** Server id → whether it answers KICK (from its version; false once it had no responder). */
  readonly #canKick = new Map<string, boolean>();
  readonly #versions = new Map<string, string>();
  /** Identities with news, decided together on the next turn. */
  readonly #dirty = new Set<string>();
  readonly #kicking = new Set<string>();
  /** Identities decided again after a failed close (bounded by the identities tracked). */
  readonly #retrying = new Map<string, ReturnType<typeof setTimeout>>();
  readonly #lines = new LogThrottle(LINE_INTERVAL_MS, { linesPerSecond: LINES_PER_SECOND });
  readonly #subscriptions: Subscription[] = [];
  #flushScheduled = false;
  #generation = 0;
  /** Keys that disconnected while a resync ran (its pages may still list them). */
  #goneDuringResync: Set<string> | undefined;
  #wantResync: (() => void) | undefined;
  #resyncWanted = false;
  #closed = 0;
  /** Disposed: nothing more is decided or retried. */
  #stopped = false;

  constructor(nc: NatsConnection, options: ConnectionGuardOptions) {
    this.#nc = nc;
    this.#options = options;
    this.#subjects = connectionGuardSubjects(options.account);
  }

  /** Connections closed since start. */
  get closedTotal(): number {
    return this.#closed;
  }

  /** Connections in the picture now. */
  get tracked(): number {
    return this.#connections.size;
  }

  /** Identities over the limit now (at most {@linkcode MAX_NAMED_OVER_LIMIT} named, most first). */
  overLimit(): { count: number; devices: DeviceOverLimit[] } {
    const devices: DeviceOverLimit[] = [];
    for (const keys of this.#byUser.values()) {
      if (keys.size <= this.#options.limit) continue;
      const first = this.#connections.get(keys.values().next().value!);
      devices.push({ device: first?.device ?? "?", connections: keys.size });
    }
    devices.sort((a, b) => b.connections - a.connections);
    return { count: devices.length, devices: devices.slice(0, MAX_NAMED_OVER_LIMIT) };
  }

  /** Subscribes to the account's connect and disconnect events. */
  start(): Promise<void> {
    for (
      const [subject, gone] of [[this.#subjects.connect, false], [
        this.#subjects.disconnect,
        true,
      ]] as const
    ) {
      this.#subscriptions.push(this.#nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err === null) this.#event(msg.data, gone);
        },
      }));
    }
    return Promise.resolve();
  }

  /** Resyncs now and then every {@linkcode RESYNC_EVERY_MS}, or sooner when asked; until `signal`. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.#resyncWanted = false;
      await this.#resync().catch((e) =>
        this.#line("resync", (held) =>
          log.warn(
            "Cannot read the devices' connections (CONNZ): {error}; retrying ({held} more " +
              "failures since the last such line)",
            { error: (e as Error).message, held: held.suppressed },
          ))
      );
      if (signal.aborted) return;
      if (!this.#resyncWanted) {
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            signal.removeEventListener("abort", done);
            this.#wantResync = undefined;
            resolve();
          };
          const timer = setTimeout(done, RESYNC_EVERY_MS);
          this.#wantResync = done;
          signal.addEventListener("abort", done, { once: true });
        });
      }
      await abortableSleep(MIN_RESYNC_GAP_MS, signal);
    }
  }

  /** Asks for a resync (the connection came back: events may have been missed). */
  rewatch(): void {
    this.#resyncWanted = true;
    this.#wantResync?.();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#retrying.values()) clearTimeout(timer);
    this.#retrying.clear();
    for (const s of this.#subscriptions.splice(0)) s.unsubscribe();
    this.#wantResync?.();
    await Promise.resolve();
  }

  #event(data: Uint8Array, gone: boolean): void {
    let parsed;
    try {
      parsed = ConnectEvent.safeParse(JSON.parse(new TextDecoder().decode(data)));
    } catch {
      return;
    }
    if (!parsed.success) return;
    const { server, client } = parsed.data;
    this.#learnServer(server.id, server.ver);
    if (client.user === undefined || (client.kind !== undefined && client.kind !== "Client")) {
      return;
    }
    const key = `${server.id}/${client.id}`;
    if (gone) {
      this.#forget(key);
      this.#goneDuringResync?.add(key);
      return;
    }
    this.#remember({
      server: server.id,
      cid: client.id,
      user: client.user,
      device: deviceOf(client.name_tag, client.user),
      startUs: parseStartUs(client.start),
      seen: this.#generation,
    });
  }

  #learnServer(id: string, version: string): void {
    if (this.#versions.get(id) === version) return;
    this.#versions.set(id, version);
    this.#canKick.set(id, serverCanKick(version));
  }

  #remember(c: Tracked): void {
    const key = `${c.server}/${c.cid}`;
    const known = this.#connections.get(key);
    if (known !== undefined) {
      known.seen = c.seen;
      return;
    }
    if (this.#connections.size >= this.#options.maxTracked) {
      // Over what the account can hold: the picture has gone stale. Rebuild it.
      this.rewatch();
      return;
    }
    this.#connections.set(key, c);
    let keys = this.#byUser.get(c.user);
    if (keys === undefined) this.#byUser.set(c.user, keys = new Set());
    keys.add(key);
    this.#markDirty(c.user);
  }

  #forget(key: string): void {
    const c = this.#connections.get(key);
    if (c === undefined) return;
    this.#connections.delete(key);
    const keys = this.#byUser.get(c.user);
    keys?.delete(key);
    if (keys?.size === 0) this.#byUser.delete(c.user);
  }

  #markDirty(user: string): void {
    this.#dirty.add(user);
    this.#scheduleDecide();
  }

  /** Decides on the next turn, once for all the news until then. */
  #scheduleDecide(): void {
    if (this.#flushScheduled || this.#stopped) return;
    this.#flushScheduled = true;
    setTimeout(() => {
      this.#flushScheduled = false;
      this.#decide();
    }, 0);
  }

  /** Decides for the identities with news; kicks what it may, reports the rest. */
  #decide(): void {
    for (const user of this.#dirty) {
      const keys = this.#byUser.get(user);
      if (keys === undefined || keys.size <= this.#options.limit) {
        this.#dirty.delete(user);
        continue;
      }
      const mine = [...keys].flatMap((k) => this.#connections.get(k) ?? []);
      const excess = excessConnections(mine, this.#options.limit);
      let waiting = false;
      const unkickable: DeviceConnection[] = [];
      for (const c of excess) {
        const key = `${c.server}/${c.cid}`;
        if (this.#kicking.has(key)) continue;
        if (this.#canKick.get(c.server) !== true) {
          unkickable.push(c);
          continue;
        }
        if (this.#kicking.size >= MAX_KICKS_IN_FLIGHT) {
          waiting = true;
          continue;
        }
        void this.#kick(key, c);
      }
      if (unkickable.length > 0) this.#report(unkickable[0]!, keys.size);
      // Kept dirty only while kicks wait for a slot; a finished kick decides again.
      if (!waiting) this.#dirty.delete(user);
    }
  }

  async #kick(key: string, c: DeviceConnection): Promise<void> {
    this.#kicking.add(key);
    try {
      const reply = await this.#nc.request(
        serverRequestSubject(c.server, "KICK"),
        JSON.stringify({ cid: c.cid }),
        { timeout: REQUEST_TIMEOUT_MS },
      );
      const parsed = KickReply.safeParse(reply.json());
      const error = parsed.success ? parsed.data.error : { description: "unreadable answer" };
      if (error === undefined || /no such client/i.test(error.description ?? "")) {
        // Closed now (or already gone): its disconnect event may follow; the picture need not wait.
        this.#forget(key);
        if (error === undefined) this.#kicked(c);
        return;
      }
      this.#kickFailed(c, error.description ?? "error");
    } catch (e) {
      if ((e as { isNoResponders?: () => boolean }).isNoResponders?.() === true) {
        // A server without KICK (2.9) whatever its version said: report from now on.
        this.#canKick.set(c.server, false);
        this.#markDirty(c.user);
        return;
      }
      this.#kickFailed(c, (e as Error).message);
    } finally {
      this.#kicking.delete(key);
      if (this.#dirty.size > 0) this.#scheduleDecide();
    }
  }

  #kickFailed(c: DeviceConnection, error: string): void {
    // Decided again in a while (not at once: a server that keeps failing must not spin us).
    if (!this.#retrying.has(c.user) && !this.#stopped) {
      const timer = setTimeout(() => {
        this.#retrying.delete(c.user);
        this.#markDirty(c.user);
      }, KICK_RETRY_MS);
      this.#retrying.set(c.user, timer);
    }
    this.#line(`kick-error\u0000${c.device}`, (held) =>
      log.warn(
        "Cannot close a connection of device {device} on server {server}: {error} " +
          "({held} more since the last such line)",
        { device: c.device, server: c.server, error, held: held.suppressed },
      ));
  }

  #kicked(c: DeviceConnection): void {
    this.#closed++;
    this.#line(`closed\u0000${c.device}`, (held) =>
      log.warn(
        "Closed a NATS connection of device {device} beyond its limit of {limit} (newest kept); " +
          "{held} more closed since the last such line. A device that keeps opening connections " +
          "has its creds used elsewhere: operator device revoke {device}",
        { device: c.device, limit: this.#options.limit, held: held.suppressed },
      ));
  }

  #report(c: DeviceConnection, connections: number): void {
    this.#line(`over\u0000${c.device}`, () =>
      log.warn(
        "Device {device} holds {connections} NATS connections, over its limit of {limit}; " +
          "nats-server {version} cannot close them (KICK needs 2.10 or later): upgrade it, " +
          "or cut the device off: operator device revoke {device}",
        {
          device: c.device,
          connections,
          limit: this.#options.limit,
          version: this.#versions.get(c.server) ?? "?",
        },
      ));
  }

  /** Writes a line of `kind` unless one was within the interval or the global rate is spent. */
  #line(kind: string, write: (held: ThrottledLine) => void): void {
    const held = this.#lines.allow(kind, Date.now());
    if (held !== undefined) write(held);
  }

  /**
   * Rebuilds the picture from every server's CONNZ (paged), keeping what the events said while
   * it ran. Servers that do not answer lose their connections from the picture.
   */
  async #resync(): Promise<void> {
    const generation = ++this.#generation;
    this.#goneDuringResync = new Set();
    const answered = new Set<string>();
    const snapshot: Tracked[] = [];
    try {
      const first = await this.#nc.requestMany(
        serverRequestSubject("PING", "CONNZ"),
        JSON.stringify(this.#connzQuery(0)),
        { strategy: "stall", stall: CONNZ_STALL_MS, maxWait: REQUEST_TIMEOUT_MS },
      );
      const pages: z.infer<typeof ConnzReply>[] = [];
      for await (const msg of first) {
        const page = ConnzReply.safeParse(msg.json());
        if (page.success) pages.push(page.data);
      }
      if (pages.length === 0) throw new Error("no server answered");
      for (let page of pages) {
        const server = page.server.id;
        this.#learnServer(server, page.server.ver);
        answered.add(server);
        for (;;) {
          if (page.error !== undefined) {
            throw new Error(`server ${server}: ${page.error.description ?? "error"}`);
          }
          const data = page.data;
          const conns = data?.connections ?? [];
          for (const c of conns) {
            if (c.authorized_user === undefined || (c.kind !== undefined && c.kind !== "Client")) {
              continue;
            }
            snapshot.push({
              server,
              cid: c.cid,
              user: c.authorized_user,
              device: deviceOf(c.name_tag, c.authorized_user),
              startUs: parseStartUs(c.start),
              seen: generation,
            });
          }
          if (snapshot.length >= this.#options.maxTracked) break;
          const next = (data?.offset ?? 0) + conns.length;
          if (data === undefined || conns.length === 0 || next >= data.total) break;
          const reply = await this.#nc.request(
            serverRequestSubject(server, "CONNZ"),
            JSON.stringify(this.#connzQuery(next)),
            { timeout: REQUEST_TIMEOUT_MS },
          );
          const parsed = ConnzReply.safeParse(reply.json());
          if (!parsed.success) throw new Error(`server ${server}: unreadable CONNZ answer`);
          page = parsed.data;
        }
      }
      const gone = this.#goneDuringResync;
      // What was known before this resync and is not in it is gone; what the events added or
      // removed while it ran stands.
      for (const [key, c] of this.#connections) {
        if (c.seen < generation) this.#forget(key);
      }
      for (const c of snapshot) {
        if (!gone.has(`${c.server}/${c.cid}`)) this.#remember(c);
      }
      for (const user of this.#byUser.keys()) this.#markDirty(user);
    } finally {
      this.#goneDuringResync = undefined;
    }
  }

  #connzQuery(offset: number) {
    return { acc: this.#options.account, auth: true, offset, limit: CONNZ_PAGE };
  }
}
