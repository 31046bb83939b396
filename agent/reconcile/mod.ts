/**
 * The agent's reconciliation core: desired entries and observed containers in,
 * the container runtime (podman, or the in-memory fake) brought to the desired
 * state, statuses out.
 *
 * - {@linkcode Reconciler}: the level-triggered loop the agent runs.
 * - {@linkcode plan} / {@linkcode toContainerSpec}: the pure planner.
 * - {@linkcode checkPolicy} / {@linkcode policyViolations}: device-side policy.
 * - {@linkcode backoffDelay}: capped exponential backoff with jitter.
 *
 * @module
 */

export type { DesiredEntry, DesiredSnapshot } from "./desired.ts";
export {
  type Action,
  type ActionReason,
  type CreateAction,
  hashKey,
  isAlwaysPull,
  isSatisfied,
  pickKeeper,
  plan,
  type PlanOptions,
  type PullAction,
  type RemoveAction,
  type StartAction,
  toContainerSpec,
} from "./plan.ts";
export { serviceHashes } from "./spec_hashes.ts";
export { checkPolicy, isUnderPath, policyViolations } from "./policy.ts";
export { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.ts";
export { deploymentStatus, type StatusInput, summariseDevice } from "./status.ts";
export { WorkQueue } from "./queue.ts";
export {
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_MAX_CONCURRENT,
  DEFAULT_MAX_STEPS_PER_PASS,
  DEFAULT_RESYNC_INTERVAL_MS,
  NotConvergedError,
  Reconciler,
  type ReconcilerOptions,
} from "./reconciler.ts";
