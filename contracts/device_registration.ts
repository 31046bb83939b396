/**
 * The value of `devices/<device>`: the operator's registry entry for one
 * device. Only the operator's identity writes this bucket, so the labels here
 * — not the ones an agent reports about itself — decide which deployments a
 * label selector sends to the device.
 *
 * Like the other wire values it strips unknown keys, so an older operator can
 * read an entry written by a newer one.
 *
 * @module
 */

import { z } from "zod";
import { DeviceLabels } from "./labels.ts";

/** What the operator stores in `devices/<device>`. */
export const DeviceRegistration = z.object({
  /** Labels that deployment selectors match against. */
  labels: DeviceLabels,
  /** RFC 3339 UTC time of the last change to this entry. */
  updated_at: z.iso.datetime(),
});
/** What the operator stores in `devices/<device>`. */
export type DeviceRegistration = z.infer<typeof DeviceRegistration>;
