/**
 * Wire values of the device commands (`drover.cmd.<device>.<command>`,
 * subjects.ts): what the operator asks an agent and what the agent answers.
 * Request/reply only — every reply is one message below NATS's payload
 * limit; following logs is the reader pulling again with the cursor it got.
 *
 * Requests are strict (an agent refuses what it does not understand, naming
 * the field); replies strip unknown keys, so newer agents may add fields.
 *
 * @module
 */

import { z } from "zod";
import { Name } from "./score.ts";

/** Most log text one `logs` reply carries, in bytes (UTF-8), well below NATS's payload limit. */
export const MAX_LOG_CHUNK_BYTES = 64 * 1024;
/** Longest long-poll wait a `logs` request may ask for, in ms. */
export const MAX_LOG_WAIT_MS = 10_000;
/** Largest `tail` a `logs` request may ask for. */
export const MAX_LOG_TAIL = 100_000;
/** Events an agent keeps in its ring at most. */
export const MAX_DEVICE_EVENTS = 200;
/** Bytes (JSON) the event ring holds at most, so a reply stays small. */
export const MAX_DEVICE_EVENTS_BYTES = 64 * 1024;
/** Longest event message, in characters. */
export const MAX_EVENT_MESSAGE_LENGTH = 500;

/** Why an agent refused or could not answer a command. */
export const CommandErrorCode = z.enum([
  /** The request does not parse (the message names the field). */
  "bad_request",
  /** No such deployment or service on this device (the message names it). */
  "not_found",
  /** The device's `[policy]` does not allow it (e.g. `allow_logs = false`). */
  "forbidden",
  /** The container runtime cannot be reached, or the agent is busy. */
  "unavailable",
]);
/** Why an agent refused or could not answer a command. */
export type CommandErrorCode = z.infer<typeof CommandErrorCode>;

/** An agent's refusal, in place of a reply. */
export const CommandError = z.object({
  error: z.string().max(1000),
  code: CommandErrorCode,
});
/** An agent's refusal. */
export type CommandError = z.infer<typeof CommandError>;

/** `ping` request: when the operator sent it (ms since the epoch), echoed back. */
export const PingRequest = z.strictObject({ sent_at_ms: z.number().nonnegative().optional() });
/** `ping` request. */
export type PingRequest = z.infer<typeof PingRequest>;

/** `ping` reply. */
export const PingReply = z.object({
  device: Name,
  agent_version: z.string().max(100),
  /** RFC 3339 time the agent started. */
  started_at: z.iso.datetime(),
  uptime_seconds: z.number().nonnegative(),
  /** RFC 3339 time of the last reconcile pass that succeeded, or null before the first. */
  last_reconcile_at: z.iso.datetime().nullable(),
  /** The agent's own round trip to its NATS server (a PING/PONG), in ms; null if unmeasured. */
  nats_rtt_ms: z.number().nonnegative().nullable(),
  /** `sent_at_ms` of the request, echoed. */
  sent_at_ms: z.number().nonnegative().optional(),
});
/** `ping` reply. */
export type PingReply = z.infer<typeof PingReply>;

/**
 * Where a log read stopped: the timestamp of the last line delivered (as the
 * runtime wrote it, RFC 3339 with nanoseconds) and how many lines with exactly
 * that timestamp were delivered. The agent keeps no state between reads.
 */
export const LogCursor = z.strictObject({
  time: z.string().regex(/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})$/, {
    message: "must be an RFC 3339 time",
  }),
  skip: z.number().int().nonnegative().max(MAX_LOG_TAIL),
});
/** Where a log read stopped. */
export type LogCursor = z.infer<typeof LogCursor>;

/** `logs` request: one service's container on the device. */
export const LogsRequest = z.strictObject({
  deployment: Name,
  service: Name,
  /** The last N lines only (first read). */
  tail: z.number().int().nonnegative().max(MAX_LOG_TAIL).optional(),
  /** Lines written since this RFC 3339 time only (first read). */
  since: z.iso.datetime({ offset: true }).optional(),
  /** Continue after this point (every read after the first). */
  cursor: LogCursor.optional(),
  /** Following: the reply ends only when the container is gone. */
  follow: z.boolean().default(false),
  /** When nothing new is there, wait up to this long for a line before answering (ms). */
  wait_ms: z.number().int().nonnegative().max(MAX_LOG_WAIT_MS).default(0),
});
/** `logs` request (as sent; defaults optional). */
export type LogsRequest = z.input<typeof LogsRequest>;

/** One log line. */
export const LogLine = z.object({
  /** RFC 3339 time the runtime recorded it. */
  time: z.string().max(64),
  stream: z.enum(["stdout", "stderr"]),
  /** The line without its newline. */
  text: z.string(),
});
/** One log line. */
export type LogLine = z.infer<typeof LogLine>;

/** `logs` reply: one chunk. */
export const LogsReply = z.object({
  lines: z.array(LogLine),
  /** Pass it back to read on; null when nothing was ever read. */
  cursor: LogCursor.nullable(),
  /**
   * True when there is nothing more to read: not following and caught up, or
   * the container is gone (or stopped, when following). A reader that gets no
   * reply at all (a timeout) knows the connection, not the log, ended.
   */
  end: z.boolean(),
  /** Lines beyond this chunk are waiting (read again at once). */
  more: z.boolean().default(false),
  /** The container's runtime state, e.g. `running`, `exited`, or `gone`. */
  state: z.string().max(32).optional(),
});
/** `logs` reply. */
export type LogsReply = z.infer<typeof LogsReply>;

/** What happened on a device. */
export const DeviceEventKind = z.enum([
  "image_pulled",
  "image_pull_failed",
  "container_created",
  "container_started",
  "container_died",
  "container_replaced",
  "container_removed",
  "container_missing",
  "health_changed",
  "policy_refused",
  "crash_loop",
  "deployment_failed",
]);
/** What happened on a device. */
export type DeviceEventKind = z.infer<typeof DeviceEventKind>;

/** One entry of an agent's event ring. */
export const DeviceEvent = z.object({
  /** Increases by one per event since the agent started (gaps: dropped from the ring). */
  seq: z.number().int().positive(),
  /** RFC 3339 time. */
  time: z.iso.datetime(),
  kind: DeviceEventKind,
  deployment: Name.optional(),
  service: Name.optional(),
  /** Deployment revision concerned, when known. */
  revision: z.number().int().nonnegative().optional(),
  exit_code: z.number().int().optional(),
  message: z.string().max(MAX_EVENT_MESSAGE_LENGTH),
});
/** One entry of an agent's event ring. */
export type DeviceEvent = z.infer<typeof DeviceEvent>;

/** `events` request. */
export const EventsRequest = z.strictObject({
  /** Only events with a larger `seq`. */
  after_seq: z.number().int().nonnegative().optional(),
});
/** `events` request. */
export type EventsRequest = z.infer<typeof EventsRequest>;

/** `events` reply: the ring, oldest first. */
export const EventsReply = z.object({
  device: Name,
  events: z.array(DeviceEvent).max(MAX_DEVICE_EVENTS),
  /** Events pushed out of the ring since the agent started. */
  dropped: z.number().int().nonnegative(),
});
/** `events` reply. */
export type EventsReply = z.infer<typeof EventsReply>;

/**
 * `purge-volumes` request: remove the named volumes the agent created for `deployment`
 * (labels `drover.deployment` and `drover.device`), which must no longer be desired on the
 * device. A volume still mounted by a container is kept (and named in the reply).
 */
export const PurgeVolumesRequest = z.strictObject({ deployment: Name });
/** `purge-volumes` request. */
export type PurgeVolumesRequest = z.infer<typeof PurgeVolumesRequest>;

/** `purge-volumes` reply: what was removed and what was kept, and why. */
export const PurgeVolumesReply = z.object({
  device: Name,
  removed: z.array(z.string().max(256)).max(1000),
  kept: z.array(z.object({ name: z.string().max(256), reason: z.string().max(500) })).max(1000),
});
/** `purge-volumes` reply. */
export type PurgeVolumesReply = z.infer<typeof PurgeVolumesReply>;
