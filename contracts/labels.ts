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

/** `KEY=VALUE` split at the first `=`; undefined when there is no `=` or the key is empty. Pure. */
export function splitLabel(text: string): [key: string, value: string] | undefined {
  const eq = text.indexOf("=");
  return eq <= 0 ? undefined : [text.slice(0, eq), text.slice(eq + 1)];
}

/** What {@linkcode parseLabels} returns: the labels, or the problem with one argument. */
export type ParsedLabels =
  | { ok: true; labels: Record<string, string> }
  | { ok: false; problem: string };

/**
 * `KEY=VALUE` arguments as a label map (with `commas`, an argument may hold several:
 * `site=lab,arch=arm64`). A part that is not `KEY=VALUE`, or a key given twice, is a problem
 * that quotes it. Keys and values are not checked against {@linkcode DeviceLabels} here: a
 * selector may name any label. Pure.
 *
 * @example
 * ```ts
 * parseLabels(["site=lab,arch=arm64"], { commas: true }); // { ok: true, labels: { site: "lab", arch: "arm64" } }
 * parseLabels(["site"]); // { ok: false, problem: 'expected KEY=VALUE, got "site"' }
 * ```
 */
export function parseLabels(
  args: readonly string[],
  options: { commas?: boolean } = {},
): ParsedLabels {
  const labels: Record<string, string> = {};
  for (const part of options.commas ? args.flatMap((a) => a.split(",")) : args) {
    const pair = splitLabel(part);
    if (pair === undefined) {
      return { ok: false, problem: `expected KEY=VALUE, got ${JSON.stringify(part)}` };
    }
    const [key, value] = pair;
    if (Object.hasOwn(labels, key)) {
      return {
        ok: false,
        problem: `${JSON.stringify(key)} given twice in ${JSON.stringify(part)}`,
      };
    }
    labels[key] = value;
  }
  return { ok: true, labels };
}

/** Labels as `KEY=VALUE` strings, in the map's order. Pure. */
export function labelPairs(labels: Readonly<Record<string, string>>): string[] {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`);
}

/** Labels as `k=v,k2=v2` (or joined by `separator`); "" when there are none. Pure. */
export function formatLabels(labels: Readonly<Record<string, string>>, separator = ","): string {
  return labelPairs(labels).join(separator);
}
