/**
 * `rollout status|pause|resume|undo NAME`: where a deployment's staged
 * rollout stands, stop and continue it, or go back to an earlier revision.
 *
 * `pause` and `resume` change the stored rollout state with compare-and-set
 * on its KV revision, so they never overwrite a step the operator took
 * meanwhile (they re-read and try again). `undo` stores the manifest of an
 * earlier revision as a new revision, which rolls out like any other.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { canonicalJson, decodeJson, deploymentKey, DeploymentManifest } from "@drover/contracts";
import {
  type CliIo,
  type Command,
  EXIT,
  OperationError,
  type OptionValues,
  stringOption,
  UsageError,
} from "./cli.ts";
import { readFleet } from "../fleet/read.ts";
import { ensureBuckets, isWriteConflict, retryWhileRecovering } from "../nats/kv.ts";
import { historyEntry, readHistory, readRevision, recordRevision } from "../rollout/history.ts";
import { ensureRolloutBuckets, type RolloutBuckets, saveRolloutState } from "../rollout/store.ts";
import type { RolloutState } from "../rollout/state.ts";
import { rolloutReport, rolloutStatus } from "../rollout/view.ts";
import { jsonForTerminal } from "../views/render.ts";
import {
  deploymentNameArg,
  OUTPUT_OPTION,
  outputFormat,
  readRolloutState,
  withNats,
} from "./_shared.ts";
import { follow, waitOptions, waitTimeoutMs } from "./_wait.ts";

const ACTIONS = ["status", "pause", "resume", "undo"] as const;

/** The `rollout` command. */
export const rolloutCommand: Command = {
  name: "rollout",
  summary: "Show, pause, resume or undo a deployment's staged rollout",
  usage: "rollout status|pause|resume|undo NAME [-o json] [--to-revision N] [--wait]",
  description: "status: state (progressing, paused, complete, rolled_back, failed), current\n" +
    "batch, devices updated/ready/failed with the agents' messages; exits 1 when the\n" +
    "latest rollout was rolled back or failed. pause: no further batch starts (devices\n" +
    "keep what they have). resume: continues a paused rollout; its current batch gets\n" +
    "a fresh batch_timeout. undo: stores an earlier revision's manifest as a new revision\n" +
    "(default: the rollout's stable revision, else the one before the current), which then\n" +
    "rolls out like any other; --wait follows it as apply --wait does.",
  options: {
    ...OUTPUT_OPTION,
    "to-revision": { type: "string", value: "N", description: "undo: the revision to restore" },
    ...waitOptions("undo: wait until the restored revision is rolled out"),
  },
  connects: true,
  async run({ values, positionals, io }) {
    const [action, name, extra] = positionals;
    if (action === undefined || !(ACTIONS as readonly string[]).includes(action)) {
      throw new UsageError(
        action === undefined
          ? `Missing what to do (${ACTIONS.join(", ")})`
          : `Unknown rollout action "${action}": expected ${ACTIONS.join(", ")}`,
        "rollout",
      );
    }
    if (name === undefined) throw new UsageError("Missing deployment NAME", "rollout");
    if (extra !== undefined) throw new UsageError(`Unexpected argument "${extra}"`, "rollout");
    deploymentNameArg(name);
    const format = outputFormat(values, "rollout");
    if (action !== "undo") {
      for (const option of ["to-revision", "wait", "timeout"]) {
        if (values[option] !== undefined) {
          throw new UsageError(`--${option} only makes sense with undo`, "rollout");
        }
      }
    }
    return await withNats(values, io, async (nc) => {
      const buckets = await ensureRolloutBuckets(nc);
      switch (action) {
        case "status":
          return await status(nc, buckets, name, format, io.stdout);
        case "pause":
        case "resume":
          io.stdout(await pauseOrResume(buckets, name, action));
          return EXIT.ok;
        default:
          return await undo(nc, buckets, name, values, io);
      }
    });
  },
};

async function status(
  nc: NatsConnection,
  buckets: RolloutBuckets,
  name: string,
  format: "table" | "json",
  out: (text: string) => void,
): Promise<number> {
  const [fleet, stored] = await Promise.all([readFleet(nc), readRolloutState(buckets, name)]);
  const record = fleet.manifests.get(name);
  if (record === undefined) throw new OperationError(`Deployment "${name}" not found`);
  if (stored === undefined) {
    throw new OperationError(`No rollout of "${name}" recorded yet`, [
      'the operator records one for every revision: is "drover-operator serve" running?',
    ]);
  }
  const rollout = stored.state;
  // The manifest of the rollout's revision (the current one unless it was replaced since).
  const manifest = rollout.revision === record.revision && record.manifest !== undefined
    ? record.manifest
    : (await readRevision(buckets.history, name, rollout.revision))?.manifest;
  if (manifest === undefined) {
    throw new OperationError(`Revision ${rollout.revision} of "${name}" is not in the history`);
  }
  const stable = rollout.stable_revision === null
    ? undefined
    : (await readRevision(buckets.history, name, rollout.stable_revision))?.manifest;
  const view = rolloutStatus(rollout, manifest, stable, fleet, Date.now());
  out(format === "json" ? jsonForTerminal(view) : rolloutReport(view));
  return view.state === "rolled_back" || view.state === "failed" ? EXIT.failed : EXIT.ok;
}

/** Pauses or resumes the stored rollout (compare-and-set, retried on a conflict). */
async function pauseOrResume(
  buckets: RolloutBuckets,
  name: string,
  action: "pause" | "resume",
): Promise<string> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const stored = await readRolloutState(buckets, name);
    if (stored === undefined) throw new OperationError(`No rollout of "${name}" recorded yet`);
    const { state } = stored;
    const now = new Date().toISOString();
    let next: RolloutState;
    if (action === "pause") {
      if (state.state === "paused") return `rollout of "${name}" is already paused\n`;
      if (state.state !== "progressing") {
        throw new OperationError(
          `Cannot pause the rollout of "${name}": revision ${state.revision} is ${state.state}`,
        );
      }
      next = {
        ...state,
        state: "paused",
        paused_by: "user",
        message: `paused by a person in batch ${state.batch + 1} of ${state.batches}`,
        updated_at: now,
      };
    } else {
      if (state.state === "progressing") return `rollout of "${name}" is not paused\n`;
      if (state.state !== "paused") {
        throw new OperationError(
          `Cannot resume the rollout of "${name}": revision ${state.revision} is ${state.state}`,
          [`"rollout undo ${name}" or a new apply starts another rollout`],
        );
      }
      // The current batch starts over: a fresh timeout, and earlier failures are judged again.
      next = {
        ...state,
        state: "progressing",
        paused_by: null,
        failures: [],
        batch_started_at: now,
        batch_ready_at: null,
        message: `resumed in batch ${state.batch + 1} of ${state.batches}`,
        updated_at: now,
      };
    }
    try {
      await saveRolloutState(buckets.rollouts, next, stored.kvRevision);
      return `rollout of "${name}" revision ${state.revision} ${action}d ` +
        `(batch ${state.batch + 1} of ${state.batches})\n`;
    } catch (e) {
      if (!isWriteConflict(e)) throw e;
      // The operator took a step meanwhile: look again.
    }
  }
  throw new OperationError(`Cannot ${action} the rollout of "${name}": it keeps changing`);
}

async function undo(
  nc: NatsConnection,
  rollouts: RolloutBuckets,
  name: string,
  values: OptionValues,
  io: CliIo,
): Promise<number> {
  const text = stringOption(values, "to-revision");
  let target: number | undefined;
  if (text !== undefined) {
    if (!/^[0-9]+$/.test(text) || Number(text) < 1) {
      throw new UsageError(
        `Invalid --to-revision "${text}": expected a revision number`,
        "rollout",
      );
    }
    target = Number(text);
  }
  const timeoutMs = waitTimeoutMs(values, "rollout");
  const buckets = await ensureBuckets(nc);
  const key = deploymentKey(name);
  const stored = await retryWhileRecovering(() => buckets.deployments.get(key));
  if (stored === null || stored.operation !== "PUT") {
    throw new OperationError(`Deployment "${name}" not found`);
  }
  const current = decodeJson(DeploymentManifest, stored.value);
  if (target === undefined) {
    const state = (await readRolloutState(rollouts, name))?.state;
    const history = await readHistory(rollouts.history, name);
    target = state?.stable_revision ??
      history.filter((e) => e.revision < stored.revision).at(-1)?.revision;
    if (target === undefined || target === stored.revision) {
      throw new OperationError(`Deployment "${name}" has no earlier revision to go back to`);
    }
  }
  const entry = await readRevision(rollouts.history, name, target);
  if (entry === undefined) {
    const kept = (await readHistory(rollouts.history, name)).map((e) => e.revision);
    throw new OperationError(`Revision ${target} of "${name}" is not in the history`, [
      kept.length === 0 ? "no revisions are recorded" : `recorded: ${kept.join(", ")}`,
    ]);
  }
  let revision: number;
  try {
    // Only over the revision read above: an apply in between is not silently replaced.
    revision = await buckets.deployments.update(
      key,
      canonicalJson(entry.manifest),
      stored.revision,
    );
  } catch (e) {
    if (!isWriteConflict(e)) throw e;
    throw new OperationError(`Deployment "${name}" changed while undoing; nothing was stored`);
  }
  await recordRevision(
    rollouts.history,
    historyEntry(
      entry.manifest,
      revision,
      current.ok ? current.value : undefined,
      new Date(),
      `undo to revision ${target}: `,
    ),
    // `serve` may have recorded this revision a moment ago without knowing it is an undo.
    { replace: true },
  );
  io.stdout(`deployment "${name}" restored revision ${target} as revision ${revision}\n`);
  if (!values.wait) return EXIT.ok;
  return await follow(buckets, rollouts.rollouts, name, revision, timeoutMs, io);
}
