/**
 * The operator's version, printed by `--version`. Kept equal to
 * `operator/deno.json` by `version_test.ts`.
 *
 * @module
 */

/** Version of this operator build. */
export const OPERATOR_VERSION = "0.1.0";
