/**
 * The three requests an agent makes into the `DROVER` account, over plain
 * NATS request/reply (devices have no JetStream API: docs/security.md): a
 * direct get of one of its desired-state keys, the operator's snapshot of
 * which keys it has, and the status put. Each returns a typed result or
 * throws a typed error, so callers never look at message text.
 *
 * @module
 */

import {
  type Msg,
  type NatsConnection,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/nats-core";
import {
  BUCKET_DESIRED_STATE,
  decodeJson,
  DesiredSnapshotReply,
  desiredSnapshotSubject,
  desiredStateGetSubject,
  statusSubject,
} from "@drover/contracts";
import type { KvRecord } from "./desired_record.ts";

/** Time limit of one request. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/**
 * A request's timer that fires later than this past its deadline says this
 * process did not run for a while (its CPU taken by others, a long pause):
 * the answer may be sitting unread in the socket, so the wait is extended
 * instead of calling the server silent.
 */
export const STALL_LATENESS_MS = 250;
/** However often a wait is extended, a request gives up after this many times its time limit. */
export const STALL_MAX_FACTOR = 4;

/** The timers {@linkcode stallAwareTimeout} uses; injectable so tests control time. */
export interface TimeoutTimers {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

const realTimers: TimeoutTimers = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/**
 * Resolves once `ms` passed with this process running: when the timer fires
 * more than {@linkcode STALL_LATENESS_MS} late, the process itself was stalled
 * — whatever arrived meanwhile has not been read yet — so it waits again, as
 * long as it was late (at most `ms`), and gives up only after `ms` ×
 * {@linkcode STALL_MAX_FACTOR} in all. A thousand hollow devices sharing one
 * starved event loop, or a Pi busy unpacking an image, would otherwise time
 * out requests whose answers came in time: measured in bench/scale.ts with
 * `--stall`, each such timeout cost its device 5 s or more.
 */
export function stallAwareTimeout(
  ms: number,
  timers: TimeoutTimers = realTimers,
): { expired: Promise<void>; cancel: () => void } {
  const start = timers.now();
  let deadline = start + ms;
  let id: unknown;
  const { promise, resolve } = Promise.withResolvers<void>();
  const check = () => {
    const now = timers.now();
    const late = now - deadline;
    if (late > STALL_LATENESS_MS && now - start < ms * STALL_MAX_FACTOR) {
      const wait = Math.min(late, ms, start + ms * STALL_MAX_FACTOR - now);
      deadline = now + wait;
      id = timers.setTimeout(check, wait);
      return;
    }
    resolve();
  };
  id = timers.setTimeout(check, ms);
  return { expired: promise, cancel: () => timers.clearTimeout(id) };
}

/** Why a request got no useful answer. */
export type RequestFailure =
  /** Nobody answered: the bucket (or the operator) is not there. */
  | "no-responders"
  /** No answer in time (a busy or unreachable server). */
  | "timeout"
  /** An answer that says it failed (a JetStream error), or that is not understood. */
  | "rejected";

/** A request into the `DROVER` account that failed; `reason` says how. */
export class DroverRequestError extends Error {
  override name = "DroverRequestError";
  /** How it failed. */
  readonly reason: RequestFailure;
  /** The subject asked. */
  readonly subject: string;
  constructor(subject: string, reason: RequestFailure, detail: string, options?: ErrorOptions) {
    super(`Request to ${subject} failed: ${detail}`, options);
    this.subject = subject;
    this.reason = reason;
  }
}

/** Sends one request, mapping the client's errors to {@linkcode DroverRequestError}. */
async function request(
  nc: NatsConnection,
  subject: string,
  body: Uint8Array,
  timeoutMs: number,
): Promise<Msg> {
  // nats.js's own timer is the backstop; the deadline is judged by a timer that knows
  // whether this process was running (stallAwareTimeout).
  const limit = stallAwareTimeout(timeoutMs);
  const answer = nc.request(subject, body, { timeout: timeoutMs * STALL_MAX_FACTOR });
  try {
    const first = await Promise.race([answer, limit.expired]);
    if (first === undefined) {
      // The answer may still come; nobody waits for it any more.
      answer.catch(() => {});
      throw new DroverRequestError(subject, "timeout", `no answer within ${timeoutMs} ms`);
    }
    return first;
  } catch (e) {
    if (e instanceof DroverRequestError) throw e;
    const noResponders = e instanceof NoRespondersError ||
      (e instanceof RequestError && e.isNoResponders());
    if (noResponders) {
      throw new DroverRequestError(subject, "no-responders", "no responders", { cause: e });
    }
    if (e instanceof TimeoutError || (e as Error)?.cause instanceof TimeoutError) {
      throw new DroverRequestError(subject, "timeout", `no answer within ${timeoutMs} ms`, {
        cause: e,
      });
    }
    throw e;
  } finally {
    limit.cancel();
  }
}

const KV_OPERATION_HEADER = "KV-Operation";
const SEQUENCE_HEADER = "Nats-Sequence";
const SUBJECT_PREFIX = `$KV.${BUCKET_DESIRED_STATE}.`;

/**
 * The last record of desired-state key `<device>.<deployment>`, or `null`
 * when the key has no message at all (never written, or erased).
 */
export async function getDesiredRecord(
  nc: NatsConnection,
  device: string,
  deployment: string,
  timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
): Promise<KvRecord | null> {
  const subject = desiredStateGetSubject(device, deployment);
  const msg = await request(nc, subject, new Uint8Array(), timeoutMs);
  const code = msg.headers?.code ?? 0;
  if (code === 404) return null;
  if (code >= 400) {
    throw new DroverRequestError(subject, "rejected", `${code} ${msg.headers?.description ?? ""}`);
  }
  const revision = Number(msg.headers?.get(SEQUENCE_HEADER));
  if (!Number.isSafeInteger(revision) || revision <= 0) {
    throw new DroverRequestError(subject, "rejected", "the answer carries no sequence number");
  }
  return recordOf(`${device}.${deployment}`, revision, msg);
}

/** A record from a message on a desired-state subject (a live change or a direct get). */
export function recordOf(key: string, revision: number, msg: Pick<Msg, "headers" | "data">) {
  const op = msg.headers?.get(KV_OPERATION_HEADER);
  return {
    key,
    revision,
    operation: op === "DEL" || op === "PURGE" ? op : "PUT",
    value: msg.data,
  } satisfies KvRecord;
}

/** The key a live desired-state change is about, or undefined for another subject. */
export function keyOfSubject(subject: string): string | undefined {
  return subject.startsWith(SUBJECT_PREFIX) ? subject.slice(SUBJECT_PREFIX.length) : undefined;
}

/** Asks the operator which desired-state keys `device` has. */
export async function requestSnapshot(
  nc: NatsConnection,
  device: string,
  timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
): Promise<{ asOfRevision: number; deployments: Map<string, number> }> {
  const subject = desiredSnapshotSubject(device);
  const msg = await request(nc, subject, new Uint8Array(), timeoutMs);
  const decoded = decodeJson(DesiredSnapshotReply, msg.data);
  if (!decoded.ok) {
    throw new DroverRequestError(subject, "rejected", `invalid answer: ${decoded.error}`);
  }
  const reply = decoded.value;
  if ("error" in reply) throw new DroverRequestError(subject, "rejected", reply.error);
  if (reply.device !== device) {
    throw new DroverRequestError(subject, "rejected", `answer is for device "${reply.device}"`);
  }
  return {
    asOfRevision: reply.as_of_revision,
    deployments: new Map(Object.entries(reply.deployments)),
  };
}

/** A JetStream publish acknowledgement, as the stream sends it. */
interface PubAck {
  seq?: number;
  error?: { code?: number; err_code?: number; description?: string };
}

/**
 * Writes this device's status (a KV put on `agent-status/<device>`) and
 * returns its revision.
 */
export async function putStatus(
  nc: NatsConnection,
  device: string,
  value: Uint8Array,
  timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
): Promise<number> {
  const subject = statusSubject(device);
  const msg = await request(nc, subject, value, timeoutMs);
  let ack: PubAck;
  try {
    ack = JSON.parse(new TextDecoder().decode(msg.data)) as PubAck;
  } catch {
    throw new DroverRequestError(subject, "rejected", "the acknowledgement is not JSON");
  }
  if (ack.error !== undefined) {
    const { err_code, description } = ack.error;
    throw new DroverRequestError(subject, "rejected", `${description ?? "error"} (${err_code})`);
  }
  if (typeof ack.seq !== "number") {
    throw new DroverRequestError(subject, "rejected", "the acknowledgement has no sequence");
  }
  return ack.seq;
}
