/**
 * Logging setup with LogTape: one line per event on stderr. Text for people
 * (default) or JSON lines (`DROVER_LOG_FORMAT=json`); level from
 * `DROVER_LOG_LEVEL` (`info` for `serve`, `warning` for one-shot commands).
 * Every line passes through `redactUrl`, so no server URL's credentials
 * (`nats://user:pass@host`) reach the log, whoever logged them.
 *
 * @module
 */

import {
  configure,
  dispose,
  getJsonLinesFormatter,
  getStreamSink,
  getTextFormatter,
  type LogLevel,
  type TextFormatter,
} from "@logtape/logtape";
import { redactUrl } from "@drover/contracts";

const LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

/** Configures logging for this process; `fallback` is used when the env gives no level. */
export async function setupLogging(
  env: (name: string) => string | undefined,
  fallback: LogLevel,
): Promise<void> {
  const wanted = env("DROVER_LOG_LEVEL");
  const level = LEVELS.includes(wanted as LogLevel) ? wanted as LogLevel : fallback;
  const format: TextFormatter = env("DROVER_LOG_FORMAT") === "json"
    ? getJsonLinesFormatter()
    : getTextFormatter({ timestamp: "date-time-tz" });
  const formatter: TextFormatter = (record) => redactUrl(format(record));
  await configure({
    reset: true,
    sinks: { stderr: getStreamSink(Deno.stderr.writable, { formatter }) },
    loggers: [
      { category: ["drover"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Flushes and closes the sinks. */
export async function closeLogging(): Promise<void> {
  await dispose();
}
