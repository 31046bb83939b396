/**
 * Helpers the command modules share: connecting with the shared options and
 * closing the connection however the command ends, and the `-o` option.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  type CliIo,
  type OptionSpecs,
  type OptionValues,
  stringOption,
  UsageError,
} from "./cli.ts";
import { connectNats } from "../nats/connection.ts";
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
