/**
 * Device labels (`site=lab`, `arch=arm64`). Deployment selectors match the
 * labels in the operator's device registry (`DeviceRegistration`), never the
 * ones a device reports in its own status.
 *
 * @module
 */

import { z } from "zod";

const KEY = /^[A-Za-z0-9]([A-Za-z0-9._\/-]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

/** A device label key. */
export const LabelKey = z.string().regex(
  KEY,
  "label keys are 1-63 letters, digits and . _ / -, starting and ending with a letter or digit",
);
/** A device label value (may be empty). */
export const LabelValue = z.string().regex(
  VALUE,
  "label values are at most 63 letters, digits and . _ -, starting and ending with a letter or digit",
);
/** A device's labels. */
export const DeviceLabels = z.record(LabelKey, LabelValue);
/** A device's labels. */
export type DeviceLabels = z.infer<typeof DeviceLabels>;

/** True when every `selector` label is present on the device with the same value. */
export function labelsMatch(
  selector: Record<string, string>,
  labels: Record<string, string>,
): boolean {
  return Object.entries(selector).every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v);
}
