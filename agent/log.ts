/**
 * Logging setup: one line per event on stderr, where journald picks it up and
 * adds its own timestamps. Text for people (default) or JSON lines for
 * machines (`DROVER_LOG_FORMAT=json`). Context fields (`device`,
 * `deployment`, `service`, `revision`) travel as LogTape properties. Every
 * line passes through `redactUrl`, so no server URL's credentials
 * (`nats://user:pass@host`) reach the journal, whoever logged them.
 *
 * @module
 */

import {
  configure,
  dispose,
  getJsonLinesFormatter,
  getLogger,
  getStreamSink,
  type Logger,
  type LogRecord,
  reset,
  type TextFormatter,
} from "@logtape/logtape";
import { type LogLevel, redactUrl } from "@drover/contracts";

/** Root category of every Drover log line. */
export const LOG_CATEGORY = "drover";

/** Output format of log lines. */
export type LogFormat = "text" | "json";

/** Options of {@linkcode setupLogging}. */
export interface LoggingOptions {
  level: LogLevel;
  format: LogFormat;
  /** Where lines go; default stderr. */
  writable?: WritableStream<Uint8Array>;
}

/** Returns the logger for `drover.<...sub>`. */
export function logger(...sub: string[]): Logger {
  return getLogger([LOG_CATEGORY, ...sub]);
}

/**
 * Renders one record as `LEVEL category: message key=value …`. No timestamp:
 * journald (or the terminal) adds one.
 */
export const textFormatter: TextFormatter = (record: LogRecord): string => {
  let message = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    message += i % 2 === 0 ? String(part) : renderValue(part);
  }
  const fields = Object.entries(record.properties)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${renderValue(v)}`);
  const level = record.level.toUpperCase();
  const head = `${level} ${record.category.join(".")}: ${message}`;
  return (fields.length > 0 ? `${head} ${fields.join(" ")}` : head) + "\n";
};

function renderValue(value: unknown): string {
  if (typeof value === "string") return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (value instanceof Error) return JSON.stringify(errorText(value));
  if (typeof value === "object" && value !== null) {
    try {
      return JSON.stringify(value);
    } catch {
      return String(value);
    }
  }
  return String(value);
}

/** An error's message followed by its `cause` chain, `a: b: c`. */
export function errorText(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    const text = current instanceof Error ? current.message : String(current);
    if (!parts.some((p) => p.includes(text))) parts.push(text);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(": ");
}

/**
 * Parses `DROVER_LOG_FORMAT`; anything other than `json` means text.
 */
export function parseLogFormat(value: string | undefined): LogFormat {
  return value?.trim().toLowerCase() === "json" ? "json" : "text";
}

/** Configures LogTape for the agent. Call once; {@linkcode closeLogging} flushes. */
export async function setupLogging(options: LoggingOptions): Promise<void> {
  const format: TextFormatter = options.format === "json"
    ? getJsonLinesFormatter({ categorySeparator: ".", message: "rendered", properties: "flatten" })
    : textFormatter;
  const formatter: TextFormatter = (record) => redactUrl(format(record));
  await configure({
    reset: true,
    sinks: {
      stderr: getStreamSink(options.writable ?? Deno.stderr.writable, {
        formatter,
        // Never close the process's stderr when logging is torn down.
        closeStream: false,
      }),
    },
    loggers: [
      { category: [LOG_CATEGORY], lowestLevel: options.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Flushes and tears down logging (before exit). */
export async function closeLogging(): Promise<void> {
  await dispose();
  await reset();
}
