/**
 * `--wait` and `--timeout` (apply, rollout undo): the options, and following a rollout with
 * progress until it is done, failed or out of time.
 *
 * @module
 */

import type { KV } from "@nats-io/kv";
import {
  CliError,
  type CliIo,
  EXIT,
  OperationError,
  type OptionSpecs,
  type OptionValues,
  parseDuration,
  PROGRAM,
  stringOption,
  UsageError,
} from "./cli.ts";
import type { Buckets } from "../nats/kv.ts";
import { waitForRollout, type WaitResult } from "../rollout/follow.ts";
import { failureLines } from "../rollout/view.ts";
import { escapeControl, summaryCounts } from "../views/render.ts";

/** Default for `--timeout`. */
export const DEFAULT_WAIT_TIMEOUT = "120s";

/** `--wait` (described as `what`) and `--timeout DURATION`. */
export function waitOptions(what: string): OptionSpecs {
  return {
    wait: { type: "boolean", description: what },
    timeout: {
      type: "string",
      value: "DURATION",
      description: `How long --wait waits (default ${DEFAULT_WAIT_TIMEOUT})`,
    },
  };
}

/** `--timeout` in ms; a `--timeout` without `--wait` is a usage error of `command`. */
export function waitTimeoutMs(values: OptionValues, command: string): number {
  if (values.timeout !== undefined && !values.wait) {
    throw new UsageError("--timeout only makes sense with --wait", command);
  }
  return parseDuration(stringOption(values, "timeout") ?? DEFAULT_WAIT_TIMEOUT);
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
