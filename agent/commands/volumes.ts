/**
 * `purge-volumes`: removes the named volumes this agent created for a
 * deployment the device no longer runs (`operator delete --purge-volumes`).
 * Deleting a deployment keeps its volumes (docs/workloads.md); this is the
 * explicit way to drop their data.
 *
 * Only volumes labelled with this device and that deployment are touched. The
 * deployment must be gone from the desired state this agent holds — a
 * purge never races the reconciler into removing what it is about to mount —
 * and a volume still mounted by a container (the removal may be in progress,
 * or another deployment shares the name) is kept and named in the reply; the
 * operator asks again.
 *
 * @module
 */

import { LABELS, type PurgeVolumesReply } from "@drover/contracts";
import type { ContainerRuntime } from "../runtime/runtime.ts";
import { CommandFailure } from "./errors.ts";

/** What {@linkcode purgeVolumes} needs. */
export interface PurgeVolumesDeps {
  deviceId: string;
  runtime: Pick<ContainerRuntime, "listManagedVolumes" | "removeVolume">;
  /** Whether the agent's desired state holds `deployment`, or may (a partial view). */
  desired: (deployment: string) => boolean;
}

/** Removes `deployment`'s volumes on this device; see the module documentation. */
export async function purgeVolumes(
  deps: PurgeVolumesDeps,
  deployment: string,
  signal?: AbortSignal,
): Promise<PurgeVolumesReply> {
  if (deps.desired(deployment)) {
    throw new CommandFailure(
      "bad_request",
      `Deployment "${deployment}" is (or may still be) desired on device "${deps.deviceId}": ` +
        "its volumes are removed only once the agent knows the deployment is gone " +
        "(operator delete, serve's fan-out, the agent's next view of the desired state)",
    );
  }
  const volumes = (await deps.runtime.listManagedVolumes(signal)).filter((v) =>
    v.labels[LABELS.device] === deps.deviceId && v.labels[LABELS.deployment] === deployment
  );
  const reply: PurgeVolumesReply = { device: deps.deviceId, removed: [], kept: [] };
  for (const volume of volumes.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const result = await deps.runtime.removeVolume(volume.name, signal);
    if (result === "in-use") {
      reply.kept.push({ name: volume.name, reason: "still mounted by a container" });
    } else if (result === "removed") reply.removed.push(volume.name);
  }
  return reply;
}
