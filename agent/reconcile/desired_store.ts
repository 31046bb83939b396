/**
 * The one place the device's desired state lives: what the NATS follower
 * hands over (as a {@linkcode DesiredSink}) or the offline cache had, whether
 * that view is authoritative, which keys were deleted, and which deployments
 * this device has held at all (for adopting unlabelled containers, see
 * ownership.ts). The reconciler reads it and subscribes to its changes; the
 * store keeps the disk cache (cache.ts) in step by itself.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { DesiredSink } from "../nats/desired_record.ts";
import { Coalescer } from "../coalesce.ts";
import type { DesiredEntry } from "./desired.ts";

/** A change of the store, as its subscribers hear of it. */
export type DesiredChange =
  /** The whole view was replaced; `changed` lists keys whose entry differs (added, gone, new). */
  | { kind: "snapshot"; authoritative: boolean; changed: ReadonlySet<string> }
  /** One deployment was set or deleted; `changed` is false for a repeat of the same value. */
  | { kind: "update"; deployment: string; changed: boolean };

/** Where the store saves its entries (the offline cache). */
export interface DesiredPersistence {
  save(entries: DesiredEntry[]): Promise<void>;
}

/** Options of {@linkcode DesiredStore}. */
export interface DesiredStoreOptions {
  /** Save every change here, debounced (default: nothing is saved). */
  persistence?: DesiredPersistence;
  /** Pause after a change before saving, in ms (default 100). */
  saveDebounceMs?: number;
  log?: Logger;
}

/** This device's desired state. See the module documentation. */
export class DesiredStore implements DesiredSink {
  #entries = new Map<string, DesiredEntry>();
  #authoritative = false;
  /** Keys deleted in KV while the view is otherwise partial: removable anyway. */
  #deleted = new Set<string>();
  /** Every deployment held since the agent started. */
  #claimed = new Set<string>();
  #listeners = new Set<(change: DesiredChange) => void>();
  #version = 0;
  readonly #writer: Coalescer | undefined;
  readonly #log: Logger | undefined;

  constructor(options: DesiredStoreOptions = {}) {
    this.#log = options.log;
    const persistence = options.persistence;
    this.#writer = persistence === undefined ? undefined : new Coalescer(
      () => persistence.save([...this.#entries.values()]),
      {
        debounceMs: options.saveDebounceMs ?? 100,
        onError: (e) =>
          this.#log?.error("Cannot save the desired-state cache: {error}", {
            error: e instanceof Error ? e.message : String(e),
          }),
      },
    );
  }

  // ---- reading ---------------------------------------------------------------

  /** The entry of `deployment`, if desired. */
  get(deployment: string): DesiredEntry | undefined {
    return this.#entries.get(deployment);
  }

  /** Every desired entry. */
  entries(): IterableIterator<DesiredEntry> {
    return this.#entries.values();
  }

  /** Names of the desired deployments. */
  keys(): IterableIterator<string> {
    return this.#entries.keys();
  }

  /**
   * True when the containers of `deployment`, if it is not desired, may be
   * removed: the view is authoritative, or the key was explicitly deleted.
   * A partial view (offline, no cache) never removes workloads.
   */
  isRemovable(deployment: string): boolean {
    return this.#authoritative || this.#deleted.has(deployment);
  }

  /** True when this store has held `deployment` since it was created (see ownership.ts). */
  isClaimed(deployment: string): boolean {
    return this.#claimed.has(deployment);
  }

  /** Counts the changes (a replace or an update): equal versions hold the same entries. */
  get version(): number {
    return this.#version;
  }

  /** Calls `listener` on every change; returns the unsubscribe function. */
  subscribe(listener: (change: DesiredChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- writing ---------------------------------------------------------------

  /**
   * Replaces the whole view. `authoritative: false` (nothing known yet) means
   * deployments not listed are left alone; the offline cache is loaded with
   * `authoritative: true`, as the last complete view from KV. Not saved back.
   */
  replace(entries: ReadonlyMap<string, DesiredEntry>, authoritative: boolean): void {
    const previous = this.#entries;
    this.#entries = new Map(entries);
    this.#authoritative = authoritative;
    this.#deleted.clear();
    for (const key of this.#entries.keys()) this.#claimed.add(key);
    const changed = new Set<string>();
    for (const key of new Set([...previous.keys(), ...this.#entries.keys()])) {
      if (!sameEntry(previous.get(key), this.#entries.get(key))) changed.add(key);
    }
    this.#emit({ kind: "snapshot", authoritative, changed });
  }

  /** See {@linkcode DesiredSink.snapshot}: the complete, authoritative view from KV. */
  snapshot(entries: Map<string, DesiredEntry>): void {
    this.replace(entries, true);
    this.#writer?.trigger();
  }

  /** See {@linkcode DesiredSink.update}: one deployment set, or deleted with `null`. */
  update(deployment: string, entry: DesiredEntry | null): void {
    const previous = this.#entries.get(deployment);
    if (entry === null) {
      this.#entries.delete(deployment);
      this.#deleted.add(deployment);
    } else {
      this.#entries.set(deployment, entry);
      this.#deleted.delete(deployment);
      this.#claimed.add(deployment);
    }
    const log = this.#log?.with({ deployment, revision: entry?.revision });
    if (entry === null) log?.info("Desired state deleted");
    // An invalid value is logged once, by the reconciler, as the deployment's failure.
    else log?.debug("Desired state changed ({kind})", { kind: entry.kind });
    this.#emit({
      kind: "update",
      deployment,
      changed: !sameEntry(previous, entry ?? undefined),
    });
    this.#writer?.trigger();
  }

  /** Saves what is pending and stops saving. */
  async close(): Promise<void> {
    if (this.#writer === undefined) return;
    await this.#writer.flush();
    await this.#writer.close();
  }

  #emit(change: DesiredChange): void {
    this.#version++;
    for (const listener of this.#listeners) listener(change);
  }
}

/** Same deployment value: KV revisions identify values. */
function sameEntry(a: DesiredEntry | undefined, b: DesiredEntry | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  return a.kind === b.kind && a.revision === b.revision;
}
