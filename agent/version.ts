/**
 * The agent's version, reported in every status (`agent_version`) and by `--version`.
 *
 * Kept in sync with `agent/deno.json` by `version_test.ts`.
 *
 * @module
 */

/** Version of this agent build. */
export const AGENT_VERSION = "0.1.0";
