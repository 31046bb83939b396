/**
 * `logs DEVICE DEPLOYMENT[/SERVICE]` and `logs -l k=v DEPLOYMENT[/SERVICE]`:
 * a container's logs from the device, over the device's own NATS connection
 * (nothing is opened on the device), like `kubectl logs` and `stern`.
 *
 * Each request returns one chunk and a cursor; the CLI asks again until the
 * device says `end`. With `-f` the device waits briefly for new lines before
 * answering, and the CLI keeps asking: the device buffers nothing for a slow
 * reader. A device that stops answering is an error (exit 1) that says when
 * it was last seen — never confused with the end of the log.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { abortableSleep } from "@drover/common";
import {
  formatLabels,
  type LogCursor,
  type LogLine,
  type LogsRequest,
  MAX_LOG_TAIL,
  nameProblem,
} from "@drover/contracts";
import {
  type CliIo,
  type Command,
  EXIT,
  InvalidInputError,
  OperationError,
  parseDuration,
  stringOption,
  UsageError,
} from "./cli.ts";
import type { FleetState } from "../fleet/state.ts";
import { checkDeviceId, noSuchDevice, readFleetOnce, requestLogChunk } from "./_device.ts";
import { labelSelector, withNats } from "./_shared.ts";
import { escapeControl, escapeLogLine } from "../views/render.ts";

/** How long the device waits for new lines in one `-f` request before answering, in ms. */
export const FOLLOW_WAIT_MS = 5_000;

/** The `logs` command. */
export const logsCommand: Command = {
  name: "logs",
  summary: "Print a service's container logs from a device (or every selected device)",
  usage: "logs DEVICE DEPLOYMENT[/SERVICE] [--tail N] [--since 10m] [-f]\n" +
    "       logs -l k=v[,k=v] DEPLOYMENT[/SERVICE] [--tail N] [--since 10m] [-f]",
  description: "SERVICE may be left out when the deployment has one service. With -l, every " +
    "device whose registry labels match is read at once and each line is prefixed with the " +
    "device id. The container's stderr goes to stderr. A device that does not answer within " +
    "a few seconds is reported with when it was last seen (exit 1). A device whose " +
    "[policy] allow_logs = false refuses. With -f, a container its restart policy restarts is " +
    "followed across restarts (a note on stderr); one that stays stopped for 5 s, or has " +
    "restart: no, ends the command with its exit code (exit 1). Control characters in a line " +
    "(escape sequences, carriage returns) are printed escaped (\\u001b, \\r), TAB as it is; " +
    "--raw prints the bytes the container wrote.",
  options: {
    tail: {
      type: "string",
      value: "N",
      description: "Only the last N lines (-1, as kubectl: every line)",
    },
    since: {
      type: "string",
      value: "DURATION|TIME",
      description: 'Only lines newer than this ("10m", "1h") or an RFC 3339 time',
    },
    follow: { type: "boolean", short: "f", description: "Keep printing new lines (Ctrl-C stops)" },
    selector: {
      type: "string",
      short: "l",
      multiple: true,
      value: "k=v",
      description: "Every device whose registry labels match (repeatable, or k=v,k2=v2)",
    },
    timestamps: { type: "boolean", description: "Prefix each line with its time" },
    raw: {
      type: "boolean",
      description: "Print lines as the container wrote them (control characters unescaped)",
    },
  },
  connects: true,
  async run({ values, positionals, io }) {
    const selector = labelSelector(values.selector, "logs");
    const expected = selector === undefined ? 2 : 1;
    if (positionals.length < expected) {
      throw new UsageError(missingTargetMessage(positionals, selector !== undefined), "logs");
    }
    if (positionals.length > expected) {
      throw new UsageError(`Unexpected argument "${positionals[expected]}"`, "logs");
    }
    // The count was checked above: both are there.
    const device = selector === undefined ? checkDeviceId(positionals[0]!) : undefined;
    const [deployment, serviceArg] = splitTarget(positionals[expected - 1]!);
    const base = firstRequest(values);
    const timestamps = values.timestamps === true;
    const raw = values.raw === true;
    return await withNats(values, io, async (nc) => {
      const fleet = await readFleetOnce(nc);
      if (device !== undefined && !fleet.registry.has(device) && !fleet.statuses.has(device)) {
        throw noSuchDevice(device, [...fleet.registry.keys(), ...fleet.statuses.keys()]);
      }
      const service = resolveService(fleet, deployment, serviceArg);
      // A service its runtime restarts is followed across restarts; one that runs once is not.
      const restarts = fleet.manifests.get(deployment)?.manifest?.score.services
        .find((s) => s.name === service)?.restart !== "no";
      const devices = device !== undefined ? [device] : selectDevices(fleet, selector!);
      const request = { ...base, deployment, service };
      const [one] = devices;
      if (one !== undefined && devices.length === 1 && selector === undefined) {
        await followDevice(nc, one, request, io, { prefix: "", timestamps, restarts, raw });
        return EXIT.ok;
      }
      const width = Math.max(...devices.map((d) => d.length));
      const results = await Promise.allSettled(
        devices.map((d) =>
          followDevice(nc, d, request, io, {
            prefix: `${d.padEnd(width)} | `,
            timestamps,
            restarts,
            raw,
          })
        ),
      );
      let failed = 0;
      for (const r of results) {
        if (r.status === "rejected") {
          failed++;
          const message = r.reason instanceof Error ? r.reason.message : String(r.reason);
          io.stderr(`${escapeLogLine(message)}\n`);
        }
      }
      return failed === 0 ? EXIT.ok : EXIT.failed;
    });
  },
};

/** Which of DEVICE and DEPLOYMENT the command line lacks, naming what was given. Pure. */
export function missingTargetMessage(positionals: readonly string[], selected: boolean): string {
  const [first] = positionals;
  if (selected || first !== undefined) {
    const given = selected ? "the devices by -l" : `device "${first}"`;
    return `Missing DEPLOYMENT (${given} given): logs ${
      selected ? "-l k=v" : first
    } DEPLOYMENT[/SERVICE]`;
  }
  return "Missing DEVICE and DEPLOYMENT: logs DEVICE DEPLOYMENT[/SERVICE]";
}

/** `DEPLOYMENT[/SERVICE]`. */
function splitTarget(text: string): [string, string | undefined] {
  const [deployment = "", service, extra] = text.split("/");
  if (extra !== undefined) {
    throw new InvalidInputError(
      `Invalid target "${text}": expected DEPLOYMENT or DEPLOYMENT/SERVICE`,
    );
  }
  for (const [what, name] of [["deployment", deployment], ["service", service]] as const) {
    if (name === undefined) continue;
    const problem = nameProblem(name);
    if (problem) throw new InvalidInputError(`Invalid ${what} name "${name}": ${problem}`);
  }
  return [deployment, service];
}

function firstRequest(
  values: Record<string, unknown>,
): Omit<LogsRequest, "deployment" | "service"> {
  const tailText = stringOption(values as never, "tail");
  const sinceText = stringOption(values as never, "since");
  const follow = values.follow === true;
  const request: Omit<LogsRequest, "deployment" | "service"> = { follow };
  // kubectl's --tail -1 means every line, as no --tail does.
  if (tailText !== undefined && Number(tailText) !== -1) {
    const tail = Number(tailText);
    if (Number.isInteger(tail) && tail < 0) {
      // `tail -5` habit: say what was meant rather than read it as "all".
      throw new UsageError(
        `Invalid --tail ${tailText}: a count of lines is not negative; for the last ` +
          `${-tail} lines use --tail ${-tail} (--tail -1, or no --tail, prints every line)`,
        "logs",
      );
    }
    if (!Number.isInteger(tail) || tail > MAX_LOG_TAIL) {
      throw new UsageError(`Invalid --tail "${tailText}": expected 0 to ${MAX_LOG_TAIL}`, "logs");
    }
    request.tail = tail;
  }
  if (sinceText !== undefined) {
    request.since = /^[0-9]{4}-/.test(sinceText)
      ? new Date(sinceText).toISOString()
      : new Date(Date.now() - parseDuration(sinceText)).toISOString();
    if (request.since === "Invalid Date") {
      throw new UsageError(`Invalid --since "${sinceText}"`, "logs");
    }
  }
  return request;
}

/** The service to read: named, or the deployment's only one. */
function resolveService(
  fleet: FleetState,
  deployment: string,
  service: string | undefined,
): string {
  const stored = fleet.manifests.get(deployment);
  if (stored === undefined) throw new OperationError(`Deployment "${deployment}" not found`);
  const services = stored.manifest?.score.services.map((s) => s.name) ?? [];
  if (service !== undefined) {
    if (stored.manifest !== undefined && !services.includes(service)) {
      throw new OperationError(
        `Deployment "${deployment}" has no service "${service}" (it has: ${services.join(", ")})`,
      );
    }
    return service;
  }
  const [only] = services;
  if (only !== undefined && services.length === 1) return only;
  throw new UsageError(
    `Deployment "${deployment}" has ${services.length} services (${services.join(", ")}): ` +
      `name one as ${deployment}/SERVICE`,
    "logs",
  );
}

/** Devices whose registry labels match every pair of `selector`, sorted. */
function selectDevices(fleet: FleetState, selector: Record<string, string>): string[] {
  const out: string[] = [];
  for (const [id, record] of fleet.registry) {
    const labels = record.labels ?? {};
    if (Object.entries(selector).every(([k, v]) => labels[k] === v)) out.push(id);
  }
  if (out.length === 0) {
    const text = formatLabels(selector);
    throw new OperationError(`No registered device matches ${text}`);
  }
  return out.sort();
}

/** Reads one device's log chunk by chunk until its end (or Ctrl-C while following). */
async function followDevice(
  nc: NatsConnection,
  device: string,
  first: LogsRequest,
  io: CliIo,
  options: { prefix: string; timestamps?: boolean; restarts?: boolean; raw?: boolean },
): Promise<void> {
  let cursor: LogCursor | undefined;
  let request: LogsRequest = { ...first, wait_ms: 0 };
  /** Since when the followed container has been seen stopped (ms), while its restart is awaited. */
  let stoppedSince: number | undefined;
  while (!io.signal.aborted) {
    const reply = await requestLogChunk(nc, device, request);
    printLines(reply.lines, io, options.prefix, options.timestamps === true, options.raw === true);
    if (reply.cursor !== null) cursor = reply.cursor;
    if (reply.state === "running") stoppedSince = undefined;
    if (reply.end && first.follow && reply.state !== "running") {
      const gone = reply.state === undefined || reply.state === "gone";
      const now = Date.now();
      if (options.restarts && !gone && now - (stoppedSince ?? now) < RESTART_WAIT_MS) {
        // Its restart policy brings it back (a crash loop does, again and again): go on.
        if (stoppedSince === undefined) {
          stoppedSince = now;
          io.stderr(
            `${options.prefix}${
              escapeControl(followRestart(reply.state ?? "stopped", reply.exit_code))
            }\n`,
          );
        }
        await abortableSleep(RESTART_POLL_MS, io.signal);
        request = {
          deployment: first.deployment,
          service: first.service,
          follow: true,
          ...(cursor !== undefined ? { cursor } : {}),
          wait_ms: 0,
        };
        continue;
      }
      // The container stopped under the reader for good: say so, and fail (a script notices).
      throw new OperationError(`${options.prefix}${followEnded(reply.state, reply.exit_code)}`);
    }
    if (reply.end) return;
    if (!first.follow && !reply.more) return;
    request = {
      deployment: first.deployment,
      service: first.service,
      follow: first.follow,
      ...(cursor !== undefined ? { cursor } : {}),
      // Catching up: answer at once; caught up while following: wait on the device.
      wait_ms: first.follow && !reply.more ? FOLLOW_WAIT_MS : 0,
    };
    if (cursor === undefined && !first.follow) return;
  }
}

/** How long `logs -f` waits for a stopped container its restart policy should bring back. */
export const RESTART_WAIT_MS = 5_000;
const RESTART_POLL_MS = 250;

/**
 * How a container's end reads: podman says `stopped` until its cleanup has run and `exited`
 * after, for the same end of the same process, so both read "exited". Pure.
 */
function endedState(state: string): string {
  return state === "stopped" ? "exited" : state;
}

/** `container exited with code 3; following it across its restart`. Pure. */
function followRestart(state: string, exitCode: number | undefined): string {
  const code = exitCode === undefined ? "" : ` with code ${exitCode}`;
  return `container ${endedState(state)}${code}; following it across its restart`;
}

/** `container exited with code 3; following stopped`. Pure. */
export function followEnded(state: string | undefined, exitCode: number | undefined): string {
  const what = state === undefined || state === "gone"
    ? "container is gone"
    : exitCode !== undefined
    ? `container ${endedState(state)} with code ${exitCode}`
    : `container ${endedState(state)}`;
  return escapeControl(`${what}; following stopped`);
}

function printLines(
  lines: readonly LogLine[],
  io: CliIo,
  prefix: string,
  timestamps: boolean,
  raw: boolean,
): void {
  let out = "";
  let err = "";
  for (const line of lines) {
    // Escaped, a line stays one line after its prefix: no \r or cursor movement can
    // overwrite it or fake another device's prefix.
    const body = raw ? line.text : escapeLogLine(line.text);
    const text = `${prefix}${timestamps ? `${escapeLogLine(line.time)} ` : ""}${body}\n`;
    if (line.stream === "stderr") err += text;
    else out += text;
  }
  if (out) io.stdout(out);
  if (err) io.stderr(err);
}
