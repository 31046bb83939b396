/**
 * What the agent does about the version the operator wants. Pure.
 *
 * @module
 */

import { compareReleaseVersions, type ReleaseManifest } from "@drover/contracts";
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

/**
 * Why the agent running `running` refuses `manifest`, or undefined: a version
 * older than the running one is accepted only when signed as a rollback.
 * Pure.
 */
export function downgradeRefusal(
  manifest: Pick<ReleaseManifest, "version" | "rollback">,
  running: string,
): string | undefined {
  if (manifest.rollback === true) return undefined;
  if (compareReleaseVersions(manifest.version, running) >= 0) return undefined;
  return `release ${manifest.version} refused: it is older than the running ${running} and ` +
    `not signed as a rollback (agent publish --rollback)`;
}

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
