/**
 * `events [DEVICE]`: the recent events a device's agent keeps (image pulled,
 * container died with its exit code, policy refusal, crash loop, …), asked
 * over NATS. Without DEVICE: every online device's, merged by time.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { DeviceEvent } from "@drover/contracts";
import { type Command, EXIT, UsageError } from "./cli.ts";
import { escapeControl, jsonForTerminal, table } from "../views/render.ts";
import { checkDeviceId, readFleetOnce, requestDeviceEvents } from "./_device.ts";
import { OUTPUT_OPTION, outputFormat, withNats } from "./_shared.ts";

/** One device's event, as printed. */
export type FleetEvent = DeviceEvent & { device: string };

/** The events of `devices`, oldest first; devices that fail are reported in `errors`. */
export async function collectEvents(
  nc: NatsConnection,
  devices: readonly string[],
): Promise<{ events: FleetEvent[]; errors: string[] }> {
  const results = await Promise.allSettled(
    devices.map((d) => requestDeviceEvents(nc, d)),
  );
  const events: FleetEvent[] = [];
  const errors: string[] = [];
  results.forEach((r, i) => {
    if (r.status === "fulfilled") {
      // allSettled keeps one result per device, in order.
      for (const e of r.value.events) events.push({ ...e, device: devices[i]! });
    } else errors.push(r.reason instanceof Error ? r.reason.message : String(r.reason));
  });
  events.sort((a, b) => a.time < b.time ? -1 : a.time > b.time ? 1 : a.seq - b.seq);
  return { events, errors };
}

/** The `events` command. */
export const eventsCommand: Command = {
  name: "events",
  summary: "Show recent events of a device (or of every online device)",
  usage: "events [DEVICE] [-o table|json]",
  description: "Each agent keeps its last 200 events (64 KiB at most) in memory; they are asked " +
    "for over NATS, not stored in the status. Exits 1 when a device does not answer.",
  options: OUTPUT_OPTION,
  connects: true,
  async run({ values, positionals, io }) {
    if (positionals.length > 1) {
      throw new UsageError(`Unexpected argument "${positionals[1]}"`, "events");
    }
    const format = outputFormat(values, "events");
    const { events, errors } = await withNats(values, io, async (nc) => {
      let devices: string[];
      const [one] = positionals;
      if (one !== undefined) devices = [checkDeviceId(one)];
      else {
        const view = (await readFleetOnce(nc)).view(Date.now());
        devices = view.devices.filter((d) => d.online).map((d) => d.device_id);
      }
      return await collectEvents(nc, devices);
    });
    if (format === "json") io.stdout(jsonForTerminal(events));
    else {
      io.stdout(table(
        ["TIME", "DEVICE", "KIND", "DEPLOYMENT", "SERVICE", "REV", "MESSAGE"],
        events.map((e) => [
          e.time,
          e.device,
          e.kind,
          e.deployment ?? "-",
          e.service ?? "-",
          e.revision === undefined ? "-" : String(e.revision),
          e.message,
        ]),
      ));
    }
    for (const e of errors) io.stderr(`${escapeControl(String(e))}\n`);
    return errors.length === 0 ? EXIT.ok : EXIT.failed;
  },
};
