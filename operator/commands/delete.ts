/**
 * `delete NAME [--purge-volumes]`: removes a deployment; `serve` then deletes
 * its desired state on every device, and the agents remove its containers and
 * network. Its named volumes (and their data) are kept — the command says
 * which — unless `--purge-volumes` asks every device that held it to remove
 * them once the deployment is gone there (device command `purge-volumes`).
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  BUCKET_DEPLOYMENTS,
  BUCKET_DESIRED_STATE,
  decodeJson,
  deploymentKey,
  DeploymentManifest,
  nameProblem,
  parseVolumeMount,
  PurgeVolumesReply,
} from "@drover/contracts";
import {
  type Command,
  EXIT,
  InvalidInputError,
  OperationError,
  parseDuration,
  stringOption,
} from "./cli.ts";
import { openBucket } from "../nats/kv.ts";
import { expectPositionals, withNats } from "./_shared.ts";
import { askDevice } from "./_device.ts";
import { DeviceRefusedError, DeviceUnreachableError } from "../devices/requests.ts";
import { abortableSleep } from "@drover/common";
import { escapeControl } from "../views/render.ts";

/** Default for `--timeout`: how long `--purge-volumes` waits for the devices. */
export const DEFAULT_PURGE_TIMEOUT = "60s";

/** The `delete` command. */
export const deleteCommand: Command = {
  name: "delete",
  summary: "Delete a deployment from every device",
  usage: "delete NAME [--purge-volumes [--timeout DURATION]]",
  description: "The devices remove the deployment's containers and network. Its named volumes\n" +
    "and their data are kept (a re-created deployment finds them) unless --purge-volumes\n" +
    "is given: then every device that held the deployment is asked to remove them once\n" +
    "the deployment is gone there, waiting up to --timeout (default 60s); devices that\n" +
    "did not confirm in time are named and the command exits 1.",
  options: {
    "purge-volumes": {
      type: "boolean",
      description: "Also remove the deployment's named volumes and their data on the devices",
    },
    timeout: {
      type: "string",
      value: "DURATION",
      description:
        `How long --purge-volumes waits for the devices (default ${DEFAULT_PURGE_TIMEOUT})`,
    },
  },
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 1, "delete", "deployment NAME");
    const name = positionals[0];
    const problem = nameProblem(name);
    if (problem) throw new InvalidInputError(`Invalid deployment name "${name}": ${problem}`);
    const purge = values["purge-volumes"] === true;
    const timeoutMs = parseDuration(stringOption(values, "timeout") ?? DEFAULT_PURGE_TIMEOUT);
    return await withNats(values, io, async (nc) => {
      const kv = await openBucket(nc, BUCKET_DEPLOYMENTS);
      const entry = kv === undefined ? null : await kv.get(deploymentKey(name));
      if (kv === undefined || entry === null || entry.operation !== "PUT") {
        throw new OperationError(`Cannot delete deployment "${name}": it does not exist`);
      }
      const volumes = namedVolumes(entry.value);
      // Before the delete: serve's fan-out removes these keys soon after.
      const devices = purge ? await devicesHolding(nc, name) : [];
      await kv.delete(deploymentKey(name));
      io.stdout(`deployment "${name}" deleted\n`);
      if (!purge) {
        if (volumes.length > 0) {
          io.stdout(
            `named volumes kept on the devices: ${volumes.join(", ")} ` +
              "(delete --purge-volumes removes them with their data)\n",
          );
        }
        return EXIT.ok;
      }
      const outcomes = await Promise.all(
        devices.map((device) => purgeOn(nc, device, name, timeoutMs, io.signal)),
      );
      let complete = true;
      for (const outcome of outcomes) {
        io.stdout(`${escapeControl(outcome.line)}\n`);
        complete &&= outcome.done;
      }
      if (devices.length === 0) io.stdout("no device held the deployment: no volume to remove\n");
      return complete ? EXIT.ok : EXIT.failed;
    });
  },
};

/** The named volumes of a stored manifest (as written), sorted. Pure. */
export function namedVolumes(stored: Uint8Array): string[] {
  const decoded = decodeJson(DeploymentManifest, stored);
  if (!decoded.ok) return [];
  const names = new Set<string>();
  for (const service of decoded.value.score.services) {
    for (const volume of service.volumes ?? []) {
      const mount = parseVolumeMount(volume);
      if (typeof mount !== "string" && mount.type === "volume") names.add(mount.source);
    }
  }
  return [...names].sort();
}

/** Devices with a desired-state key for `deployment` (`<device>.<deployment>`). */
async function devicesHolding(nc: NatsConnection, deployment: string): Promise<string[]> {
  const kv = await openBucket(nc, BUCKET_DESIRED_STATE);
  if (kv === undefined) return [];
  const devices: string[] = [];
  for await (const key of await kv.keys(`*.${deployment}`)) {
    devices.push(key.slice(0, key.indexOf(".")));
  }
  return devices.sort();
}

/** Asks `device` to purge until it removed everything, or `timeoutMs` passed. */
async function purgeOn(
  nc: NatsConnection,
  device: string,
  deployment: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ done: boolean; line: string }> {
  const deadline = Date.now() + timeoutMs;
  let why = "";
  while (true) {
    try {
      const reply = await askDevice(nc, device, "purge-volumes", { deployment }, PurgeVolumesReply);
      if (reply.kept.length === 0) {
        return {
          done: true,
          line: `${device}: ${
            reply.removed.length > 0 ? `removed ${reply.removed.join(", ")}` : "no volume to remove"
          }`,
        };
      }
      why = `kept ${reply.kept.map((k) => `${k.name} (${k.reason})`).join(", ")}` +
        (reply.removed.length > 0 ? `; removed ${reply.removed.join(", ")}` : "");
    } catch (err) {
      // Still desired there (the fan-out has not reached it yet), or away: ask again.
      if (!(err instanceof DeviceRefusedError || err instanceof DeviceUnreachableError)) throw err;
      why = err.message;
    }
    if (Date.now() >= deadline || signal.aborted) {
      return { done: false, line: `${device}: volumes not removed: ${why}` };
    }
    await abortableSleep(1_000, signal).catch(() => {});
  }
}
