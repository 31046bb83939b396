/**
 * `apply -f PATH… [--source NAME] [--prune] [--dry-run] [--wait]`: validate
 * every manifest of the set, plan it against what is stored, store what
 * changed (with its history entry), delete what `--prune` removes, and
 * optionally follow every rollout.
 *
 * Missing buckets are created with default settings so that `apply` works
 * before `serve` ever ran; `serve --replicas N` should run first on a cluster.
 *
 * @module
 */

import { canonicalJson, deploymentKey } from "@drover/contracts";
import {
  CliError,
  type CliIo,
  type Command,
  EXIT,
  OperationError,
  parseDuration,
  PROGRAM,
  stringOption,
  UsageError,
} from "./cli.ts";
import { type Buckets, ensureBuckets, retryWhileRecovering } from "../nats/kv.ts";
import { waitForRollout, type WaitResult } from "../rollout/follow.ts";
import { escapeControl, summaryCounts } from "./render.ts";
import { historyEntry, recordRevision } from "../rollout/history.ts";
import { ensureRolloutBuckets } from "../rollout/store.ts";
import { failureLines } from "../rollout/view.ts";
import type { KV } from "@nats-io/kv";
import { expectPositionals, withNats } from "./_shared.ts";
import { loadSet, planSet, planTable, readStoredFleet, SET_OPTIONS, setArgs } from "./_plan.ts";
import type { PlanEntry } from "../manifests/plan.ts";

/** Default for `--timeout`. */
export const DEFAULT_WAIT_TIMEOUT = "120s";

/** How `apply` reports each action (kubectl's words). */
const APPLIED: Record<PlanEntry["action"], string> = {
  created: "created",
  changed: "configured",
  unchanged: "unchanged",
  deleted: "deleted",
};

/** The `apply` command. */
export const applyCommand: Command = {
  name: "apply",
  summary: "Create or update deployments from manifest files or directories",
  usage: "apply -f PATH... [--source NAME [--prune]] [--dry-run] [--wait] [--timeout DURATION]",
  description: "PATH is a manifest file or a directory, read recursively (.yaml, .yml, .json,\n" +
    'and .toml files; hidden entries skipped); -f repeats; "-" reads standard input. A\n' +
    "file is YAML, TOML or JSON by extension, else by content; a YAML file may hold\n" +
    "several manifests separated by ---. Every manifest is validated before anything is\n" +
    "stored: any invalid one exits 3 naming every problem (file, document, field, line),\n" +
    "as does a deployment name defined twice, and nothing is stored.\n" +
    "\n" +
    "A fleet kept in git: --source NAME (e.g. the repository) is stored with each\n" +
    "deployment (get deployments shows it); --prune then also deletes the deployments of\n" +
    "that source whose manifest is gone from the set, never another source's or those\n" +
    "applied by hand. A set may not take over another source's deployment. --dry-run\n" +
    "prints the plan (what diff prints) and stores nothing. The workflow: a fleet/\n" +
    "folder in git, diff -f fleet/ --source REPO --prune in review, and from CI\n" +
    "apply -f fleet/ --source REPO --prune --wait.\n" +
    "\n" +
    "--wait follows every rollout of the set in parallel until each targeted device\n" +
    "runs the new revision; with a rollout section, batch by batch until it completes.\n" +
    "It exits 1 if any rollout fails, is rolled back, pauses after a failed batch or\n" +
    "times out, naming each one, its devices and their reasons. Every revision is kept\n" +
    "in the history (see history NAME, rollout undo NAME).",
  options: {
    ...SET_OPTIONS,
    "dry-run": { type: "boolean", description: "Print the plan; store nothing" },
    wait: { type: "boolean", description: "Wait until every targeted device runs it" },
    timeout: {
      type: "string",
      value: "DURATION",
      description: `How long --wait waits (default ${DEFAULT_WAIT_TIMEOUT})`,
    },
  },
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 0, "apply", "");
    const args = setArgs(values, "apply");
    const timeoutMs = parseDuration(stringOption(values, "timeout") ?? DEFAULT_WAIT_TIMEOUT);
    if (values.timeout !== undefined && !values.wait) {
      throw new UsageError("--timeout only makes sense with --wait", "apply");
    }
    const dryRun = values["dry-run"] === true;
    if (dryRun && values.wait) throw new UsageError("--dry-run cannot --wait", "apply");
    // Validate before connecting: an invalid file never touches NATS.
    const set = await loadSet(args.paths, io);
    if (dryRun) {
      // Buckets are only opened: a dry run creates nothing either.
      const plan = await withNats(
        values,
        io,
        async (nc) => planSet(set, await readStoredFleet(nc), args, io),
      );
      io.stdout(planTable(plan) + "Dry run: nothing was stored.\n");
      return EXIT.ok;
    }
    return await withNats(values, io, async (nc) => {
      const buckets = await ensureBuckets(nc);
      const rollouts = await ensureRolloutBuckets(nc);
      // Idempotent reads and writes survive a cluster node lost mid-command.
      const fleet = await retryWhileRecovering(() => readStoredFleet(nc, buckets));
      const plan = planSet(set, fleet, args, io);
      const followed: { name: string; revision: number }[] = [];
      // Stores first, deletions last: a deployment moving between files is never absent.
      const ordered = [
        ...plan.entries.filter((e) => e.action !== "deleted"),
        ...plan.entries.filter((e) => e.action === "deleted"),
      ];
      for (const entry of ordered) {
        const revision = await store(buckets, rollouts.history, entry, fleet.deployments);
        io.stdout(
          `deployment "${entry.name}" ${APPLIED[entry.action]}` +
            (entry.action === "deleted"
              ? ` (not in source "${entry.source}" any more)\n`
              : ` (revision ${revision})\n`),
        );
        if (entry.action !== "deleted") followed.push({ name: entry.name, revision });
      }
      if (!values.wait) return EXIT.ok;
      return await followAll(buckets, rollouts.rollouts, followed, timeoutMs, io);
    });
  },
};

/** Carries out one plan entry; the deployment's revision afterwards. */
async function store(
  buckets: Buckets,
  history: KV,
  entry: PlanEntry,
  stored: ReadonlyMap<string, { revision: number; manifest?: PlanEntry["manifest"] }>,
): Promise<number> {
  const key = deploymentKey(entry.name);
  const current = stored.get(entry.name);
  if (entry.action === "deleted") {
    await pruneDeployment(buckets.deployments, entry.name, current?.revision ?? 0);
    return current?.revision ?? 0;
  }
  const manifest = entry.manifest;
  if (manifest === undefined) throw new Error(`plan entry "${entry.name}" has no manifest`);
  if (entry.action === "unchanged") return current?.revision ?? 0;
  const revision = await retryWhileRecovering(() =>
    buckets.deployments.put(key, canonicalJson(manifest))
  );
  // With its summary against what it replaces (the operator records it too if this fails).
  await retryWhileRecovering(() =>
    recordRevision(history, historyEntry(manifest, revision, current?.manifest, new Date()))
  );
  return revision;
}

/**
 * Deletes `name` only if it is still the revision the plan saw: a deployment
 * edited or taken over by someone else since is not pruned (exit 1, nothing
 * of it lost). A retried delete that already landed is success.
 */
export async function pruneDeployment(kv: KV, name: string, revision: number): Promise<void> {
  const key = deploymentKey(name);
  try {
    await retryWhileRecovering(() => kv.delete(key, { previousSeq: revision }));
  } catch (e) {
    if (!/wrong last sequence/i.test((e as Error).message)) throw e;
    const now = await retryWhileRecovering(() => kv.get(key));
    if (now === null || now.operation !== "PUT") return;
    throw new OperationError(
      `Deployment "${name}" was not pruned: it changed since the plan was made ` +
        `(revision ${revision}, now ${now.revision}); run apply again`,
      [],
      { cause: e },
    );
  }
}

/**
 * `--wait` over several deployments: follows every rollout in parallel, then
 * reports each; exit 1 naming every one that did not succeed. One deployment
 * is followed as before, its progress line rewritten in place on a terminal.
 */
export async function followAll(
  buckets: Buckets,
  rollouts: KV,
  targets: readonly { name: string; revision: number }[],
  timeoutMs: number,
  io: CliIo,
): Promise<number> {
  const [only] = targets;
  if (only === undefined) return EXIT.ok;
  if (targets.length === 1) {
    return await follow(buckets, rollouts, only.name, only.revision, timeoutMs, io);
  }
  const results = await Promise.all(targets.map(async ({ name, revision }) => {
    const result = await followRollout(buckets, rollouts, name, revision, timeoutMs, io, false);
    try {
      reportWait(result, name, timeoutMs);
      return { name, result, error: undefined };
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      return { name, result, error: e };
    }
  }));
  const failed = results.filter((r) => r.error !== undefined);
  for (const { name, result, error } of results) {
    if (error === undefined && "view" in result && result.view !== undefined) {
      io.stdout(`${name}: rolled out, ${summaryCounts(result.view)}\n`);
    }
  }
  if (failed.length === 0) return EXIT.ok;
  throw new OperationError(
    `${failed.length} of ${targets.length} rollouts did not succeed: ` +
      failed.map((f) => f.name).join(", "),
    failed.flatMap((f) => [f.error!.message, ...f.error!.details.map((d) => `  ${d}`)]),
  );
}

/** Follows the rollout of `revision` (`--wait`), printing progress; the exit code. */
export async function follow(
  buckets: Buckets,
  rollouts: KV,
  name: string,
  revision: number,
  timeoutMs: number,
  io: CliIo,
): Promise<number> {
  return reportWait(
    await followRollout(buckets, rollouts, name, revision, timeoutMs, io, io.isTerminal),
    name,
    timeoutMs,
  );
}

/**
 * Follows one rollout, printing its progress: rewritten in place (`inPlace`,
 * one rollout on a terminal), else a line when it changes and every 10 s.
 */
async function followRollout(
  buckets: Buckets,
  rollouts: KV,
  name: string,
  revision: number,
  timeoutMs: number,
  io: CliIo,
  inPlace: boolean,
): Promise<WaitResult> {
  let lastPrint = 0;
  const result = await waitForRollout(buckets, name, revision, {
    timeoutMs,
    signal: io.signal,
    onProgress(line, changed) {
      if (inPlace) {
        if (changed) io.stdout(`\r\x1b[2K${line}`);
      } else if (changed || Date.now() - lastPrint >= 10_000) {
        io.stdout(`${line}\n`);
        lastPrint = Date.now();
      }
    },
  }, rollouts);
  if (inPlace) io.stdout("\n");
  if (result.kind === "done" && result.view.targeted === 0) {
    io.stderr(`warning: deployment "${name}" targets no device yet\n`);
  }
  return result;
}

function deviceLines(result: WaitResult, onlyFailed: boolean): string[] {
  if (!("view" in result) || result.view === undefined) return [];
  return result.view.devices
    .filter((d) => (onlyFailed ? d.phase === "failed" : d.phase !== "ready"))
    .slice(0, 20)
    // The message is the device's own text: escaped, it cannot drive the terminal.
    .map((d) => escapeControl(`${d.device_id}: ${d.phase}: ${d.message}`));
}

function reportWait(result: WaitResult, name: string, timeoutMs: number): number {
  switch (result.kind) {
    case "done":
      return EXIT.ok;
    case "failed":
      throw new OperationError(
        `Rollout of "${name}" failed: ${summaryCounts(result.view)}`,
        deviceLines(result, true),
      );
    case "rollout_failed": {
      const r = result.rollout;
      const how = r.state === "rolled_back"
        ? "was rolled back"
        : r.state === "paused"
        ? `paused in batch ${r.batch} of ${r.batches}`
        : "failed";
      throw new OperationError(
        escapeControl(`Rollout of "${name}" revision ${r.revision} ${how}: ${r.message}`),
        [
          ...failureLines(r.failures),
          ...(r.state === "paused"
            ? [`"rollout resume ${name}" continues, "rollout undo ${name}" goes back`]
            : []),
        ],
      );
    }
    case "superseded":
      throw new OperationError(
        `Rollout of "${name}" superseded: the deployment was changed again (revision ${result.revision})`,
      );
    case "interrupted":
      // Ctrl-C stops this command only: the operator keeps driving the rollout.
      throw new OperationError(`Stopped waiting for "${name}" (interrupted)`, [
        "the rollout carries on in the operator without this command",
        `follow it with: ${PROGRAM} rollout status ${name}`,
      ]);
    case "timeout": {
      const details = deviceLines(result, false);
      if (
        result.view === undefined || result.view.devices.every((d) => d.wanted_revision === null)
      ) {
        details.push('no desired state was written: is "drover-operator serve" running?');
      }
      throw new OperationError(
        `Rollout of "${name}" did not finish within ${timeoutMs / 1000}s` +
          (result.view ? `: ${summaryCounts(result.view)}` : ""),
        details,
      );
    }
  }
}
