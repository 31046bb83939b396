/**
 * The CLI's side of device commands: checking a device id from the command
 * line and reading the fleet once. The request itself lives in
 * operator/devices/requests.ts, shared with the HTTP API.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  BUCKET_AGENT_STATUS,
  BUCKET_DEVICES,
  isValidName,
  nameProblem,
  suggestKey,
} from "@drover/contracts";
import { InvalidInputError, OperationError } from "./cli.ts";
import { readFleet } from "../fleet/read.ts";
import type { FleetState } from "../fleet/state.ts";
import { openBucket } from "../nats/kv.ts";

export {
  askDevice,
  DEVICE_ANSWER_TIMEOUT_MS,
  lastSeenText,
  requestDeviceEvents,
  requestLogChunk,
} from "../devices/requests.ts";

/** Checks a device id given on the command line. */
export function checkDeviceId(id: string): string {
  const problem = nameProblem(id);
  if (problem) throw new InvalidInputError(`Invalid device id "${id}": ${problem}`);
  return id;
}

/** The fleet as stored, for choosing devices and checking deployments. */
export function readFleetOnce(nc: NatsConnection): Promise<FleetState> {
  return readFleet(nc);
}

/**
 * The error for a device id nobody knows, with the likely intended one:
 * `No such device "pi-kitchn"` / `did you mean "pi-kitchen"?`.
 */
export function noSuchDevice(
  id: string,
  known: Iterable<string>,
  hints: readonly string[] = [],
): OperationError {
  const suggestion = suggestKey(id, [...known]);
  return new OperationError(`No such device "${id}"`, [
    suggestion === undefined ? "" : `did you mean "${suggestion}"?`,
    ...hints,
  ]);
}

/** Ids in the device registry and ids that ever reported a status (keys only, no values). */
export async function knownDeviceIds(nc: NatsConnection): Promise<Set<string>> {
  const out = new Set<string>();
  for (const name of [BUCKET_DEVICES, BUCKET_AGENT_STATUS]) {
    const kv = await openBucket(nc, name);
    if (kv === undefined) continue;
    for await (const key of await kv.keys()) if (isValidName(key)) out.add(key);
  }
  return out;
}

/**
 * Fails at once, with a did-you-mean, when `id` is neither registered nor
 * has ever reported: asking it would only wait for a timeout.
 *
 * @throws {OperationError}
 */
export async function requireKnownDevice(nc: NatsConnection, id: string): Promise<void> {
  const known = await knownDeviceIds(nc);
  if (!known.has(id)) throw noSuchDevice(id, known);
}
