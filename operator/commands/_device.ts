/**
 * The CLI's side of device commands: checking a device id from the command
 * line and reading the fleet once. The request itself lives in
 * operator/devices/requests.ts, shared with the HTTP API.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { nameProblem } from "@drover/contracts";
import { InvalidInputError } from "./cli.ts";
import { readFleet } from "../fleet/read.ts";
import type { FleetState } from "../fleet/state.ts";

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
