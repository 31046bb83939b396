/**
 * Many agents in one process, for the fleet benchmark. Each agent is the
 * real agent code — its own NATS connection and session (`NatsSession`:
 * connect, open buckets, desired-state watch with validation), the real
 * `Reconciler` (planner, queue, statuses) and the real `StatusPublisher`
 * (coalesced puts plus heartbeat) — composed as `agent/main.ts` composes
 * them, except that the container runtime is `InMemoryRuntime`, a FAKE (a
 * Pi's podman cannot be run thousands of times on one machine; the real
 * runtime path is what the device benchmark and the integration tests cover).
 * Also left out: the offline cache file and sd_notify (per-device disk and
 * systemd, nothing the fleet shares).
 *
 * Usage (started by `bench/fleet.ts`):
 *   deno run -A bench/fleet_agents.ts --nats URL --prefix dev --from 0 --count 500 \
 *     --records FILE [--heartbeat 10] [--label fleet=bench]
 *
 * For every status it publishes, an agent notes transitions in FILE (JSON
 * lines): the first put showing a deployment `running` at a new revision, and
 * the first put after a deployment is gone. The parent reads them as
 * per-device convergence times.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { abortableSleep, withinMs } from "@drover/common";
import { AgentPolicy, type AgentStatus, NatsConfig } from "@drover/contracts";
import { NatsSession } from "../agent/nats/session.ts";
import type { DesiredSink } from "../agent/nats/desired_record.ts";
import { Reconciler } from "../agent/reconcile/reconciler.ts";
import { StatusPublisher, type StatusStore } from "../agent/status.ts";
import { InMemoryRuntime } from "../agent/runtime/memory_runtime.ts";
import { epochMs } from "./stats.ts";

/** The image every fake runtime already has (so the IfNotPresent pull is skipped, as on a Pi). */
export const FLEET_IMAGE = "localhost/drover/busybox:bench";

/** One transition seen in a published status. */
export interface FleetRecord {
  device: string;
  deployment: string;
  /** `running` at `revision`, or `gone`. */
  event: "running" | "gone";
  revision?: number;
  /** Epoch ms when the put carrying it was acknowledged. */
  at: number;
}

/** Options of {@linkcode FleetAgent}. */
export interface FleetAgentOptions {
  deviceId: string;
  natsUrl: string;
  labels: Record<string, string>;
  heartbeatSeconds: number;
  record: (r: FleetRecord) => void;
}

/** One agent: session, reconciler and publisher over a fake runtime. */
export class FleetAgent {
  readonly #options: FleetAgentOptions;
  readonly #session: NatsSession;
  readonly #reconciler: Reconciler;
  readonly #publisher: StatusPublisher;
  /** Revision last reported running, per deployment. */
  readonly #running = new Map<string, number>();

  constructor(options: FleetAgentOptions) {
    this.#options = options;
    const { deviceId } = options;
    const log = getLogger(["drover", "bench"]).with({ device: deviceId });
    const runtime = new InMemoryRuntime({ images: [FLEET_IMAGE] });
    this.#reconciler = new Reconciler({
      deviceId,
      runtime,
      policy: AgentPolicy.parse({}),
      registries: {},
      // The publisher is created next; the reconciler only calls this once running.
      onChange: () => this.#publisher?.changed(),
    });
    this.#publisher = new StatusPublisher({
      deviceId,
      labels: options.labels,
      heartbeatSeconds: options.heartbeatSeconds,
      source: this.#reconciler,
      log,
    });
    const reconciler = this.#reconciler;
    const sink: DesiredSink = {
      snapshot: (entries) => reconciler.setSnapshot({ entries, authoritative: true }),
      update: (deployment, entry) => reconciler.setDesired(deployment, entry),
    };
    this.#session = new NatsSession({
      deviceId,
      nats: NatsConfig.parse({ servers: [options.natsUrl] }),
      sink,
      setStatusStore: (store) => this.#publisher.setStore(store && this.#recording(store)),
      log,
    });
    // As agent/main.ts does with no cache: leave the (empty) runtime alone until KV answers.
    reconciler.setSnapshot({ entries: new Map(), authoritative: false });
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const reconciling = this.#reconciler.run(signal);
    const session = this.#session.run(signal);
    this.#publisher.start();
    await Promise.allSettled([reconciling, session]);
    await this.#publisher.close();
    await this.#session.close(500);
  }

  /** Wraps the status bucket to note transitions once a put is acknowledged. */
  #recording(store: StatusStore): StatusStore {
    return {
      put: async (key, value) => {
        const revision = await store.put(key, value);
        const at = epochMs();
        const status = JSON.parse(new TextDecoder().decode(value)) as AgentStatus;
        this.#noteTransitions(status, at);
        return revision;
      },
    };
  }

  #noteTransitions(status: AgentStatus, at: number): void {
    const device = this.#options.deviceId;
    for (const [deployment, d] of Object.entries(status.deployments)) {
      if (d.phase === "running" && this.#running.get(deployment) !== d.revision) {
        this.#running.set(deployment, d.revision);
        this.#options.record({ device, deployment, event: "running", revision: d.revision, at });
      }
    }
    for (const deployment of [...this.#running.keys()]) {
      if (status.deployments[deployment] === undefined) {
        this.#running.delete(deployment);
        this.#options.record({ device, deployment, event: "gone", at });
      }
    }
  }
}

/** Device `i` of a bench fleet: its id and labels (`fleet.ts` registers exactly these). */
export function fleetDevice(
  i: number,
  prefix = "dev",
  label = "fleet=bench",
): { id: string; labels: Record<string, string> } {
  const [labelKey, labelValue] = label.split("=");
  return {
    id: `${prefix}-${String(i).padStart(5, "0")}`,
    labels: { [labelKey]: labelValue, shard: String(i % 10) },
  };
}

function flag(args: string[], name: string, fallback?: string): string {
  const i = args.indexOf(`--${name}`);
  const value = i >= 0 ? args[i + 1] : fallback;
  if (value === undefined) throw new Error(`Missing --${name}`);
  return value;
}

async function main(args: string[]): Promise<void> {
  const natsUrl = flag(args, "nats");
  const prefix = flag(args, "prefix", "dev");
  const from = Number(flag(args, "from", "0"));
  const count = Number(flag(args, "count"));
  const heartbeatSeconds = Number(flag(args, "heartbeat", "10"));
  const label = flag(args, "label", "fleet=bench");
  const records = await Deno.open(flag(args, "records"), { create: true, append: true });
  const encoder = new TextEncoder();
  // Batched writes: one syscall per tick, not per record.
  let pending: string[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    records.writeSync(encoder.encode(pending.join("")));
    pending = [];
  };
  const flusher = setInterval(flush, 50);

  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);

  const runs: Promise<void>[] = [];
  for (let i = from; i < from + count; i++) {
    const device = fleetDevice(i, prefix, label);
    const agent = new FleetAgent({
      deviceId: device.id,
      natsUrl,
      labels: device.labels,
      heartbeatSeconds,
      record: (r) => pending.push(JSON.stringify(r) + "\n"),
    });
    runs.push(agent.run(stop.signal));
    // Spread connection set-up a little so the event loop keeps breathing.
    if (i % 50 === 49) await abortableSleep(5);
  }
  await new Promise<void>((resolve) => stop.signal.addEventListener("abort", () => resolve()));
  await withinMs(Promise.allSettled(runs), 3_000);
  clearInterval(flusher);
  flush();
  records.close();
}

if (import.meta.main) {
  await main(Deno.args);
  Deno.exit(0);
}
