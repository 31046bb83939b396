/**
 * The {@linkcode LogSource} of a device on podman: this device's container
 * of a deployment's service (the ownership rules of the reconciler), and its
 * logs from podman's logs endpoint with timestamps.
 *
 * @module
 */

import type { ContainerRuntime } from "../runtime/runtime.ts";
import type { PodmanClient } from "../runtime/podman/client.ts";
import { NotFoundError } from "../runtime/podman/errors.ts";
import { ownContainers } from "../reconcile/ownership.ts";
import type { LogSource } from "./logs.ts";

/** Options of {@linkcode podmanLogSource}. */
export interface PodmanLogSourceOptions {
  deviceId: string;
  runtime: ContainerRuntime;
  client: PodmanClient;
  /** Whether this device's store holds a deployment (adopts unlabelled containers). */
  claimed: (deployment: string) => boolean;
}

/** Logs of this device's containers on podman. */
export function podmanLogSource(options: PodmanLogSourceOptions): LogSource {
  const { deviceId, runtime, client, claimed } = options;
  return {
    async find(deployment, service) {
      const mine = ownContainers(await runtime.listManaged(), deviceId, claimed)
        .filter((c) => c.deployment === deployment && c.service === service);
      // During a replacement two may exist for a moment: the running one speaks.
      const chosen = mine.find((c) => c.state === "running") ?? mine[0];
      return chosen === undefined ? undefined : {
        id: chosen.id,
        state: chosen.state,
        ...(chosen.exitCode !== undefined ? { exitCode: chosen.exitCode } : {}),
      };
    },
    async read(id, { tail, since, signal }) {
      try {
        return await client.containerLogs(id, {
          timestamps: true,
          ...(tail !== undefined ? { tail } : {}),
          ...(since !== undefined ? { since } : {}),
          ...(signal !== undefined ? { signal } : {}),
        });
      } catch (err) {
        if (err instanceof NotFoundError) return []; // removed since find: the next read says so
        throw err;
      }
    },
  };
}
