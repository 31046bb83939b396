/**
 * `history NAME`: every recorded revision of a deployment, with when it was
 * stored, what changed and how its rollout went.
 *
 * @module
 */

import { type Command, EXIT, OperationError } from "./cli.ts";
import { ensureBuckets } from "../nats/kv.ts";
import { readHistory } from "../rollout/history.ts";
import { ensureRolloutBuckets } from "../rollout/store.ts";
import { historyRows, historyTable } from "../rollout/view.ts";
import { jsonForTerminal } from "../views/render.ts";
import { deploymentKey } from "@drover/contracts";
import {
  deploymentNameArg,
  expectPositionals,
  OUTPUT_OPTION,
  outputFormat,
  readRolloutState,
  withNats,
} from "./_shared.ts";

/** The `history` command. */
export const historyCommand: Command = {
  name: "history",
  summary: "List a deployment's revisions (what changed, how each rollout went)",
  usage: "history NAME [-o table|json]",
  description: "Every revision apply or rollout undo stored, oldest first: when, a one-line\n" +
    "summary of what changed, and the latest rollout's outcome. (current) is the revision\n" +
    "in deployments now; (stable) what a rollback restores. -o json adds each manifest.\n" +
    "Any listed revision can be restored with rollout undo NAME --to-revision N.",
  options: OUTPUT_OPTION,
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 1, "history", "deployment NAME");
    const name = deploymentNameArg(positionals[0]);
    const format = outputFormat(values, "history");
    const rows = await withNats(values, io, async (nc) => {
      const [buckets, rollouts] = await Promise.all([ensureBuckets(nc), ensureRolloutBuckets(nc)]);
      const [entries, current, rollout] = await Promise.all([
        readHistory(rollouts.history, name),
        buckets.deployments.get(deploymentKey(name)),
        readRolloutState(rollouts, name),
      ]);
      if (entries.length === 0 && (current === null || current.operation !== "PUT")) {
        throw new OperationError(`Deployment "${name}" not found and has no recorded revisions`);
      }
      return historyRows(
        entries,
        current?.operation === "PUT" ? current.revision : undefined,
        rollout?.state,
      );
    });
    io.stdout(format === "json" ? jsonForTerminal(rows) : historyTable(rows));
    return EXIT.ok;
  },
};
