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
import { type Command, EXIT, OperationError, UsageError } from "./cli.ts";
import { type Buckets, ensureBuckets, retryWhileRecovering } from "../nats/kv.ts";
import { historyEntry, recordRevision } from "../rollout/history.ts";
import { ensureRolloutBuckets, type RolloutBuckets } from "../rollout/store.ts";
import { retryLine, retryStoppedRollout } from "../rollout/retry.ts";
import type { KV } from "@nats-io/kv";
import { expectPositionals, withNats } from "./_shared.ts";
import { followAll, waitOptions, waitTimeoutMs } from "./_wait.ts";
import { loadSet, planSet, planTable, readStoredFleet, SET_OPTIONS, setArgs } from "./_plan.ts";
import type { PlanEntry } from "../manifests/plan.ts";

/** How `apply` reports each action (kubectl's words). */
const APPLIED: Record<PlanEntry["action"], string> = {
  created: "created",
  changed: "configured",
  unchanged: "unchanged",
  retried: "retried",
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
    "Each manifest is stored with the current version of every secret it uses pinned\n" +
    "(secret_versions; secret set makes new revisions): one naming a secret the operator\n" +
    "does not have exits 3 the same way, naming the secret set command that adds it.\n" +
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
    ...waitOptions("Wait until every targeted device runs it"),
  },
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 0, "apply", "");
    const args = setArgs(values, "apply");
    const timeoutMs = waitTimeoutMs(values, "apply");
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
      const fleet = await retryWhileRecovering(() =>
        readStoredFleet(nc, { ...buckets, rollouts: rollouts.rollouts })
      );
      // Every manifest pins the current version of each secret it uses; a missing one refuses
      // the whole set (manifests/plan.ts).
      const plan = planSet(set, fleet, args, io);
      const followed: { name: string; revision: number }[] = [];
      // Stores first, deletions last: a deployment moving between files is never absent.
      const ordered = [
        ...plan.entries.filter((e) => e.action !== "deleted"),
        ...plan.entries.filter((e) => e.action === "deleted"),
      ];
      for (const entry of ordered) {
        const { revision, line } = await store(buckets, rollouts, entry, fleet.deployments);
        io.stdout(line);
        if (entry.action !== "deleted") followed.push({ name: entry.name, revision });
      }
      if (!values.wait) return EXIT.ok;
      return await followAll(buckets, rollouts.rollouts, followed, timeoutMs, io, nc);
    });
  },
};

/** Carries out one plan entry: the deployment's revision afterwards and the line saying so. */
async function store(
  buckets: Buckets,
  rollouts: RolloutBuckets,
  entry: PlanEntry,
  stored: ReadonlyMap<string, { revision: number; manifest?: PlanEntry["manifest"] }>,
): Promise<{ revision: number; line: string }> {
  const key = deploymentKey(entry.name);
  const current = stored.get(entry.name);
  const said = (revision: number, action = entry.action) => ({
    revision,
    line: `deployment "${entry.name}" ${APPLIED[action]}` +
      (action === "deleted"
        ? ` (not in source "${entry.source}" any more)\n`
        : ` (revision ${revision})\n`),
  });
  if (entry.action === "deleted") {
    await pruneDeployment(buckets.deployments, entry.name, current?.revision ?? 0);
    return said(current?.revision ?? 0);
  }
  const manifest = entry.manifest;
  if (manifest === undefined) throw new Error(`plan entry "${entry.name}" has no manifest`);
  if (entry.action === "unchanged") return said(current?.revision ?? 0);
  if (entry.action === "retried" && current !== undefined) {
    // A new attempt; compare-and-set on what the plan saw, re-checking that its rollout stopped.
    const retried = await retryStoppedRollout(
      buckets,
      rollouts,
      entry.name,
      current.revision,
      manifest,
    );
    if (retried === undefined) return said(current.revision, "unchanged");
    return { revision: retried.revision, line: retryLine(entry.name, retried) };
  }
  const revision = await retryWhileRecovering(() =>
    buckets.deployments.put(key, canonicalJson(manifest))
  );
  // With its summary against what it replaces (the operator records it too if this fails).
  await retryWhileRecovering(() =>
    recordRevision(
      rollouts.history,
      historyEntry(manifest, revision, current?.manifest, new Date()),
    )
  );
  return said(revision);
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
