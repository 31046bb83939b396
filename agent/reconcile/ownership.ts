/**
 * Which containers are this device's. Pure.
 *
 * Several agents may share one podman host (several logical devices, a test
 * rig, a migration), and each sees every `drover.managed` container there. An
 * agent labels what it creates with `drover.device=<its id>` and touches only:
 *
 * - containers labelled with its own device id;
 * - unlabelled managed containers (created by an agent from before device
 *   labels) whose deployment this device's desired-state store has held since
 *   the agent started — from KV or from the offline cache. Those are adopted
 *   in place, not restarted; their next replacement carries the label.
 *
 * Containers labelled with another device id are never listed, planned,
 * removed or replaced; nor are unlabelled ones of deployments this device
 * never had. See docs/architecture.md, "Ownership".
 *
 * @module
 */

import type { ObservedContainer, RuntimeEvent } from "../runtime/runtime.ts";

/**
 * The containers of `observed` that belong to `deviceId`; `claimed` tells
 * whether this device's store has held a deployment (for unlabelled ones).
 */
export function ownContainers(
  observed: readonly ObservedContainer[],
  deviceId: string,
  claimed: (deployment: string) => boolean,
): ObservedContainer[] {
  return observed.filter((c) =>
    c.device === undefined ? claimed(c.deployment) : c.device === deviceId
  );
}

/** True when a runtime event may concern this device (not another device's container). */
export function concernsDevice(event: RuntimeEvent, deviceId: string): boolean {
  return event.kind !== "container" || event.device === undefined || event.device === deviceId;
}
