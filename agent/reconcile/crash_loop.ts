/**
 * Crash loops, decided from one observation. Pure.
 *
 * A service whose container keeps dying is not "pending" and not, in the
 * moments it happens to run, "ready": podman's restart policy restarts it (on
 * podman 4.3 at once and forever, about 13 times a second for `exit 3`), so
 * its state flips while nothing converges. A container that the runtime has
 * restarted at least {@linkcode CRASH_LOOP_MIN_RESTARTS} times is crash-looping
 * until it has run for {@linkcode CRASH_LOOP_HEALTHY_MS} without a restart.
 * The deployment is then `failed`, with the last exit code and the restart
 * count, and the reconciler looks again when the window could have passed.
 *
 * The restart count is the runtime's (podman's `RestartCount`), summed up by
 * {@linkcode tallyRestarts}: podman sets it back to 0 when a container is
 * started through the API (as the agent does for one it finds stopped), which
 * would hide a loop. A container that crashed twice last week and has run
 * since is healthy; one that crashes again is failed for the next 30 s.
 *
 * @module
 */

import type { ObservedContainer } from "../runtime/runtime.ts";

/** How long a crash-looping container must run without a restart to count as healthy, in ms. */
export const CRASH_LOOP_HEALTHY_MS = 30_000;
/** Restarts by the runtime's restart policy from which a dying container is a crash loop. */
export const CRASH_LOOP_MIN_RESTARTS = 2;

/** A container that keeps dying. */
export interface CrashLoop {
  /** Restarts by the runtime so far. */
  restarts: number;
  /** Exit code of its last death, when known. */
  exitCode?: number;
  /** In how many ms it counts as healthy if it keeps running (look again then). */
  healthyInMs: number;
}

/**
 * The crash loop `container` is in at `nowMs`, or `undefined` when it is not in
 * one: fewer than {@linkcode CRASH_LOOP_MIN_RESTARTS} restarts, or running for
 * at least `healthyMs` since its last (re)start.
 */
export function crashLoop(
  container: ObservedContainer,
  nowMs: number,
  healthyMs: number = CRASH_LOOP_HEALTHY_MS,
): CrashLoop | undefined {
  const restarts = container.restarts ?? 0;
  if (restarts < CRASH_LOOP_MIN_RESTARTS) return undefined;
  const exitCode = container.exitCode !== undefined ? { exitCode: container.exitCode } : {};
  if (container.state === "running" && container.startedAtMs !== undefined) {
    const up = Math.max(0, nowMs - container.startedAtMs);
    if (up >= healthyMs) return undefined;
    return { restarts, ...exitCode, healthyInMs: healthyMs - up };
  }
  // Between two restarts, or the runtime gave up on it: healthy only after a full window.
  return { restarts, ...exitCode, healthyInMs: healthyMs };
}

/** The status line of a crash-looping service, e.g. for `web` after 12 restarts of `exit 3`. */
export function crashLoopMessage(
  service: string,
  loop: CrashLoop,
  healthyMs: number = CRASH_LOOP_HEALTHY_MS,
): string {
  const code = loop.exitCode !== undefined ? `exit code ${loop.exitCode}, ` : "";
  return `service "${service}" keeps exiting (${code}${loop.restarts} restarts); ` +
    `failed until it runs ${Math.round(healthyMs / 1000)} s without a restart`;
}

/** The runtime's last restart count of one container, and Drover's running total. */
export interface RestartTally {
  raw: number;
  total: number;
}

/**
 * Restart counts that only grow: `observed` with `restarts` replaced by the
 * running total kept in `tallies` (updated in place for these containers; a
 * container not in `observed` should be dropped by the caller). A raw count
 * lower than last time means the runtime reset it on a start: the new raw
 * restarts are added on top.
 */
export function tallyRestarts(
  tallies: Map<string, RestartTally>,
  observed: readonly ObservedContainer[],
): ObservedContainer[] {
  return observed.map((c) => {
    if (c.restarts === undefined) return c;
    const previous = tallies.get(c.id);
    const total = previous === undefined
      ? c.restarts
      : previous.total + (c.restarts >= previous.raw ? c.restarts - previous.raw : c.restarts);
    tallies.set(c.id, { raw: c.restarts, total });
    return total === c.restarts ? c : { ...c, restarts: total };
  });
}
