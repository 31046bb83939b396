/**
 * Asking one device something (`logs`, `ping`, `events`): a NATS request on
 * `drover.cmd.<device>.<command>`, which crosses into the devices' account
 * through the operator's service import (docs/security.md). A device that
 * does not answer is reported promptly with what its last status says: a
 * request through a service import may time out rather than get "no
 * responders", so the wait is short and the error names when the device was
 * last seen.
 *
 * @module
 */

import {
  type NatsConnection,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import type { z } from "zod";
import {
  BUCKET_AGENT_STATUS,
  CommandError,
  type DeviceCommand,
  deviceCommandSubject,
  nameProblem,
} from "@drover/contracts";
import { InvalidInputError, OperationError } from "../cli.ts";
import { readFleet } from "../fleet_read.ts";
import { openBucket } from "../kv.ts";
import { formatAge } from "../render.ts";
import { FleetState } from "../fleet_state.ts";

/** How long a device has to answer a command that does not wait on its side, in ms. */
export const DEVICE_ANSWER_TIMEOUT_MS = 3_000;

/** Checks a device id given on the command line. */
export function checkDeviceId(id: string): string {
  const problem = nameProblem(id);
  if (problem) throw new InvalidInputError(`Invalid device id "${id}": ${problem}`);
  return id;
}

/** Where a device stands by its last status, for an error: "offline, last seen 14m ago (…)". */
export async function lastSeenText(nc: NatsConnection, device: string): Promise<string> {
  try {
    const kv = await openBucket(nc, BUCKET_AGENT_STATUS);
    const entry = kv === undefined ? null : await kv.get(device);
    if (entry === null || entry.operation !== "PUT") return "it has never reported a status";
    const state = new FleetState();
    state.applyStatus({
      key: device,
      value: entry.value,
      revision: entry.revision,
      operation: "PUT",
      created: entry.created,
    });
    const view = state.view(Date.now()).devices.find((d) => d.device_id === device);
    if (view === undefined || view.last_seen === null) return "it has never reported a status";
    const age = formatAge(view.heartbeat_age_seconds);
    return view.online
      ? `its last status (${age} ago) says it is online`
      : `it is offline, last seen ${age} ago (${view.last_seen})`;
  } catch {
    return "its last status could not be read";
  }
}

/**
 * Sends `command` to `device` and returns the reply parsed by `schema`.
 * Throws {@linkcode OperationError} (exit 1) when the device does not answer
 * (naming when it was last seen) or refuses (with its reason).
 */
export async function askDevice<S extends z.ZodType>(
  nc: NatsConnection,
  device: string,
  command: DeviceCommand,
  body: unknown,
  schema: S,
  timeoutMs: number = DEVICE_ANSWER_TIMEOUT_MS,
): Promise<z.infer<S>> {
  const subject = deviceCommandSubject(device, command);
  let data: Uint8Array;
  try {
    const msg = await nc.request(subject, new TextEncoder().encode(JSON.stringify(body)), {
      timeout: timeoutMs,
    });
    data = msg.data;
  } catch (e) {
    const noResponders = e instanceof NoRespondersError ||
      (e instanceof RequestError && e.isNoResponders());
    const timedOut = e instanceof TimeoutError || (e as Error)?.cause instanceof TimeoutError;
    if (!noResponders && !timedOut) throw e;
    const why = noResponders
      ? "no agent is connected for it"
      : `no answer within ${Math.round(timeoutMs / 100) / 10} s`;
    throw new OperationError(
      `Device "${device}" did not answer ${command} (${why}): ${await lastSeenText(nc, device)}`,
      [],
      { cause: e },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw new OperationError(`Device "${device}" answered ${command} with something not JSON`);
  }
  const refused = CommandError.safeParse(json);
  if (refused.success) {
    throw new OperationError(`Device "${device}": ${refused.data.error}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new OperationError(
      `Device "${device}" answered ${command} with an invalid reply: ` +
        `${issue.path.join(".") || "(root)"}: ${issue.message}`,
    );
  }
  return parsed.data;
}

/** The fleet as stored, for choosing devices and checking deployments. */
export function readFleetOnce(nc: NatsConnection): Promise<FleetState> {
  return readFleet(nc);
}
