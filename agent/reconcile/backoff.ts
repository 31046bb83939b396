/**
 * The deployments' backoff curve. The function itself is shared with every other retry loop
 * and lives in `@drover/common` (common/backoff.ts); it is re-exported beside the curve so the
 * reconcile modules take the curve and the function that reads it from one place.
 *
 * @module
 */

import type { BackoffOptions } from "@drover/common";

export { backoffDelay, type BackoffOptions } from "@drover/common";

/** Default backoff for failing deployments: 1 s doubling up to 2 minutes. */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = {
  baseMs: 1_000,
  capMs: 120_000,
  factor: 2,
  jitter: 0.2,
};
