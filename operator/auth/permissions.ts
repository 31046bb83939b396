/**
 * What crosses from the devices' account into the `DROVER` account, and the
 * subject permissions of one device inside its account: exactly what an agent
 * needs to follow its own desired state and write its own status.
 *
 * Why devices live in an account of their own (docs/security.md): NATS checks
 * the subject a client publishes on, never the reply subject it names, and
 * JetStream answers (a publish ack, a direct-get message, an API response) on
 * that reply subject inside its own account. A device in the `DROVER` account
 * could therefore aim JetStream's answers at `$KV.…` or `$JS.API.…` subjects
 * and write, purge or read anything. In the `DROVER_DEVICES` account there is
 * no stream and no JetStream at all; a request a device sends through a
 * service import gets its reply rewritten by the server, and the answer lands
 * back in the devices' account, where it can reach nothing of Drover's.
 *
 * The per-device permissions then pin each device to its own subjects:
 * - publish `$KV.agent-status.<id>`: its status put (a service import; the
 *   stream's ack comes back to the device's inbox);
 * - publish the direct get of `$KV.desired-state.<id>.*`: reads one of its own
 *   keys (a service import);
 * - publish `drover.desired.snapshot.<id>`: asks the operator which keys it
 *   has (a service import answered by `operator serve`);
 * - subscribe `$KV.desired-state.<id>.*`: live changes of its own keys (a
 *   stream import; a change is only a hint, the agent re-reads the key);
 * - subscribe `_INBOX_<id>.>`: replies to its own requests;
 * - publish `drover.heartbeat.<id>`: its liveness heartbeat, core NATS,
 *   flowing the other way: the devices' account exports it as a private
 *   stream that only `DROVER` imports ({@linkcode DEVICE_EXPORTS});
 * - subscribe `drover.cmd.<id>.*`: the operator's commands to it (ping, logs,
 *   events), also exported by the devices' account (a private service only
 *   `DROVER` imports). It may answer only on the reply subject of a request it
 *   received (a response permission) and never publishes on `drover.cmd.>`,
 *   so no device can ask another device anything;
 * - publish `drover.artifact.<id>`: asks which agent version it should run
 *   and pulls signed release chunks (a service import answered by
 *   `operator serve`); nothing else of the releases' bucket is reachable.
 *
 * @module
 */

import {
  ARTIFACT_PREFIX,
  artifactSubject,
  assertName,
  BUCKET_AGENT_STATUS,
  BUCKET_DESIRED_STATE,
  DESIRED_SNAPSHOT_PREFIX,
  desiredSnapshotSubject,
  desiredStateChangesSubject,
  DEVICE_COMMAND_PREFIX,
  deviceCommandsSubject,
  directGetSubject,
  HEARTBEAT_PREFIX,
  heartbeatSubject,
  kvStream,
  kvSubject,
  MAX_LOG_WAIT_MS,
  statusSubject,
} from "@drover/contracts";

/** Publish/subscribe allow lists in the shape of a NATS user JWT. */
export interface SubjectPermissions {
  pub: { allow: string[] };
  sub: { allow: string[] };
  /**
   * Replies to requests it received: at most `max` messages per request within
   * `ttlMs` (JWT `resp`, plain config `allow_responses`). Nothing else: the
   * reply subject the server gave the request is all it can answer to.
   */
  resp: { max: number; ttlMs: number };
}

/**
 * How long a device may take to answer a command: a `logs` long poll waits at
 * most `MAX_LOG_WAIT_MS` (10 s) before answering; 30 s leaves room for a slow podman.
 */
export const DEVICE_RESPONSE_TTL_MS = 30_000;

/** The inbox prefix a device must connect with: `_INBOX_<id>`. */
export function deviceInboxPrefix(deviceId: string): string {
  return `_INBOX_${assertName("device id", deviceId)}`;
}

/** One subject the `DROVER` account exports to the devices' account. */
export interface DeviceBridge {
  /** Short name, shown in the account JWT. */
  name: string;
  /** Exported and imported subject (wildcards stand for device id and deployment). */
  subject: string;
  /** `service`: request/reply into `DROVER`; `stream`: messages flowing out of `DROVER`. */
  type: "service" | "stream";
  /**
   * Services: how long the server keeps the mapping of a request's reply
   * subject waiting for the answer. Short, so that a device flooding requests
   * nobody answers (or that are refused silently) cannot grow the server's
   * reply maps without bound.
   */
  responseThresholdMs?: number;
}

/** Response threshold of the services devices call: every answer is from memory or one read. */
export const DEVICE_SERVICE_RESPONSE_THRESHOLD_MS = 5_000;

/**
 * Everything a device can reach in the `DROVER` account. Subjects name the
 * exact token count of Drover's keys (`<device>` and `<device>.<deployment>`).
 */
export const DEVICE_BRIDGES: readonly DeviceBridge[] = [
  {
    name: "agent-status put",
    subject: kvSubject(BUCKET_AGENT_STATUS, "*"),
    type: "service",
    responseThresholdMs: DEVICE_SERVICE_RESPONSE_THRESHOLD_MS,
  },
  {
    name: "desired-state direct get",
    subject: directGetSubject(
      kvStream(BUCKET_DESIRED_STATE),
      kvSubject(BUCKET_DESIRED_STATE, "*.*"),
    ),
    type: "service",
    responseThresholdMs: DEVICE_SERVICE_RESPONSE_THRESHOLD_MS,
  },
  {
    name: "desired-state snapshot",
    subject: `${DESIRED_SNAPSHOT_PREFIX}.*`,
    type: "service",
    responseThresholdMs: DEVICE_SERVICE_RESPONSE_THRESHOLD_MS,
  },
  {
    // Release artifacts for self-update, answered by `operator serve` from the
    // Object Store (devices have no JetStream to read it themselves).
    name: "agent artifacts",
    subject: `${ARTIFACT_PREFIX}.*`,
    type: "service",
    responseThresholdMs: DEVICE_SERVICE_RESPONSE_THRESHOLD_MS,
  },
  {
    name: "desired-state changes",
    subject: kvSubject(BUCKET_DESIRED_STATE, "*.*"),
    type: "stream",
  },
];

/**
 * What flows the other way, from the devices' account into `DROVER`: streams
 * the devices' account exports (privately, to `DROVER` only) and `DROVER`
 * imports. Devices publish; nothing here lets a device read anything.
 */
export const DEVICE_EXPORTS: readonly DeviceBridge[] = [
  {
    name: "device heartbeats",
    subject: `${HEARTBEAT_PREFIX}.*`,
    type: "stream",
  },
  {
    // Requests from DROVER (the operator's identity) to one device:
    // `drover.cmd.<device>.<command>`; only that device subscribes to its own.
    name: "device commands",
    subject: `${DEVICE_COMMAND_PREFIX}.*.*`,
    type: "service",
    // A followed log may wait MAX_LOG_WAIT_MS on the device before it answers.
    responseThresholdMs: MAX_LOG_WAIT_MS + 5_000,
  },
];

/**
 * The publish and subscribe allow lists of device `deviceId`.
 *
 * @throws {InvalidNameError} when `deviceId` is not a valid name (it would
 * otherwise widen a subject with `.`, `*` or `>`).
 */
export function devicePermissions(deviceId: string): SubjectPermissions {
  const id = assertName("device id", deviceId);
  return {
    pub: {
      allow: [
        statusSubject(id),
        directGetSubject(kvStream(BUCKET_DESIRED_STATE), desiredStateChangesSubject(id)),
        desiredSnapshotSubject(id),
        heartbeatSubject(id),
        artifactSubject(id),
      ],
    },
    sub: {
      allow: [
        desiredStateChangesSubject(id),
        `${deviceInboxPrefix(id)}.>`,
        deviceCommandsSubject(id),
      ],
    },
    // One answer per command received, on that command's reply subject only.
    resp: { max: 1, ttlMs: DEVICE_RESPONSE_TTL_MS },
  };
}
