/**
 * What the agent does about the version the operator wants. Pure.
 *
 * @module
 */

import type { RolledBack } from "./slots.ts";

/** The inputs of {@linkcode planUpdate}. */
export interface UpdateFacts {
  /** The release this process was started from (launcher), or undefined without the launcher. */
  running: string | undefined;
  /** The version the operator wants; null when no rollout names this device. */
  wanted: string | null;
  /** The last release that was rolled back on this device. */
  rolledBack: RolledBack | undefined;
  /** Releases refused in this process's life (bad signature, checksum), with why. */
  refused: ReadonlyMap<string, string>;
}

/** The next step. */
export type UpdateStep =
  | { kind: "idle" }
  | { kind: "failed"; message: string }
  | { kind: "fetch"; version: string };

/** Decides the next step (pure). */
export function planUpdate(facts: UpdateFacts): UpdateStep {
  const { wanted } = facts;
  if (wanted === null || wanted === facts.running) return { kind: "idle" };
  if (facts.running === undefined) {
    return {
      kind: "failed",
      message: `cannot update to ${wanted}: this agent was not started by drover-agent-launch ` +
        `(the systemd unit's ExecStart), so a new release would never be started`,
    };
  }
  if (facts.rolledBack?.version === wanted) {
    return {
      kind: "failed",
      message: `release ${wanted} was rolled back: ${facts.rolledBack.reason}`,
    };
  }
  const refused = facts.refused.get(wanted);
  if (refused !== undefined) return { kind: "failed", message: refused };
  return { kind: "fetch", version: wanted };
}
