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
  /**
   * The device's xkey public key (written by `device add`, which writes its
   * seed with the device's other files): secrets are sealed to it. Absent for
   * a device provisioned before secrets existed; it gets no secrets.
   */
  sealing_key: z.string().regex(/^X[A-Z2-7]{55}$/, "expected an xkey public key (X…)").optional(),
  /** RFC 3339 UTC time of the last change to this entry. */
  updated_at: z.iso.datetime(),
});
/** What the operator stores in `devices/<device>`. */
export type DeviceRegistration = z.infer<typeof DeviceRegistration>;
