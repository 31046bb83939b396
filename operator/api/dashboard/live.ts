/**
 * The dashboard's live feed: the fleet view flattened into keyed entries,
 * the difference between two such pictures (pure), and {@linkcode LiveFeed},
 * which pushes those differences to every open page as server-sent events.
 *
 * Why keyed entries: 5 000 devices heart-beat every 10 s, so something changes
 * all the time, but almost always only a device's last-seen time. Each entry
 * is compared as JSON text, and last-seen times are entries of their own, so
 * a heartbeat costs a browser ~25 bytes, not a device row. Ages are computed
 * by the page from `last seen` and the server's clock, never sent each second.
 *
 * @module
 */

import type { AgentStatus } from "@drover/contracts";
import type {
  DeploymentDeviceView,
  DeploymentView,
  DeviceRecord,
  DeviceView,
  FleetView,
} from "../../fleet/aggregate.ts";

/** Entry key → JSON text of its value. */
export type Entries = Map<string, string>;

// The values of the entries, as static/render.js decodes them (it is type-checked against
// these, so the two cannot drift).

/** `d:<device>`: the device row without its last-seen time. */
export type DeviceEntry = Omit<DeviceView, "device_id" | "last_seen" | "heartbeat_age_seconds">;
/** `s:<device>`: its last status time in ms since epoch, or null. */
export type SeenEntry = number | null;
/**
 * `p:<deployment>`: the deployment without its devices; fields the view grows (a rollout,
 * the revision history) travel along and are shown field by field.
 */
export type DeploymentEntry = Omit<DeploymentView, "devices"> & {
  rollout?: unknown;
  history?: unknown;
};
/** `r:<deployment>/<device>`: one device's part in one deployment. */
export type DeploymentDeviceEntry = Omit<
  DeploymentDeviceView,
  "device_id" | "wanted_kv_revision" | "applied_kv_revision"
>;
/** A device page's detail: the agent's status without its timestamp, why it is unreadable, or null. */
export type DeviceDetail =
  | { status: Omit<AgentStatus, "timestamp">; reported_at: number; error?: undefined }
  | { error: string; status?: undefined }
  | null;

/** What changed between two pictures: keys to set (with their JSON) and keys gone. */
export interface EntriesDiff {
  set: Record<string, unknown>;
  del: string[];
}

/**
 * Flattens a fleet view into entries (pure):
 * - `d:<device>` the device row without its last-seen time,
 * - `s:<device>` its last status time in ms since epoch (or null),
 * - `p:<deployment>` the deployment without its devices (any field the
 *   view grows, e.g. a rollout or a revision history, travels along),
 * - `r:<deployment>/<device>` one device's part in one deployment.
 */
export function flatten(view: FleetView): Entries {
  const out: Entries = new Map();
  for (const d of view.devices) {
    const { device_id, last_seen, heartbeat_age_seconds: _age, ...rest } = d;
    const row: DeviceEntry = rest;
    const seen: SeenEntry = last_seen === null ? null : Date.parse(last_seen);
    out.set(`d:${device_id}`, JSON.stringify(row));
    out.set(`s:${device_id}`, JSON.stringify(seen));
  }
  for (const p of view.deployments) {
    const { devices, ...rest } = p;
    const summary: DeploymentEntry = rest;
    out.set(`p:${p.name}`, JSON.stringify(summary));
    for (const r of devices) {
      const { device_id, wanted_kv_revision: _w, applied_kv_revision: _a, ...rest } = r;
      const row: DeploymentDeviceEntry = rest;
      out.set(`r:${p.name}/${device_id}`, JSON.stringify(row));
    }
  }
  return out;
}

/** The difference from `before` to `after` (pure); null when there is none. */
export function diffEntries(before: Entries, after: Entries): EntriesDiff | null {
  const set: Record<string, unknown> = {};
  const del: string[] = [];
  let changed = false;
  for (const [key, text] of after) {
    if (before.get(key) !== text) {
      set[key] = JSON.parse(text);
      changed = true;
    }
  }
  for (const key of before.keys()) {
    if (!after.has(key)) {
      del.push(key);
      changed = true;
    }
  }
  return changed ? { set, del } : null;
}

/** The entries as one object, for a snapshot (pure). */
export function entriesObject(entries: Entries): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, text] of entries) out[key] = JSON.parse(text);
  return out;
}

/**
 * One device as its page shows it: the agent's full status (services,
 * images, restarts, messages) without the per-heartbeat timestamp, and when
 * the status was stored (`reported_at`, ms: every observation in it is that
 * old), or why it cannot be read. Null when the device never reported (pure).
 */
export function deviceDetail(record: DeviceRecord | undefined): DeviceDetail {
  if (record === undefined) return null;
  if (record.status === undefined) return { error: record.error ?? "invalid status" };
  const { timestamp: _t, ...status } = record.status;
  return { status, reported_at: record.seenAt };
}

/** What the feed reads from the running service. */
export interface LiveSource {
  /** The fleet view at `now`; undefined while the service is starting. */
  view(now: number): FleetView | undefined;
  /** One device's status record. */
  device(id: string): DeviceRecord | undefined;
}

/** Options of {@linkcode LiveFeed}. */
export interface LiveFeedOptions {
  /**
   * The view is recomputed at least this often while pages are open, so a
   * device whose heartbeats stop turns offline on them without any KV change.
   */
  tickMs?: number;
  /** Changes are coalesced: at most one recomputation per this many ms. */
  minGapMs?: number;
  /** A page whose unsent events exceed this many bytes is dropped (it reconnects). */
  maxQueuedBytes?: number;
  /** SSE comment sent this often so proxies keep an idle stream open. */
  keepAliveMs?: number;
}

/** Default {@linkcode LiveFeedOptions.tickMs}. */
export const DEFAULT_TICK_MS = 1_000;
/** Default {@linkcode LiveFeedOptions.minGapMs}. */
export const DEFAULT_MIN_GAP_MS = 500;
/** Default {@linkcode LiveFeedOptions.maxQueuedBytes}. */
export const DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024;
/** Default {@linkcode LiveFeedOptions.keepAliveMs}. */
export const DEFAULT_KEEP_ALIVE_MS = 15_000;

interface Client {
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** The device whose detail this page shows, if any. */
  device?: string;
  /** JSON of the detail last sent. */
  detail?: string;
}

const encoder = new TextEncoder();

/** One server-sent event. */
export function sseEvent(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Keeps open pages up to date. Work happens only while a page is open:
 * {@linkcode notify} (from the fleet state's change hook) asks for a
 * recomputation, coalesced to one per `minGapMs`; a tick every `tickMs`
 * re-judges online/offline. Each recomputation diffs the new entries against
 * the last ones and sends one `patch` event to every page.
 */
export class LiveFeed {
  readonly #source: LiveSource;
  readonly #tickMs: number;
  readonly #minGapMs: number;
  readonly #maxQueued: number;
  readonly #keepAliveMs: number;
  readonly #clients = new Set<Client>();
  #entries: Entries | undefined;
  #lastComputeAt = -Infinity;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerDue = Infinity;
  #keepAlive: ReturnType<typeof setInterval> | undefined;
  /** Recomputations so far (tests and the bench read it). */
  computations = 0;

  constructor(source: LiveSource, options: LiveFeedOptions = {}) {
    this.#source = source;
    this.#tickMs = options.tickMs ?? DEFAULT_TICK_MS;
    this.#minGapMs = options.minGapMs ?? DEFAULT_MIN_GAP_MS;
    this.#maxQueued = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.#keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS;
  }

  /** Number of open pages. */
  get clients(): number {
    return this.#clients.size;
  }

  /** Something changed: recompute soon (coalesced). */
  notify(): void {
    if (this.#clients.size === 0) return;
    const gap = this.#lastComputeAt + this.#minGapMs - performance.now();
    this.#schedule(Math.max(0, gap));
  }

  /**
   * A new event stream: a `snapshot` event at once (`{now, entries}`; with
   * `device`, also a `device` event), then `patch` events (`{now, set, del}`).
   */
  open(device?: string): ReadableStream<Uint8Array> {
    let client: Client;
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        client = { controller, ...(device !== undefined ? { device } : {}) };
        // The first page after a quiet spell gets a fresh picture, not a stale one.
        if (this.#entries === undefined) this.#compute();
        controller.enqueue(encoder.encode(`retry: 2000\n\n`));
        this.#clients.add(client);
        this.#send(client, sseEvent("snapshot", this.#snapshot()));
        this.#sendDetail(client);
        this.#keepAlive ??= setInterval(
          () => this.#broadcast(": keep-alive\n\n"),
          this.#keepAliveMs,
        );
        this.#schedule(this.#tickMs);
      },
      cancel: () => this.#drop(client),
    }, new ByteLengthQueuingStrategy({ highWaterMark: 0 }));
  }

  /** Closes every stream and stops the timers. */
  close(): void {
    for (const client of [...this.#clients]) {
      try {
        client.controller.close();
      } catch { /* already closed */ }
      this.#drop(client);
    }
  }

  #snapshot(): { now: number; entries: Record<string, unknown> | null } {
    return {
      now: Date.now(),
      entries: this.#entries === undefined ? null : entriesObject(this.#entries),
    };
  }

  #schedule(delayMs: number): void {
    const due = performance.now() + delayMs;
    if (this.#timer !== undefined && this.#timerDue <= due) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerDue = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerDue = Infinity;
      if (this.#clients.size === 0) return;
      this.#compute();
      this.#schedule(this.#tickMs);
    }, delayMs);
  }

  #compute(): void {
    this.computations++;
    this.#lastComputeAt = performance.now();
    const now = Date.now();
    const view = this.#source.view(now);
    if (view === undefined) return;
    const next = flatten(view);
    const before = this.#entries;
    this.#entries = next;
    if (before === undefined) {
      // The first picture after starting: pages opened meanwhile get it whole.
      this.#broadcast(sseEvent("snapshot", this.#snapshot()));
    } else {
      const diff = diffEntries(before, next);
      if (diff !== null) this.#broadcast(sseEvent("patch", { now, ...diff }));
    }
    for (const client of this.#clients) this.#sendDetail(client);
  }

  #sendDetail(client: Client): void {
    if (client.device === undefined) return;
    const detail = JSON.stringify(deviceDetail(this.#source.device(client.device)));
    if (detail === client.detail) return;
    client.detail = detail;
    this.#send(client, `event: device\ndata: ${detail}\n\n`);
  }

  #broadcast(text: string): void {
    for (const client of this.#clients) this.#send(client, text);
  }

  #send(client: Client, text: string): void {
    const bytes = encoder.encode(text);
    // desiredSize is minus the bytes the page has not read yet.
    if ((client.controller.desiredSize ?? 0) < -this.#maxQueued) {
      // A page that does not read (a stalled tab, a dead link) must not hold the fleet in memory.
      try {
        client.controller.error(new Error("page too slow; it reconnects for a new snapshot"));
      } catch { /* already closed */ }
      this.#drop(client);
      return;
    }
    try {
      client.controller.enqueue(bytes);
    } catch {
      this.#drop(client);
    }
  }

  #drop(client: Client): void {
    this.#clients.delete(client);
    if (this.#clients.size > 0) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive);
    this.#timer = undefined;
    this.#timerDue = Infinity;
    this.#keepAlive = undefined;
    // Nobody watches: forget the picture, the next page starts from a fresh one.
    this.#entries = undefined;
  }
}
