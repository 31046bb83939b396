/**
 * `ping DEVICE`: asks the device's agent over NATS and prints the round trip,
 * its version, uptime, last successful reconcile and its own NATS round trip.
 *
 * @module
 */

import { PingReply } from "@drover/contracts";
import { type Command, EXIT } from "./cli.ts";
import { escapeControl, formatAge, jsonForTerminal } from "../views/render.ts";
import { askDevice, checkDeviceId } from "./_device.ts";
import { expectPositionals, OUTPUT_OPTION, outputFormat, withNats } from "./_shared.ts";

/** The `ping` command. */
export const pingCommand: Command = {
  name: "ping",
  summary: "Ask a device's agent whether it is there, and how it is",
  usage: "ping DEVICE [-o table|json]",
  description: "Exits 1 within a few seconds when the device does not answer, saying when it " +
    "was last seen.",
  options: OUTPUT_OPTION,
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 1, "ping", "DEVICE");
    const device = checkDeviceId(positionals[0]);
    const format = outputFormat(values, "ping");
    const { reply, rttMs } = await withNats(values, io, async (nc) => {
      const sent = performance.now();
      const reply = await askDevice(nc, device, "ping", { sent_at_ms: Date.now() }, PingReply);
      return { reply, rttMs: Math.round((performance.now() - sent) * 100) / 100 };
    });
    if (format === "json") {
      io.stdout(jsonForTerminal({ ...reply, round_trip_ms: rttMs }));
      return EXIT.ok;
    }
    const last = reply.last_reconcile_at === null
      ? "never"
      : `${formatAge((Date.now() - Date.parse(reply.last_reconcile_at)) / 1000)} ago`;
    // The device's words (its id and version) cannot drive the terminal.
    io.stdout(
      escapeControl(
        `${reply.device}: answered in ${rttMs} ms — agent ${reply.agent_version}, up ` +
          `${formatAge(reply.uptime_seconds)}, last reconcile ${last}, agent↔NATS ` +
          `${reply.nats_rtt_ms === null ? "unknown" : `${reply.nats_rtt_ms} ms`}`,
      ) + "\n",
    );
    return EXIT.ok;
  },
};
