/**
 * `delete NAME`: removes a deployment; `serve` then deletes its desired
 * state on every device, and the agents remove its containers.
 *
 * @module
 */

import { BUCKET_DEPLOYMENTS, deploymentKey, nameProblem } from "@drover/contracts";
import { type Command, EXIT, InvalidInputError, OperationError } from "./cli.ts";
import { openBucket } from "../nats/kv.ts";
import { expectPositionals, withNats } from "./_shared.ts";

/** The `delete` command. */
export const deleteCommand: Command = {
  name: "delete",
  summary: "Delete a deployment from every device",
  usage: "delete NAME",
  options: {},
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 1, "delete", "deployment NAME");
    const name = positionals[0];
    const problem = nameProblem(name);
    if (problem) throw new InvalidInputError(`Invalid deployment name "${name}": ${problem}`);
    await withNats(values, io, async (nc) => {
      const kv = await openBucket(nc, BUCKET_DEPLOYMENTS);
      const entry = kv === undefined ? null : await kv.get(deploymentKey(name));
      if (kv === undefined || entry === null || entry.operation !== "PUT") {
        throw new OperationError(`Cannot delete deployment "${name}": it does not exist`);
      }
      await kv.delete(deploymentKey(name));
    });
    io.stdout(`deployment "${name}" deleted\n`);
    return EXIT.ok;
  },
};
