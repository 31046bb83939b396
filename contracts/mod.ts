/**
 * Drover's wire contract: everything that crosses a process boundary between
 * agents, the operator and outside clients — KV bucket names and key formats,
 * container labels, and the zod schemas of every value (with inferred types).
 *
 * Depends on zod only and uses no Deno APIs, so any JavaScript runtime can use it.
 *
 * @module
 */

export * from "./names.ts";
export * from "./kv.ts";
export * from "./subjects.ts";
export * from "./device_commands.ts";
export * from "./image.ts";
export * from "./labels.ts";
export * from "./duration.ts";
export * from "./score.ts";
export * from "./workload.ts";
export * from "./desired_state.ts";
export * from "./secrets.ts";
export * from "./agent_status.ts";
export * from "./agent_update.ts";
export * from "./device_registration.ts";
export * from "./manifest.ts";
export * from "./agent_config.ts";
export * from "./spec_hash.ts";
export * from "./errors.ts";
export * from "./decode.ts";
export * from "./redact.ts";
export * from "./creds.ts";
