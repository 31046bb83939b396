/**
 * `apply --wait`: follow a rollout until every targeted device runs the new
 * revision. The decision (`rolloutOutcome`) is pure; `waitForRollout` feeds
 * it live bucket contents. A manifest with a `rollout` section is followed
 * through its stored rollout state instead: done when the rollout completes,
 * failed when it was rolled back, failed or paused by a failed batch.
 *
 * @module
 */

import { abortableSleep } from "@drover/common";
import type { DeploymentView } from "../fleet/aggregate.ts";
import { FleetState } from "../fleet/state.ts";
import { BucketMirror, type Buckets } from "../nats/kv.ts";
import { summaryCounts } from "../views/render.ts";
import { RolloutBook } from "./store.ts";
import { rolloutLine, rolloutStatus, type RolloutStatusView } from "./view.ts";
import type { KV } from "@nats-io/kv";

/** Where a rollout stands. */
export type RolloutOutcome =
  | { kind: "done" }
  | { kind: "waiting" }
  | { kind: "failed"; devices: DeploymentView["devices"] };

/**
 * Judges a rollout from the deployment's view. Done when every targeted
 * device is ready; failed when no device is still pending and some failed
 * (a pending device might yet succeed, so failures alone do not end it).
 */
export function rolloutOutcome(view: DeploymentView | undefined): RolloutOutcome {
  if (view === undefined) return { kind: "waiting" };
  if (view.ready === view.targeted) return { kind: "done" };
  if (view.pending === 0 && view.failed > 0) {
    return { kind: "failed", devices: view.devices.filter((d) => d.phase === "failed") };
  }
  return { kind: "waiting" };
}

/** The progress line: `web: 3/5 ready, 1 failed, 1 pending`. */
export function progressLine(name: string, view: DeploymentView | undefined): string {
  if (view === undefined) return `${name}: waiting for the operator to pick up the manifest`;
  return `${name}: ${summaryCounts(view)}`;
}

/** Options of {@linkcode waitForRollout}. */
export interface WaitOptions {
  /** Give up after this many ms. */
  timeoutMs: number;
  /** Called with the current line whenever progress changes, and at least every `tickMs`. */
  onProgress: (line: string, changed: boolean) => void;
  tickMs?: number;
  /** Recompute at most this often: thousands of heartbeats must not each cost a full view. */
  minIntervalMs?: number;
  signal?: AbortSignal;
}

/** How a wait ended. */
export type WaitResult =
  | { kind: "done"; view: DeploymentView }
  | { kind: "failed"; view: DeploymentView }
  | { kind: "timeout"; view: DeploymentView | undefined }
  | { kind: "superseded"; revision: number }
  | { kind: "rollout_failed"; rollout: RolloutStatusView }
  | { kind: "interrupted"; view: DeploymentView | undefined };

/**
 * Waits until the deployment stored at `revision` is ready on every
 * targeted device, has failed everywhere it is not ready, or time runs out.
 */
export async function waitForRollout(
  buckets: Buckets,
  name: string,
  revision: number,
  options: WaitOptions,
  rollouts?: KV,
): Promise<WaitResult> {
  const state = new FleetState();
  const book = new RolloutBook();
  let wake: (() => void) | undefined;
  let dirty = true;
  const changed = () => {
    dirty = true;
    wake?.();
  };
  const mirrors = [
    new BucketMirror(buckets.deployments, (e) => {
      if (e.key !== name) return;
      state.applyDeployment(e);
      changed();
    }),
    new BucketMirror(buckets.status, (e) => {
      state.applyStatus(e);
      changed();
    }),
    new BucketMirror(buckets.desired, (e) => {
      state.applyDesired(e);
      changed();
    }),
    new BucketMirror(buckets.devices, (e) => {
      state.applyRegistration(e);
      changed();
    }),
    ...(rollouts === undefined ? [] : [
      new BucketMirror(rollouts, (e) => {
        if (e.key === name && book.applyRollout(e)) changed();
      }),
    ]),
  ];
  const deadline = Date.now() + options.timeoutMs;
  const tickMs = options.tickMs ?? 1000;
  let lastLine = "";
  let view: DeploymentView | undefined;
  try {
    await Promise.all(mirrors.map((m) => m.ready));
    while (true) {
      dirty = false;
      const stored = state.manifests.get(name);
      if (stored !== undefined && stored.revision > revision) {
        return { kind: "superseded", revision: stored.revision };
      }
      view = stored?.revision === revision
        ? state.view(Date.now()).deployments.find((d) => d.name === name)
        : undefined;
      const staged = stored?.revision === revision && stored.manifest?.rollout !== undefined &&
        rollouts !== undefined;
      if (staged) {
        // Batch by batch: the stored rollout state says where it stands.
        const current = book.rollouts.get(name)?.state;
        const rollout = current?.revision === revision
          ? rolloutStatus(current, stored.manifest!, undefined, state, Date.now())
          : undefined;
        const line = rollout === undefined
          ? `${name}: waiting for the operator to start the rollout`
          : rolloutLine(rollout);
        options.onProgress(line, line !== lastLine);
        lastLine = line;
        if (rollout?.state === "complete") return { kind: "done", view: view! };
        if (
          rollout !== undefined &&
          (rollout.state === "rolled_back" || rollout.state === "failed" ||
            (rollout.state === "paused" && rollout.paused_by === "failure"))
        ) return { kind: "rollout_failed", rollout };
      }
      const line = progressLine(name, view);
      if (!staged) {
        options.onProgress(line, line !== lastLine);
        lastLine = line;
      }
      const outcome = staged ? { kind: "waiting" } : rolloutOutcome(view);
      if (outcome.kind === "done") return { kind: "done", view: view! };
      if (outcome.kind === "failed") return { kind: "failed", view: view! };
      if (options.signal?.aborted) return { kind: "interrupted", view };
      const left = deadline - Date.now();
      if (left <= 0) return { kind: "timeout", view };
      await abortableSleep(Math.min(options.minIntervalMs ?? 100, left), options.signal);
      if (dirty) continue;
      // Until the next change, the next tick, the deadline or an interrupt, whichever is first.
      const woken = new AbortController();
      wake = () => woken.abort();
      const stop = options.signal === undefined
        ? woken.signal
        : AbortSignal.any([woken.signal, options.signal]);
      await abortableSleep(Math.min(tickMs, Math.max(0, deadline - Date.now())), stop);
      wake = undefined;
    }
  } finally {
    await Promise.all(mirrors.map((m) => m.stop()));
  }
}
