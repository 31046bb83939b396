/**
 * Moved to `@drover/common` (common/sleep.ts), shared with the operator. This re-export only
 * serves agent/reconcile and agent/runtime until they import `@drover/common` themselves.
 *
 * @module
 */

export { abortableSleep } from "@drover/common";
