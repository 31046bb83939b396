/**
 * Helpers the command modules share (command modules never import each other): connecting
 * with the shared options and closing the connection however the command ends, `-o`, the
 * auth directory, `-l` selectors, deployment name arguments and the stored rollout state.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { decodeJson, nameProblem, parseLabels, rolloutKey } from "@drover/contracts";
import {
  type CliIo,
  InvalidInputError,
  OperationError,
  type OptionSpecs,
  type OptionValues,
  stringOption,
  UsageError,
} from "./cli.ts";
import { join } from "node:path";
import { AUTH_FILES, AuthError } from "../auth/mod.ts";
import type { RolloutBuckets } from "../rollout/store.ts";
import { RolloutState } from "../rollout/state.ts";
import { type ConnectionSettings, connectNats } from "../nats/connection.ts";
import { connectionSettings } from "./connection_options.ts";

/** Runs `fn` with a NATS connection made from the shared options; always closes it. */
export async function withNats<T>(
  values: OptionValues,
  io: CliIo,
  fn: (nc: NatsConnection) => Promise<T>,
): Promise<T> {
  const settings = connectionSettings(values, io.env);
  const nc = await connectNats(settings, { name: "drover-operator-cli" });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

/** `-o table|json`. */
export const OUTPUT_OPTION: OptionSpecs = {
  output: {
    type: "string",
    short: "o",
    value: "FORMAT",
    description: '"table" for people (default) or "json" for scripts',
  },
};

/** Reads and checks `-o`. */
export function outputFormat(values: OptionValues, command: string): "table" | "json" {
  const format = stringOption(values, "output") ?? "table";
  if (format !== "table" && format !== "json") {
    throw new UsageError(`Invalid output format "${format}": expected "table" or "json"`, command);
  }
  return format;
}

/** Rejects extra positional arguments. */
export function expectPositionals(
  positionals: string[],
  count: 1,
  command: string,
  what: string,
): asserts positionals is [string];
export function expectPositionals(
  positionals: string[],
  count: number,
  command: string,
  what: string,
): void;
export function expectPositionals(
  positionals: string[],
  count: number,
  command: string,
  what: string,
): void {
  if (positionals.length < count) throw new UsageError(`Missing ${what}`, command);
  if (positionals.length > count) {
    throw new UsageError(`Unexpected argument "${positionals[count]}"`, command);
  }
}

/** `--dir`, shared by `auth` and `device`. */
export const AUTH_DIR_OPTION = {
  dir: {
    type: "string",
    value: "DIR",
    description: "Directory holding the keys and creds (env DROVER_AUTH_DIR)",
    path: { env: "DROVER_AUTH_DIR" },
  },
} as const;

/** Reads `--dir` (or `DROVER_AUTH_DIR`). */
export function authDir(
  values: OptionValues,
  env: (name: string) => string | undefined,
  command: string,
): string {
  const dir = stringOption(values, "dir") ?? env("DROVER_AUTH_DIR");
  if (dir === undefined || dir === "") {
    throw new UsageError("Missing --dir DIR (the auth directory)", command);
  }
  return dir;
}

/**
 * The shared connection settings; when no credentials of any kind are given
 * and the auth directory `dir` holds `operator.creds`, those are used: the
 * registry is writable only by the operator's identity.
 */
export async function registrySettings(
  values: OptionValues,
  env: (name: string) => string | undefined,
  dir: string | undefined,
): Promise<ConnectionSettings> {
  const settings = connectionSettings(values, env);
  if (settings.creds !== undefined || settings.user !== undefined) return settings;
  if (settings.token !== undefined) return settings;
  if (dir === undefined || dir === "") return settings;
  const creds = join(dir, AUTH_FILES.operatorCreds);
  try {
    if ((await Deno.stat(creds)).isFile) settings.creds = creds;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return settings;
}

/** Maps the auth module's errors to CLI errors with the right exit code. */
export function cliAuthError(e: unknown): unknown {
  if (e instanceof AuthError) return new OperationError(e.message, [], { cause: e });
  return e;
}

/** `-l k=v,k2=v2` (repeatable) as a label map, or undefined without `-l`. */
export function labelSelector(
  value: string | boolean | string[] | undefined,
  command: string,
): Record<string, string> | undefined {
  if (value === undefined || typeof value === "boolean") return undefined;
  const parsed = parseLabels(Array.isArray(value) ? value : [value], { commas: true });
  if (!parsed.ok) throw new UsageError(`Invalid selector: ${parsed.problem}`, command);
  return parsed.labels;
}

/** Checks a deployment name argument. @throws {InvalidInputError} */
export function deploymentNameArg(name: string): string {
  const problem = nameProblem(name);
  if (problem) throw new InvalidInputError(`Invalid deployment name "${name}": ${problem}`);
  return name;
}

/** The stored rollout state of `name` with its KV revision, or undefined. */
export async function readRolloutState(
  buckets: RolloutBuckets,
  name: string,
): Promise<{ state: RolloutState; kvRevision: number } | undefined> {
  const entry = await buckets.rollouts.get(rolloutKey(name));
  if (entry === null || entry.operation !== "PUT") return undefined;
  const decoded = decodeJson(RolloutState, entry.value);
  if (!decoded.ok) {
    throw new OperationError(`The stored rollout state of "${name}" is invalid`, [decoded.error]);
  }
  return { state: decoded.value, kvRevision: entry.revision };
}
