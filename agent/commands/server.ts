/**
 * The agent's side of the device commands: one subscription on
 * `drover.cmd.<device>.*` (the only command subjects its NATS permissions let
 * it subscribe to), one reply per request on the reply subject the server
 * gave it (the only subject its response permission lets it answer on).
 * Commands: `ping`, `logs`, `events`, `purge-volumes` — request/reply only,
 * nothing pushed, no shell or exec (README, "Security model").
 *
 * @module
 */

import type { Msg, NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "@logtape/logtape";
import {
  type CommandError,
  DEVICE_COMMANDS,
  deviceCommandsSubject,
  type EventsReply,
  EventsRequest,
  type PingReply,
  PingRequest,
  type PurgeVolumesReply,
  PurgeVolumesRequest,
} from "@drover/contracts";
import { untilAborted, withinMs } from "@drover/common";
import { CommandFailure } from "./errors.ts";
import type { EventRing } from "./event_ring.ts";
import { type LogSource, readLogs } from "./logs.ts";

/** Commands handled at the same time at most; more are refused as `unavailable`. */
export const MAX_CONCURRENT_COMMANDS = 8;

/** Options of {@linkcode CommandServer}. */
export interface CommandServerOptions {
  deviceId: string;
  agentVersion: string;
  /** When the agent started (ms since the epoch). */
  startedAtMs: number;
  /** When the last reconcile pass succeeded (ms since the epoch), if ever. */
  lastReconcileAtMs: () => number | undefined;
  events: EventRing;
  logs: LogSource;
  /** `[policy] allow_logs` (absent = allowed). */
  allowLogs: boolean;
  /**
   * Removes the named volumes of a deployment this device no longer runs (volumes.ts);
   * absent: `purge-volumes` is answered `unavailable`.
   */
  purgeVolumes?: (deployment: string, signal?: AbortSignal) => Promise<PurgeVolumesReply>;
  log: Logger;
  now?: () => number;
}

/** Answers device commands. See the module documentation. */
export class CommandServer {
  readonly #options: CommandServerOptions;
  #active = 0;

  constructor(options: CommandServerOptions) {
    this.#options = options;
  }

  /** Serves commands on `nc` until `signal` aborts or the connection closes. */
  async serve(nc: NatsConnection, signal: AbortSignal): Promise<void> {
    const { deviceId, log } = this.#options;
    const sub = nc.subscribe(deviceCommandsSubject(deviceId), {
      callback: (err, msg) => {
        if (err) {
          log.warn("Device command subscription failed: {error}", { error: err.message });
          return;
        }
        void this.#answer(nc, msg, signal);
      },
    });
    await Promise.race([untilAborted(signal), nc.closed()]);
    if (!nc.isClosed()) sub.unsubscribe();
  }

  async #answer(nc: NatsConnection, msg: Msg, signal: AbortSignal): Promise<void> {
    if (!msg.reply) return; // a command nobody waits for is not worth running
    const command = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    let reply: unknown;
    if (this.#active >= MAX_CONCURRENT_COMMANDS) {
      reply = errorReply("unavailable", "The agent is busy with other commands; try again");
    } else {
      this.#active++;
      try {
        reply = await this.handle(command, msg.data, { nc, signal });
      } finally {
        this.#active--;
      }
    }
    try {
      msg.respond(new TextEncoder().encode(JSON.stringify(reply)));
    } catch (err) {
      this.#options.log.debug("Cannot answer device command {command}: {error}", {
        command,
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }

  /** The reply (or `{ error, code }`) to one command. Never throws. */
  async handle(
    command: string,
    data: Uint8Array,
    context: { nc?: NatsConnection; signal?: AbortSignal } = {},
  ): Promise<unknown> {
    try {
      const body = data.length === 0 ? {} : JSON.parse(new TextDecoder().decode(data));
      switch (command as typeof DEVICE_COMMANDS[number]) {
        case "ping":
          return await this.#ping(body, context.nc);
        case "events":
          return this.#events(body);
        case "logs":
          if (this.#options.allowLogs === false) {
            throw new CommandFailure(
              "forbidden",
              `Device "${this.#options.deviceId}" does not allow reading logs ` +
                "([policy] allow_logs = false)",
            );
          }
          return await readLogs(this.#options.logs, body, { signal: context.signal });
        case "purge-volumes": {
          const request = parseRequest(PurgeVolumesRequest, body, "purge-volumes");
          if (this.#options.purgeVolumes === undefined) {
            throw new CommandFailure("unavailable", "This agent cannot remove volumes");
          }
          return await this.#options.purgeVolumes(request.deployment, context.signal);
        }
        default:
          throw new CommandFailure(
            "bad_request",
            `Unknown command "${command}": expected one of ${DEVICE_COMMANDS.join(", ")}`,
          );
      }
    } catch (err) {
      if (err instanceof CommandFailure) return errorReply(err.code, err.message);
      if (err instanceof SyntaxError) return errorReply("bad_request", "Request is not JSON");
      const message = err instanceof Error ? err.message : String(err);
      this.#options.log.warn("Device command {command} failed: {error}", {
        command,
        error: message,
      });
      return errorReply("unavailable", message);
    }
  }

  async #ping(body: unknown, nc: NatsConnection | undefined): Promise<PingReply> {
    const request = parseRequest(PingRequest, body, "ping");
    const now = (this.#options.now ?? Date.now)();
    let rtt: number | null = null;
    if (nc !== undefined) {
      const measured = await withinMs(nc.rtt().catch(() => undefined), 1_000);
      if (typeof measured === "number") rtt = Math.round(measured * 1000) / 1000;
    }
    const last = this.#options.lastReconcileAtMs();
    return {
      device: this.#options.deviceId,
      agent_version: this.#options.agentVersion,
      started_at: new Date(this.#options.startedAtMs).toISOString(),
      uptime_seconds: Math.max(0, Math.round((now - this.#options.startedAtMs) / 1000)),
      last_reconcile_at: last === undefined ? null : new Date(last).toISOString(),
      nats_rtt_ms: rtt,
      ...(request.sent_at_ms !== undefined ? { sent_at_ms: request.sent_at_ms } : {}),
    };
  }

  #events(body: unknown): EventsReply {
    const request = parseRequest(EventsRequest, body, "events");
    const ring = this.#options.events;
    return {
      device: this.#options.deviceId,
      events: ring.list(request.after_seq ?? 0),
      dropped: ring.dropped,
    };
  }
}

function parseRequest<T>(
  schema: {
    safeParse(
      v: unknown,
    ): { success: true; data: T } | {
      success: false;
      error: { issues: { path: PropertyKey[]; message: string }[] };
    };
  },
  body: unknown,
  command: string,
): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const [issue] = parsed.error.issues;
  if (issue === undefined) {
    throw new Error(`zod reported a failed ${command} request without an issue`);
  }
  throw new CommandFailure(
    "bad_request",
    `Invalid ${command} request: ${issue.path.join(".") || "(root)"}: ${issue.message}`,
  );
}

function errorReply(code: CommandError["code"], error: string): CommandError {
  return { error: error.slice(0, 1000), code };
}
