/**
 * What the reconciler tells the outside about what happened (the device's
 * event ring behind `operator events`, and metrics): the hook, and the pure
 * functions that turn two observations of a deployment into events.
 *
 * Health: when observed containers carry a health state (`health`), a change
 * of it becomes a `health_changed` event here; nothing else needs wiring.
 *
 * @module
 */

import { type DeviceEvent, LABELS } from "@drover/contracts";
import type { ObservedContainer } from "../runtime/runtime.ts";
import { CRASH_LOOP_HEALTHY_MS, crashLoop } from "./crash_loop.ts";
import type { PolicyViolation } from "./policy.ts";

/** An event as the reconciler reports it; the ring adds `seq` and `time`. */
export type DeviceEventInput = Omit<DeviceEvent, "seq" | "time">;

/** Hooks of the reconciler for events and metrics; each is optional and must not throw. */
export interface ReconcileObserver {
  /** Something happened to a deployment or container. */
  event?(event: DeviceEventInput): void;
  /** One reconcile pass of `deployment` ended (`ok`: converged) after `durationMs`. */
  pass?(deployment: string, durationMs: number, ok: boolean): void;
}

function health(c: ObservedContainer): string | undefined {
  const h = (c as { health?: unknown }).health;
  return typeof h === "string" ? h : undefined;
}

/**
 * The revision people see for a container: its deployment revision
 * (`drover.revision` of a container that also has `drover.kv-revision`),
 * else the KV revision an older agent labelled it with. Pure.
 */
export function shownRevision(c: ObservedContainer): number {
  if (c.labels[LABELS.kvRevision] === undefined) return c.revision;
  const revision = Number(c.labels[LABELS.revision]);
  return Number.isSafeInteger(revision) && revision > 0 ? revision : c.revision;
}

/**
 * Events between two observations of one deployment's containers: a
 * container that died (left `running`, or restarted by its policy), one that
 * disappeared without this agent removing it (`removedByAgent`), a health
 * change, and a crash loop that began (`reported` holds container ids whose
 * crash loop was already reported; updated). Pure apart from `reported`.
 */
export function observationEvents(
  deployment: string,
  before: readonly ObservedContainer[],
  after: readonly ObservedContainer[],
  options: {
    removedByAgent: ReadonlySet<string>;
    reported: Set<string>;
    nowMs: number;
    healthyMs?: number;
  },
): DeviceEventInput[] {
  const events: DeviceEventInput[] = [];
  const now = new Map(after.map((c) => [c.id, c]));
  const base = (c: ObservedContainer) => ({
    deployment,
    service: c.service,
    revision: shownRevision(c),
  });
  for (const old of before) {
    const c = now.get(old.id);
    if (c === undefined) {
      if (!options.removedByAgent.has(old.id)) {
        events.push({
          ...base(old),
          kind: "container_missing",
          message: `container ${old.name} disappeared (removed outside Drover)`,
        });
      }
      options.reported.delete(old.id);
      continue;
    }
    const restarted = (c.restarts ?? 0) > (old.restarts ?? 0);
    if ((old.state === "running" && c.state !== "running") || restarted) {
      events.push({
        ...base(c),
        kind: "container_died",
        ...(c.exitCode !== undefined ? { exit_code: c.exitCode } : {}),
        message: `container ${c.name} exited` +
          (c.exitCode !== undefined ? ` with code ${c.exitCode}` : "") +
          (restarted ? ` (restarted by its policy, ${c.restarts} restarts)` : ""),
      });
    }
    const h0 = health(old), h1 = health(c);
    if (h1 !== undefined && h0 !== h1) {
      events.push({
        ...base(c),
        kind: "health_changed",
        message: `container ${c.name} is ${h1}` + (h0 !== undefined ? ` (was ${h0})` : ""),
      });
    }
  }
  for (const c of after) {
    const loop = crashLoop(c, options.nowMs, options.healthyMs ?? CRASH_LOOP_HEALTHY_MS);
    if (loop === undefined) {
      options.reported.delete(c.id);
      continue;
    }
    if (options.reported.has(c.id)) continue;
    options.reported.add(c.id);
    events.push({
      ...base(c),
      kind: "crash_loop",
      ...(loop.exitCode !== undefined ? { exit_code: loop.exitCode } : {}),
      message: `service ${c.service} keeps exiting (${loop.restarts} restarts)`,
    });
  }
  return events;
}

/** Policy refusals that are new since `before` (per deployment, by message). Pure. */
export function policyEvents(
  before: ReadonlyMap<string, readonly PolicyViolation[]>,
  after: ReadonlyMap<string, readonly PolicyViolation[]>,
  revisionOf: (deployment: string) => number | undefined,
): DeviceEventInput[] {
  const events: DeviceEventInput[] = [];
  for (const [deployment, list] of after) {
    const text = list.map((v) => v.message).join("; ");
    const old = before.get(deployment)?.map((v) => v.message).join("; ");
    if (list.length === 0 || text === old) continue;
    const revision = revisionOf(deployment);
    events.push({
      kind: "policy_refused",
      deployment,
      ...(revision !== undefined ? { revision } : {}),
      // Secrets it cannot open are refused the same way, but no `[policy]` rule says so.
      message: list.every((v) => v.rule === "secrets")
        ? `refused: ${text}`
        : `refused by device policy: ${text}`,
    });
  }
  return events;
}
