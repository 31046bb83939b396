/**
 * The `logs` command: one chunk of one service's container logs per request,
 * read from podman's logs endpoint with timestamps.
 *
 * The agent keeps no state between reads. The cursor it hands back is the
 * time of the last line delivered and how many lines with exactly that time
 * were delivered; the next read asks podman for lines since that time (podman
 * includes lines at the same time) and skips those. Following (`-f`) is the
 * reader pulling again with the cursor; when nothing new is there the agent
 * polls podman for up to `wait_ms` before answering. So a slow or vanished
 * reader costs the device nothing: there is no buffer to fill and no session
 * to expire.
 *
 * @module
 */

import {
  type LogCursor,
  type LogLine,
  type LogsReply,
  LogsRequest,
  MAX_LOG_CHUNK_BYTES,
} from "@drover/contracts";
import { abortableSleep } from "@drover/common";
import type { LogFrame } from "../runtime/podman/log_frames.ts";
import { CommandFailure } from "./errors.ts";

/** How often a waiting read looks at podman again, in ms. */
export const LOG_POLL_INTERVAL_MS = 250;

/** Where the logs come from (podman in production, a fake in unit tests). */
export interface LogSource {
  /**
   * The container of `deployment`/`service` owned by this device, or
   * undefined when there is none.
   */
  find(
    deployment: string,
    service: string,
  ): Promise<{ id: string; state: string; exitCode?: number } | undefined>;
  /** Timestamped frames (`<RFC 3339> <text>`), as podman's logs endpoint gives them. */
  read(
    id: string,
    options: { tail?: number; since?: string; signal?: AbortSignal | undefined },
  ): Promise<LogFrame[]>;
}

/** Splits a timestamped frame into a line. Pure. Frames without a time keep an empty one. */
export function toLogLine(frame: LogFrame): LogLine {
  const text = frame.text.endsWith("\n") ? frame.text.slice(0, -1) : frame.text;
  const space = text.indexOf(" ");
  const stream = frame.stream === "stderr" ? "stderr" : "stdout";
  if (space > 0 && /^[0-9]{4}-[0-9]{2}-[0-9]{2}T/.test(text)) {
    return { time: text.slice(0, space), stream, text: text.slice(space + 1) };
  }
  return { time: "", stream, text };
}

/** The lines after `cursor` (lines at the cursor's time: the first `skip` were delivered). Pure. */
export function afterCursor(lines: readonly LogLine[], cursor: LogCursor | undefined): LogLine[] {
  if (cursor === undefined) return [...lines];
  let skip = cursor.skip;
  const cursorMs = Date.parse(cursor.time);
  const out: LogLine[] = [];
  for (const line of lines) {
    const ms = Date.parse(line.time);
    if (ms < cursorMs) continue; // podman gave more than asked (clock formats): already delivered
    if (ms === cursorMs && skip > 0) {
      skip--;
      continue;
    }
    out.push(line);
  }
  return out;
}

/**
 * The first lines of `lines` that fit `maxBytes` of text (at least one, cut
 * to fit), the cursor after them, and whether lines were left over. Pure.
 */
export function takeChunk(
  lines: readonly LogLine[],
  previous: LogCursor | undefined,
  maxBytes = MAX_LOG_CHUNK_BYTES,
): { lines: LogLine[]; cursor: LogCursor | null; more: boolean } {
  const encoder = new TextEncoder();
  const out: LogLine[] = [];
  let bytes = 0;
  for (const line of lines) {
    const size = encoder.encode(line.text).length + line.time.length + 16;
    if (out.length > 0 && bytes + size > maxBytes) break;
    // One line longer than a whole chunk is cut rather than never delivered.
    out.push(size > maxBytes ? { ...line, text: cutToBytes(line.text, maxBytes - 64) } : line);
    bytes += size;
  }
  let cursor: LogCursor | null = previous ?? null;
  for (const line of out) {
    if (line.time === "") continue;
    cursor = cursor !== null && cursor.time === line.time
      ? { time: line.time, skip: cursor.skip + 1 }
      : { time: line.time, skip: 1 };
  }
  return { lines: out, cursor, more: out.length < lines.length };
}

function cutToBytes(text: string, maxBytes: number): string {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= maxBytes) return text;
  return new TextDecoder().decode(bytes.subarray(0, maxBytes)).replace(/\uFFFD$/, "") +
    " [line cut]";
}

/**
 * How many lines at `time` in `log` (a read since `time`) come up to and
 * including the delivered lines at `time` (the end of `delivered`). With
 * identical lines written in the same second the last match wins. Pure.
 */
export function skipAfter(
  log: readonly LogLine[],
  delivered: readonly LogLine[],
  time: string,
): number {
  const atTime = log.filter((l) => l.time === time);
  const tail = delivered.filter((l) => l.time === time);
  const same = (a: LogLine, b: LogLine) => a.text === b.text && a.stream === b.stream;
  for (let end = atTime.length; end >= tail.length; end--) {
    if (
      tail.every((l, i) => {
        const at = atTime[end - tail.length + i];
        return at !== undefined && same(l, at);
      })
    ) return end;
  }
  return tail.length;
}

/** Options of {@linkcode readLogs}. */
export interface ReadLogsOptions {
  signal?: AbortSignal | undefined;
  /** Poll interval while waiting (ms). */
  pollMs?: number;
}

/**
 * Answers one `logs` request. Throws {@linkcode CommandFailure} with
 * `bad_request` or `not_found` (naming the deployment and service).
 */
export async function readLogs(
  source: LogSource,
  raw: unknown,
  options: ReadLogsOptions = {},
): Promise<LogsReply> {
  const parsed = LogsRequest.safeParse(raw);
  if (!parsed.success) {
    const [issue] = parsed.error.issues;
    if (issue === undefined) throw new Error("zod reported a failed logs request without an issue");
    throw new CommandFailure(
      "bad_request",
      `Invalid logs request: ${issue.path.join(".") || "(root)"}: ${issue.message}`,
    );
  }
  const request = parsed.data;
  const deadline = performance.now() + request.wait_ms;
  const pollMs = options.pollMs ?? LOG_POLL_INTERVAL_MS;
  while (true) {
    const container = await source.find(request.deployment, request.service);
    if (container === undefined) {
      if (request.cursor !== undefined && request.follow) {
        // It was there when the reader started: the log has ended.
        return { lines: [], cursor: request.cursor, end: true, more: false, state: "gone" };
      }
      throw new CommandFailure(
        "not_found",
        `No container for service "${request.service}" of deployment "${request.deployment}" ` +
          "on this device",
      );
    }
    const first = request.cursor === undefined;
    const frames = await source.read(container.id, {
      ...(first && request.tail !== undefined ? { tail: request.tail } : {}),
      ...(first && request.since !== undefined ? { since: request.since } : {}),
      ...(!first ? { since: request.cursor!.time } : {}),
      signal: options.signal,
    });
    const fresh = afterCursor(frames.map(toLogLine), request.cursor);
    const chunk = takeChunk(fresh, request.cursor);
    if (first && (request.tail !== undefined || request.since !== undefined) && chunk.cursor) {
      // A tail (or since) read started mid-log: lines before it may share the last
      // line's time, and the next read (since that time) returns them too. Count them.
      const again = (await source.read(container.id, {
        since: chunk.cursor.time,
        signal: options.signal,
      })).map(toLogLine);
      chunk.cursor = {
        time: chunk.cursor.time,
        skip: skipAfter(again, chunk.lines, chunk.cursor.time),
      };
    }
    const running = container.state === "running";
    const caughtUp = !chunk.more;
    if (chunk.lines.length > 0 || !request.follow || !running || performance.now() >= deadline) {
      return {
        lines: chunk.lines,
        cursor: chunk.cursor,
        // Not following: caught up is the end. Following: only a container that stopped.
        end: caughtUp && (!request.follow || !running),
        more: chunk.more,
        state: container.state,
        ...(!running && container.exitCode !== undefined ? { exit_code: container.exitCode } : {}),
      };
    }
    await abortableSleep(
      Math.min(pollMs, Math.max(0, deadline - performance.now())),
      options.signal,
    );
    if (options.signal?.aborted) {
      return { lines: [], cursor: chunk.cursor, end: false, more: false, state: container.state };
    }
    // The first read had no cursor: later polls must not repeat the tail.
    if (request.cursor === undefined && chunk.cursor !== null) request.cursor = chunk.cursor;
    if (request.cursor === undefined) {
      // Nothing was ever written: look from now on.
      request.cursor = { time: new Date().toISOString().replace(/\.\d+Z$/, "Z"), skip: 0 };
    }
  }
}
