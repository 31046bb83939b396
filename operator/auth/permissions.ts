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
 * - subscribe `_INBOX_<id>.>`: replies to its own requests.
 *
 * @module
 */

import {
  assertName,
  BUCKET_AGENT_STATUS,
  BUCKET_DESIRED_STATE,
  DESIRED_SNAPSHOT_PREFIX,
  desiredSnapshotSubject,
  desiredStateChangesSubject,
  directGetSubject,
  kvStream,
  kvSubject,
  statusSubject,
} from "@drover/contracts";

/** Publish/subscribe allow lists in the shape of a NATS user JWT. */
export interface SubjectPermissions {
  pub: { allow: string[] };
  sub: { allow: string[] };
}

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
}

/**
 * Everything a device can reach in the `DROVER` account. Subjects name the
 * exact token count of Drover's keys (`<device>` and `<device>.<deployment>`).
 */
export const DEVICE_BRIDGES: readonly DeviceBridge[] = [
  {
    name: "agent-status put",
    subject: kvSubject(BUCKET_AGENT_STATUS, "*"),
    type: "service",
  },
  {
    name: "desired-state direct get",
    subject: directGetSubject(
      kvStream(BUCKET_DESIRED_STATE),
      kvSubject(BUCKET_DESIRED_STATE, "*.*"),
    ),
    type: "service",
  },
  {
    name: "desired-state snapshot",
    subject: `${DESIRED_SNAPSHOT_PREFIX}.*`,
    type: "service",
  },
  {
    name: "desired-state changes",
    subject: kvSubject(BUCKET_DESIRED_STATE, "*.*"),
    type: "stream",
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
      ],
    },
    sub: { allow: [desiredStateChangesSubject(id), `${deviceInboxPrefix(id)}.>`] },
  };
}
