/**
 * The NATS subject permissions of one device: exactly what an agent needs to
 * watch and read its own desired state and write its own status, nothing else.
 *
 * Why each entry exists (measured against nats-server 2.9, see FIELD-NOTES):
 * - a KV watch is an ordered push consumer whose create subject carries the
 *   filter, so allowing only `…CREATE.KV_desired-state.*.$KV.desired-state.<id>.>`
 *   pins the device to its own keys (the server also rejects a body filter
 *   that differs from the subject's);
 * - DELETE/INFO of a consumer are needed to stop and reset a watch; the
 *   consumer name is random and a consumer only ever delivers what its filter
 *   allows, so these grant no read access;
 * - direct get (`allow_direct` buckets) reads one key without a consumer and
 *   is allowed only under the device's own prefix; `STREAM.MSG.GET` (which
 *   reads any sequence) is not granted;
 * - `$JS.FC.…` is the flow-control reply a push consumer expects;
 * - `$KV.agent-status.<id>` is the status put; its JetStream ack comes back
 *   to the device's own inbox prefix, the only thing it may subscribe to.
 *
 * @module
 */

import { assertName, BUCKET_AGENT_STATUS, BUCKET_DESIRED_STATE } from "@drover/contracts";

/** Publish/subscribe allow lists in the shape of a NATS user JWT. */
export interface SubjectPermissions {
  pub: { allow: string[] };
  sub: { allow: string[] };
}

/** The inbox prefix a device must connect with: `_INBOX_<id>`. */
export function deviceInboxPrefix(deviceId: string): string {
  return `_INBOX_${assertName("device id", deviceId)}`;
}

/**
 * The publish and subscribe allow lists of device `deviceId`.
 *
 * @throws {InvalidNameError} when `deviceId` is not a valid name (it would
 * otherwise widen a subject with `.`, `*` or `>`).
 */
export function devicePermissions(deviceId: string): SubjectPermissions {
  const id = assertName("device id", deviceId);
  const desiredStream = `KV_${BUCKET_DESIRED_STATE}`;
  const statusStream = `KV_${BUCKET_AGENT_STATUS}`;
  const ownDesired = `$KV.${BUCKET_DESIRED_STATE}.${id}.>`;
  const ownStatus = `$KV.${BUCKET_AGENT_STATUS}.${id}`;
  return {
    pub: {
      allow: [
        `$JS.API.CONSUMER.CREATE.${desiredStream}.*.${ownDesired}`,
        `$JS.API.CONSUMER.DELETE.${desiredStream}.*`,
        `$JS.API.CONSUMER.INFO.${desiredStream}.*`,
        `$JS.API.DIRECT.GET.${desiredStream}.${ownDesired}`,
        `$JS.FC.${desiredStream}.>`,
        ownStatus,
        `$JS.API.DIRECT.GET.${statusStream}.${ownStatus}`,
      ],
    },
    sub: { allow: [`${deviceInboxPrefix(id)}.>`] },
  };
}
