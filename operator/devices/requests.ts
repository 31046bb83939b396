/**
 * Asking one device something (`logs`, `ping`, `events`): a NATS request on
 * `drover.cmd.<device>.<command>`, which crosses into the devices' account
 * through the operator's service import (docs/security.md). The CLI
 * (`operator logs|ping|events`) and the HTTP API (`/api/devices/ID/events`,
 * `/api/devices/ID/logs`) call the same functions here.
 *
 * A device that does not answer is reported promptly with what its last
 * status says: a request through a service import may time out rather than
 * get "no responders", so the wait is short and the error names when the
 * device was last seen.
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
  type CommandErrorCode,
  type DeviceCommand,
  deviceCommandSubject,
  EventsReply,
  type EventsRequest,
  LogsReply,
  type LogsRequest,
} from "@drover/contracts";
import { openBucket } from "../nats/kv.ts";
import { escapeControl, formatAge } from "../views/render.ts";
import { FleetState } from "../fleet/state.ts";
import type { DeviceGate } from "../fleet/device_gate.ts";

/** How long a device has to answer a command that does not wait on its side, in ms. */
export const DEVICE_ANSWER_TIMEOUT_MS = 3_000;

/** Where a device stands by its last status, for an error. */
export interface LastSeen {
  /** For people: "it is offline, last seen 14m ago (…)". */
  text: string;
  /** RFC 3339 time of its last status or heartbeat; null if it never reported (or unreadable). */
  last_seen: string | null;
  /** Whether the last status still counts as online; null when unknown. */
  online: boolean | null;
}

/**
 * A request to a device that did not get a usable answer: the CLI exits 1, the HTTP API
 * answers by the subclass.
 */
export class DeviceRequestError extends Error {
  override name = "DeviceRequestError";
}

/** The device did not answer in time (or no agent is connected for it). */
export class DeviceUnreachableError extends DeviceRequestError {
  override name = "DeviceUnreachableError";
  /** The device asked. */
  readonly device: string;
  /** What its last status says. */
  readonly lastSeen: LastSeen;
  constructor(message: string, device: string, lastSeen: LastSeen, options?: ErrorOptions) {
    super(message, options);
    this.device = device;
    this.lastSeen = lastSeen;
  }
}

/** The device answered with a refusal (policy, missing deployment or service, bad request). */
export class DeviceRefusedError extends DeviceRequestError {
  override name = "DeviceRefusedError";
  /** The agent's reason code. */
  readonly code: CommandErrorCode;
  constructor(message: string, code: CommandErrorCode) {
    super(message);
    this.code = code;
  }
}

/** The device answered with something that is not a valid reply. */
export class DeviceReplyError extends DeviceRequestError {
  override name = "DeviceReplyError";
}

/** Where `device` stands by its last status in `agent-status`. Never throws. */
export async function lastSeen(nc: NatsConnection, device: string): Promise<LastSeen> {
  const never = { text: "it has never reported a status", last_seen: null, online: null };
  try {
    const kv = await openBucket(nc, BUCKET_AGENT_STATUS);
    const entry = kv === undefined ? null : await kv.get(device);
    if (entry === null || entry.operation !== "PUT") return never;
    const state = new FleetState();
    state.applyStatus({
      key: device,
      value: entry.value,
      revision: entry.revision,
      operation: "PUT",
      created: entry.created,
    });
    const view = state.view(Date.now()).devices.find((d) => d.device_id === device);
    if (view === undefined || view.last_seen === null) return never;
    const age = formatAge(view.heartbeat_age_seconds);
    return {
      text: view.online
        ? `its last status (${age} ago) says it is online`
        : `it is offline, last seen ${age} ago (${view.last_seen})`,
      last_seen: view.last_seen,
      online: view.online,
    };
  } catch {
    return { text: "its last status could not be read", last_seen: null, online: null };
  }
}

/** Where a device stands by its last status, as text: "offline, last seen 14m ago (…)". */
export async function lastSeenText(nc: NatsConnection, device: string): Promise<string> {
  return (await lastSeen(nc, device)).text;
}

/**
 * Sends `command` to `device` and returns the reply parsed by `schema`.
 *
 * @throws {DeviceUnreachableError} no answer within `timeoutMs` (naming when it was last seen)
 * @throws {DeviceRefusedError} the device refused, with its reason
 * @throws {DeviceReplyError} the answer is not a valid reply
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
    const seen = await lastSeen(nc, device);
    throw new DeviceUnreachableError(
      `Device "${device}" did not answer ${command} (${why}): ${seen.text}`,
      device,
      seen,
      { cause: e },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw new DeviceReplyError(`Device "${device}" answered ${command} with something not JSON`);
  }
  const refused = CommandError.safeParse(json);
  if (refused.success) {
    // The device's words, escaped: they end up on a terminal.
    throw new DeviceRefusedError(
      `Device "${device}": ${escapeControl(refused.data.error)}`,
      refused.data.code,
    );
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const [issue] = parsed.error.issues;
    if (issue === undefined) {
      throw new Error(`zod reported an invalid ${command} reply without an issue`);
    }
    throw new DeviceReplyError(
      `Device "${device}" answered ${command} with an invalid reply: ` +
        escapeControl(`${issue.path.join(".") || "(root)"}: ${issue.message}`),
    );
  }
  return parsed.data;
}

/** A device's event ring (oldest first), as `operator events` and the HTTP API show it. */
export function requestDeviceEvents(
  nc: NatsConnection,
  device: string,
  request: EventsRequest = {},
): Promise<EventsReply> {
  return askDevice(nc, device, "events", request, EventsReply);
}

/**
 * One chunk of a container's log. The device may hold the request up to
 * `wait_ms` (following, caught up), so the answer has that much longer.
 */
export function requestLogChunk(
  nc: NatsConnection,
  device: string,
  request: LogsRequest,
): Promise<LogsReply> {
  const timeoutMs = (request.wait_ms ?? 0) + DEVICE_ANSWER_TIMEOUT_MS;
  return askDevice(nc, device, "logs", request, LogsReply, timeoutMs);
}

/** The device requests the HTTP API makes (a fake in tests, NATS in `serve`). */
export interface DeviceRequests {
  /** See {@linkcode requestDeviceEvents}. */
  events(device: string, request?: EventsRequest): Promise<EventsReply>;
  /** See {@linkcode requestLogChunk}. */
  logs(device: string, request: LogsRequest): Promise<LogsReply>;
}

/** Too many questions to this device (or to all devices) are in progress. */
export class DeviceBusyError extends DeviceRequestError {
  override name = "DeviceBusyError";
}

/**
 * {@linkcode DeviceRequests} over the operator's NATS connection. With a
 * `gate`, each question (and so each answer the device can send) is admitted
 * first: at the device's rate, within the cap on questions in progress.
 */
export function natsDeviceRequests(nc: NatsConnection, gate?: DeviceGate): DeviceRequests {
  const gated = async <T>(device: string, ask: () => Promise<T>): Promise<T> => {
    const ticket = gate?.admit(device) ?? { ok: true as const, release: () => {} };
    if (!ticket.ok) {
      throw new DeviceBusyError(
        `Too many requests to device "${device}" in progress or in the last seconds; retry`,
      );
    }
    try {
      return await ask();
    } finally {
      ticket.release();
    }
  };
  return {
    events: (device, request) => gated(device, () => requestDeviceEvents(nc, device, request)),
    logs: (device, request) => gated(device, () => requestLogChunk(nc, device, request)),
  };
}
