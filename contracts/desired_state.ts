/**
 * The value of `desired-state/<device>.<deployment>`: what one device should
 * run for one deployment. Deleting or purging the key means "remove that
 * deployment from the device".
 *
 * @module
 */

import { z } from "zod";
import { Name, Score } from "./score.ts";

/** Desired state of one deployment on one device. */
export const DesiredState = z.object({
  deployment: Name,
  score: Score,
  /**
   * The revision of the manifest (`deployments/<deployment>`) this score was
   * last changed in: the deployment revision `apply` prints and `status`
   * shows. It only names the value; the agent echoes it in its status. An
   * agent that predates it drops it (wire objects strip unknown keys).
   */
  deployment_revision: z.number().int().positive().optional(),
});
/** Desired state of one deployment on one device. */
export type DesiredState = z.infer<typeof DesiredState>;
/** Desired state as written (before defaults are applied). */
export type DesiredStateInput = z.input<typeof DesiredState>;
