/**
 * `get devices` / `get deployments`: the fleet as tables or JSON, read
 * straight from KV (no need for `serve` to run).
 *
 * @module
 */

import { type Command, EXIT, UsageError } from "./cli.ts";
import { readFleet } from "../fleet/read.ts";
import { deploymentsTable, devicesTable, jsonForTerminal } from "../views/render.ts";
import { expectPositionals, OUTPUT_OPTION, outputFormat, withNats } from "./_shared.ts";

const KINDS = ["devices", "deployments"] as const;

/** The `get` command. */
export const getCommand: Command = {
  name: "get",
  summary: "List devices or deployments",
  usage: "get devices|deployments [-o table|json]",
  description: "Devices: id, status, online/offline (no status for 3 heartbeat intervals),\n" +
    "last heartbeat age, labels, deployments. Deployments: targeted, ready (running the\n" +
    "current revision), failed and pending device counts, and the source it was applied\n" +
    "from (apply --source; - when applied by hand); -o json adds per-device detail.",
  options: OUTPUT_OPTION,
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 1, "get", `what to get (${KINDS.join(" or ")})`);
    const kind = positionals[0];
    if (!(KINDS as readonly string[]).includes(kind)) {
      throw new UsageError(`Cannot get "${kind}": expected ${KINDS.join(" or ")}`, "get");
    }
    const format = outputFormat(values, "get");
    const view = await withNats(values, io, async (nc) => (await readFleet(nc)).view(Date.now()));
    if (kind === "devices") {
      io.stdout(
        format === "json" ? jsonForTerminal(view.devices) : devicesTable(view.devices),
      );
    } else {
      io.stdout(
        format === "json" ? jsonForTerminal(view.deployments) : deploymentsTable(view.deployments),
      );
    }
    return EXIT.ok;
  },
};
