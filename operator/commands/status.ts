/**
 * `status NAME`: one deployment, device by device, with the agents' messages.
 *
 * @module
 */

import { nameProblem } from "@drover/contracts";
import { type Command, EXIT, InvalidInputError, OperationError } from "./cli.ts";
import { readFleet } from "../fleet/read.ts";
import { deploymentStatus, jsonForTerminal } from "../views/render.ts";
import { expectPositionals, OUTPUT_OPTION, outputFormat, withNats } from "./_shared.ts";

/** The `status` command. */
export const statusCommand: Command = {
  name: "status",
  summary: "Show one deployment device by device",
  usage: "status NAME [-o table|json]",
  description: "Exits 0 when every targeted device runs the current revision, 1 otherwise.",
  options: OUTPUT_OPTION,
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 1, "status", "deployment NAME");
    const name = positionals[0];
    const problem = nameProblem(name);
    if (problem) throw new InvalidInputError(`Invalid deployment name "${name}": ${problem}`);
    const format = outputFormat(values, "status");
    const state = await withNats(values, io, (nc) => readFleet(nc));
    const stored = state.manifests.get(name);
    if (stored === undefined) throw new OperationError(`Deployment "${name}" not found`);
    if (stored.manifest === undefined) {
      throw new OperationError(`Deployment "${name}" holds an invalid manifest`, [
        stored.error ?? "",
      ]);
    }
    const view = state.view(Date.now()).deployments.find((d) => d.name === name)!;
    io.stdout(format === "json" ? jsonForTerminal(view) : deploymentStatus(view));
    return view.ready === view.targeted ? EXIT.ok : EXIT.failed;
  },
};
