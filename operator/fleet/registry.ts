/**
 * The device registry: `devices/<device>` holds the labels the operator gives
 * each device, and only those labels decide which deployments a label
 * selector sends to it (a device's own status could claim anything). Only the
 * operator's identity can write the bucket; `device add|label|revoke` call
 * these functions, and so can tests.
 *
 * Label edits are pure ({@linkcode parseLabelEdits}, {@linkcode applyLabelEdits});
 * the writes compare-and-set on the entry's revision, so two people labelling
 * the same device at once cannot lose each other's change.
 *
 * @module
 */

import type { KV } from "@nats-io/kv";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import {
  canonicalJson,
  decodeJson,
  deviceKey,
  DeviceLabels,
  DeviceRegistration,
  formatZodIssues,
  LabelKey,
  splitLabel,
} from "@drover/contracts";

/** What `device label ID KEY=VALUE… KEY-…` asks for. */
export interface LabelEdits {
  /** Labels to add or overwrite. */
  set: Record<string, string>;
  /** Label keys to remove (absent keys are fine). */
  remove: string[];
}

/** A label argument or a label set that is not valid; nothing was written. */
export class InvalidLabelError extends Error {
  override name = "InvalidLabelError";
}

/** The stored registry entry cannot be decoded, so it cannot be edited safely. */
export class InvalidRegistrationError extends Error {
  override name = "InvalidRegistrationError";
  /** The device whose entry is invalid. */
  readonly deviceId: string;
  constructor(deviceId: string, problem: string) {
    super(
      `Cannot change the registry entry of device "${deviceId}": the stored value is invalid ` +
        `(${problem}); remove it with "device unregister ${deviceId}" and label it again`,
    );
    this.deviceId = deviceId;
  }
}

/** `device label` of an id the registry does not hold: nothing was written. */
export class UnknownDeviceError extends Error {
  override name = "UnknownDeviceError";
  /** The id given. */
  readonly deviceId: string;
  constructor(deviceId: string) {
    super(`No such device "${deviceId}" in the device registry`);
    this.deviceId = deviceId;
  }
}

/** Compare-and-set kept losing to concurrent writers. */
export class RegistryConflictError extends Error {
  override name = "RegistryConflictError";
}

/**
 * Parses kubectl-style label arguments: `KEY=VALUE` sets a label, `KEY-`
 * removes one. Pure.
 *
 * @throws {InvalidLabelError} naming the argument.
 */
export function parseLabelEdits(args: readonly string[]): LabelEdits {
  const set: Record<string, string> = {};
  const remove: string[] = [];
  const seen = new Set<string>();
  for (const arg of args) {
    const pair = splitLabel(arg);
    let key: string;
    if (pair !== undefined) {
      key = pair[0];
      set[key] = pair[1];
    } else if (!arg.includes("=") && arg.endsWith("-") && arg.length > 1) {
      key = arg.slice(0, -1);
      remove.push(key);
    } else {
      throw new InvalidLabelError(
        `Invalid label ${JSON.stringify(arg)}: expected KEY=VALUE (set) or KEY- (remove)`,
      );
    }
    if (seen.has(key)) {
      throw new InvalidLabelError(`Invalid label ${JSON.stringify(arg)}: "${key}" given twice`);
    }
    seen.add(key);
    const keyCheck = LabelKey.safeParse(key);
    if (!keyCheck.success) {
      throw new InvalidLabelError(
        `Invalid label ${JSON.stringify(arg)}: ${keyCheck.error.issues[0]?.message}`,
      );
    }
  }
  checkLabels(set);
  return { set, remove };
}

/** Validates a label set against the contract. @throws {InvalidLabelError} naming the label. */
export function checkLabels(labels: Record<string, string>): Record<string, string> {
  const parsed = DeviceLabels.safeParse(labels);
  if (!parsed.success) {
    throw new InvalidLabelError(`Invalid label: ${formatZodIssues(parsed.error)}`);
  }
  return parsed.data;
}

/** `labels` with `edits` applied; a new object, sorted by key. Pure. */
export function applyLabelEdits(
  labels: Readonly<Record<string, string>>,
  edits: LabelEdits,
): Record<string, string> {
  const next: Record<string, string> = { ...labels, ...edits.set };
  for (const key of edits.remove) delete next[key];
  return Object.fromEntries(Object.entries(next).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** One device's registry entry as stored. */
export interface StoredRegistration {
  registration: DeviceRegistration;
  revision: number;
}

/**
 * Reads device `id`'s entry; `undefined` when it has none.
 *
 * @throws {InvalidRegistrationError} when the stored value does not decode.
 */
export async function readRegistration(
  kv: KV,
  id: string,
): Promise<StoredRegistration | undefined> {
  return (await readEntry(kv, id)).stored;
}

async function readEntry(
  kv: KV,
  id: string,
): Promise<{ stored?: StoredRegistration; revision: number }> {
  const entry = await kv.get(deviceKey(id));
  if (entry === null || entry.operation !== "PUT") return { revision: entry?.revision ?? 0 };
  const decoded = decodeJson(DeviceRegistration, entry.value);
  if (!decoded.ok) throw new InvalidRegistrationError(id, decoded.error);
  return {
    stored: { registration: decoded.value, revision: entry.revision },
    revision: entry.revision,
  };
}

function encode(labels: Record<string, string>, now: Date, sealingKey?: string): string {
  const value: DeviceRegistration = {
    labels,
    ...(sealingKey !== undefined ? { sealing_key: sealingKey } : {}),
    updated_at: now.toISOString(),
  };
  return canonicalJson(value);
}

/** What {@linkcode labelDevice} did. */
export interface LabelResult {
  /** The device's labels now. */
  labels: Record<string, string>;
  /** True when the device had no entry before. */
  created: boolean;
  /** False when the edits changed nothing (then nothing was written). */
  changed: boolean;
  /** Revision of the entry now. */
  revision: number;
}

const CAS_ATTEMPTS = 5;

function isWrongLastSequence(e: unknown): boolean {
  return e instanceof JetStreamApiError &&
    (e.code === JetStreamApiCodes.StreamWrongLastSequence ||
      e.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

/**
 * Applies `edits` to device `id`'s registry labels. Writes only when the
 * labels change. Without `create`, an id the registry does not hold is
 * refused (a typo must not register a phantom device that batches wait
 * for); with it, the entry is created (`device register`).
 *
 * @throws {UnknownDeviceError} when the device has no entry and `create` is not set.
 * @throws {InvalidRegistrationError} when the stored entry is invalid.
 * @throws {RegistryConflictError} when concurrent writers kept winning.
 */
export async function labelDevice(
  kv: KV,
  id: string,
  edits: LabelEdits,
  now: () => Date = () => new Date(),
  options: { create?: boolean } = {},
): Promise<LabelResult> {
  return await compareAndSet(kv, id, (current) => {
    if (current === undefined && !options.create) throw new UnknownDeviceError(id);
    return applyLabelEdits(current ?? {}, edits);
  }, now);
}

/**
 * Sets device `id`'s registry labels to exactly `labels` (what `device add
 * --label …` does), creating the entry when there is none.
 */
export async function registerDevice(
  kv: KV,
  id: string,
  labels: Record<string, string>,
  now: () => Date = () => new Date(),
  sealingKey?: string,
): Promise<LabelResult> {
  const wanted = applyLabelEdits({}, { set: checkLabels(labels), remove: [] });
  // An existing but invalid entry is simply replaced: the caller states every label.
  return await compareAndSet(kv, id, () => wanted, now, {
    replaceInvalid: true,
    sealingKey: sealingKey ?? null,
  });
}

async function compareAndSet(
  kv: KV,
  id: string,
  next: (current: Record<string, string> | undefined) => Record<string, string>,
  now: () => Date,
  options: {
    replaceInvalid?: boolean;
    /** The device's sealing key to store (`null`: none); absent: keep the stored one. */
    sealingKey?: string | null;
  } = {},
): Promise<LabelResult> {
  const key = deviceKey(id);
  for (let attempt = 1; attempt <= CAS_ATTEMPTS; attempt++) {
    let read: { stored?: StoredRegistration; revision: number };
    try {
      read = await readEntry(kv, id);
    } catch (e) {
      if (!(e instanceof InvalidRegistrationError && options.replaceInvalid)) throw e;
      read = { revision: (await kv.get(key))?.revision ?? 0 };
    }
    const current = read.stored?.registration.labels;
    const labels = checkLabels(next(current));
    const storedKey = read.stored?.registration.sealing_key;
    const sealingKey = options.sealingKey === undefined
      ? storedKey
      : options.sealingKey ?? undefined;
    if (
      current !== undefined && canonicalJson(current) === canonicalJson(labels) &&
      storedKey === sealingKey
    ) {
      return { labels, created: false, changed: false, revision: read.revision };
    }
    try {
      // Revision 0: the key never existed. Over a delete marker, update on its revision.
      const value = encode(labels, now(), sealingKey);
      const revision = read.revision === 0
        ? await kv.create(key, value)
        : await kv.update(key, value, read.revision);
      return { labels, created: read.stored === undefined, changed: true, revision };
    } catch (e) {
      if (!isWrongLastSequence(e)) throw e;
    }
  }
  throw new RegistryConflictError(
    `Cannot update the registry entry of device "${id}": it kept changing under ` +
      `${CAS_ATTEMPTS} attempts; try again`,
  );
}

/**
 * Removes device `id` from the registry: no label selector targets it any
 * more (deployments naming it in `selector.devices` still do). Returns false
 * when it had no entry.
 */
export async function unregisterDevice(kv: KV, id: string): Promise<boolean> {
  const key = deviceKey(id);
  const entry = await kv.get(key);
  if (entry === null || entry.operation !== "PUT") return false;
  await kv.delete(key);
  return true;
}
