/**
 * `diff -f PATH… [--source NAME [--prune]]`: what `apply` with the same
 * arguments would do, per deployment, without changing anything. Exit 0 when
 * nothing would change, 1 when something would (kubectl's convention, so CI
 * can gate on it), 2 and up on errors.
 *
 * @module
 */

import { CliError, type Command, EXIT } from "./cli.ts";
import { jsonForTerminal } from "../views/render.ts";
import { expectPositionals, OUTPUT_OPTION, outputFormat, withNats } from "./_shared.ts";
import {
  loadSet,
  planJson,
  planSet,
  planTable,
  readStoredFleet,
  SET_OPTIONS,
  setArgs,
} from "./_plan.ts";
import { asCliError } from "./errors.ts";
import { planChangesSomething } from "../manifests/plan.ts";

/**
 * `e` with exit 1 ("something would change" here) turned into
 * {@linkcode EXIT.diffFailed}; other errors keep their code.
 */
export function diffError(e: unknown): CliError {
  // Domain errors (an invalid manifest, an unreachable server) get their exit code first.
  const cli = asCliError(e);
  if (cli !== undefined) {
    return cli.exitCode === EXIT.failed
      ? new CliError(cli.message, EXIT.diffFailed, cli.details, { cause: e })
      : cli;
  }
  const error = e as Error;
  const causes: string[] = [];
  for (let c = error?.cause; c instanceof Error && causes.length < 3; c = c.cause) {
    causes.push(`caused by: ${c.message}`);
  }
  return new CliError(error?.message ?? String(e), EXIT.diffFailed, causes, { cause: e });
}

/** The `diff` command. */
export const diffCommand: Command = {
  name: "diff",
  summary: "Show what apply -f would change (exit 1 when something would)",
  usage: "diff -f PATH... [--source NAME [--prune]] [-o table|json]",
  description: "Reads and validates the manifests as apply does (same -f, --source and\n" +
    "--prune), compares them with the stored deployments and lists each one: created,\n" +
    "changed (what changed, as history shows it: image, env keys, services added or\n" +
    "removed, selector, rollout policy, source), unchanged, or deleted (with --prune),\n" +
    "and how many registered devices each targets. Nothing is changed, no bucket is\n" +
    "created. In review: diff -f fleet/ --source NAME --prune shows what merging would do.",
  exitCodes: "Exit codes: 0 nothing would change, 1 something would, 2 usage error, " +
    "3 invalid input, 4 the diff failed (NATS unreachable…).",
  options: { ...SET_OPTIONS, ...OUTPUT_OPTION },
  connects: true,
  async run({ values, positionals, io }) {
    try {
      expectPositionals(positionals, 0, "diff", "");
      const args = setArgs(values, "diff");
      const format = outputFormat(values, "diff");
      const set = await loadSet(args.paths, io);
      const plan = await withNats(
        values,
        io,
        async (nc) => planSet(set, await readStoredFleet(nc), args, io),
      );
      io.stdout(format === "json" ? jsonForTerminal(planJson(plan, args)) : planTable(plan));
      return planChangesSomething(plan) ? EXIT.failed : EXIT.ok;
    } catch (e) {
      throw diffError(e);
    }
  },
};
