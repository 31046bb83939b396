/**
 * The operator's Prometheus metrics, served at `GET /metrics` on its HTTP
 * listen: the fleet by status and liveness, each deployment's devices by
 * phase, desired-state writes and their latency, NATS reconnects, and rollout
 * progress when a source for it is given. Gauges are computed from the fleet
 * view at scrape time; prom-client formats the exposition.
 *
 * Label values are bounded: statuses and phases are small enums; deployment
 * names are bounded by the deployments that exist; the only device ids are
 * those of devices flooding the operator now (`drover_device_flooding`).
 *
 * @module
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { FleetView } from "../fleet/aggregate.ts";
import { RolloutPhase } from "../rollout/state.ts";
import type { FloodReport } from "../fleet/device_gate.ts";
import type { DeviceOverLimit } from "../fleet/connection_guard.ts";

/** What the connection guard (operator/fleet/connection_guard.ts) reports. */
export interface ConnectionGuardReport {
  /** Device connections closed beyond their limit since start. */
  readonly closedTotal: number;
  /** Identities over the limit now, and the most connected of them by device. */
  overLimit(): { count: number; devices: DeviceOverLimit[] };
}

/** Buckets of the desired-state write histogram, in seconds (a KV put is ~1 ms on loopback). */
export const WRITE_BUCKETS_SECONDS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  1,
];

/** A rollout's position, for the progress gauges (from the rollout book, when there is one). */
export interface RolloutProgress {
  deployment: string;
  /** Batches done (0 before the first completes). */
  batchesDone: number;
  batches: number;
}

/** Options of {@linkcode OperatorMetrics}. */
export interface OperatorMetricsOptions {
  /**
   * The fleet view now; undefined while starting (the fleet gauges are then empty). Also
   * settable later ({@linkcode OperatorMetrics.readFleetFrom}): the fan-out controller that
   * holds the view is built after the metrics that time its writes.
   */
  view?: () => FleetView | undefined;
  /** Rollouts in progress; absent: no rollout gauges. */
  rollouts?: () => Iterable<RolloutProgress>;
  /** Refusals of device requests beyond their limits, and the devices flooding now. */
  floods?: FloodReport;
  /** The connection guard, when `serve` has the system account's creds. */
  connections?: ConnectionGuardReport;
}

/** The operator's metrics. */
export class OperatorMetrics {
  /** The registry `/metrics` renders. */
  readonly registry: Registry = new Registry();
  readonly #writes: Counter<"operation" | "outcome">;
  readonly #writeSeconds: Histogram<"operation">;
  readonly #reconnects: Counter;
  #view: () => FleetView | undefined;

  constructor(options: OperatorMetricsOptions = {}) {
    this.#view = options.view ?? (() => undefined);
    const readView = () => this.#view();
    const registers = [this.registry];
    /** A gauge filled from the fleet view at scrape time (empty while starting). */
    const fromView = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      fill: (gauge: Gauge<L>, view: FleetView) => void,
    ) =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          const view = readView();
          if (view !== undefined) fill(this, view);
        },
      });
    fromView(
      "drover_devices",
      "Devices known to the operator, by their agent's status and liveness.",
      ["status", "online"],
      (g, view) => {
        for (const d of view.devices) {
          g.inc({ status: d.status, online: d.online ? "true" : "false" });
        }
      },
    );
    fromView(
      "drover_deployment_devices",
      "Devices a deployment targets, by phase (ready, failed, pending, held: not given " +
        "the revision by a staged rollout yet, offline). Ready counts at the stable revision " +
        "after a rollback.",
      ["deployment", "phase"],
      (g, view) => {
        for (const d of view.deployments) {
          for (const phase of ["ready", "failed", "pending", "held", "offline"] as const) {
            g.set({ deployment: d.name, phase }, d[phase]);
          }
        }
      },
    );
    fromView(
      "drover_rollout_state",
      "1 for the state of a deployment's latest rollout (progressing, paused, complete, " +
        "rolled_back, failed), 0 for the others.",
      ["deployment", "state"],
      (g, view) => {
        for (const d of view.deployments) {
          if (d.state === null) continue;
          for (const state of RolloutPhase.options) {
            g.set({ deployment: d.name, state }, d.state === state ? 1 : 0);
          }
        }
      },
    );
    fromView(
      "drover_rollout_batch",
      "1-based batch a progressing or paused rollout is in (absent otherwise).",
      ["deployment"],
      (g, view) => {
        for (const d of view.deployments) {
          if (d.batch !== null) g.set({ deployment: d.name }, d.batch);
        }
      },
    );
    fromView(
      "drover_deployment_revision",
      "A deployment's current revision (what apply printed) and its stable revision.",
      ["deployment", "kind"],
      (g, view) => {
        for (const d of view.deployments) {
          if (d.revision !== null) g.set({ deployment: d.name, kind: "current" }, d.revision);
          if (d.stable_revision !== null) {
            g.set({ deployment: d.name, kind: "stable" }, d.stable_revision);
          }
        }
      },
    );
    fromView(
      "drover_agent_info",
      "Devices by the agent version they report (1 per device and version).",
      ["version"],
      (g, view) => {
        for (const d of view.devices) {
          if (d.agent_version !== null) g.inc({ version: d.agent_version });
        }
      },
    );
    if (options.rollouts !== undefined) {
      const rollouts = options.rollouts;
      new Gauge({
        name: "drover_rollout_batches_done",
        help: "Batches of a deployment's current rollout that are done.",
        labelNames: ["deployment"],
        registers,
        collect() {
          this.reset();
          for (const r of rollouts()) this.set({ deployment: r.deployment }, r.batchesDone);
        },
      });
      new Gauge({
        name: "drover_rollout_batches",
        help: "Batches of a deployment's current rollout.",
        labelNames: ["deployment"],
        registers,
        collect() {
          this.reset();
          for (const r of rollouts()) this.set({ deployment: r.deployment }, r.batches);
        },
      });
    }
    if (options.floods !== undefined) {
      const floods = options.floods;
      new Counter({
        name: "drover_device_requests_refused_total",
        help: "Device messages refused before any work, by handler (artifact, snapshot, " +
          "heartbeat, status, command) and reason (rate: the device's; busy: the cap on work " +
          "in progress).",
        labelNames: ["handler", "reason"],
        registers,
        collect() {
          this.reset();
          for (const [handler, reasons] of Object.entries(floods.counts)) {
            for (const [reason, n] of Object.entries(reasons)) this.inc({ handler, reason }, n);
          }
        },
      });
      // Label values are device ids, bounded by the devices flooding now (few; capped).
      new Gauge({
        name: "drover_device_flooding",
        help: "Devices refused beyond the flooding threshold in the last window (value: " +
          "refusals in it). Cut one off with `operator device revoke ID`.",
        labelNames: ["device", "handler"],
        registers,
        collect() {
          this.reset();
          for (const f of floods.flooding()) {
            this.set({ device: f.device, handler: f.handler }, f.refused);
          }
        },
      });
    }
    if (options.connections !== undefined) {
      const guard = options.connections;
      new Counter({
        name: "drover_device_connections_closed_total",
        help: "NATS connections of devices closed because their identity held more than its " +
          "limit (serve --max-connections-per-device; the newest are kept).",
        registers,
        collect() {
          this.reset();
          this.inc(guard.closedTotal);
        },
      });
      new Gauge({
        name: "drover_device_identities_over_connection_limit",
        help: "Device identities holding more NATS connections than their limit now (on " +
          "nats-server 2.9, which cannot close them, until the device is revoked).",
        registers,
        collect() {
          this.set(guard.overLimit().count);
        },
      });
      // Label values are device ids, bounded by the devices over the limit now (capped).
      new Gauge({
        name: "drover_device_connections_over_limit",
        help: "Open NATS connections of a device over its connection limit (value: its " +
          "connections). Cut one off with `operator device revoke ID`.",
        labelNames: ["device"],
        registers,
        collect() {
          this.reset();
          for (const d of guard.overLimit().devices) this.set({ device: d.device }, d.connections);
        },
      });
    }
    this.#writes = new Counter({
      name: "drover_desired_state_writes_total",
      help: "Desired-state KV writes (put, delete) by outcome.",
      labelNames: ["operation", "outcome"],
      registers,
    });
    this.#writeSeconds = new Histogram({
      name: "drover_desired_state_write_duration_seconds",
      help: "Latency of one desired-state KV write.",
      labelNames: ["operation"],
      buckets: WRITE_BUCKETS_SECONDS,
      registers,
    });
    this.#reconnects = new Counter({
      name: "drover_nats_reconnects_total",
      help: "Times the operator's NATS connection was re-established after a loss.",
      registers,
    });
    for (const operation of ["put", "delete"]) {
      this.#writeSeconds.zero({ operation });
      for (const outcome of ["ok", "error"]) this.#writes.inc({ operation, outcome }, 0);
    }
    this.#reconnects.inc(0);
  }

  /** Where the fleet gauges read the fleet view from at scrape time. */
  readFleetFrom(view: () => FleetView | undefined): void {
    this.#view = view;
  }

  /** The NATS connection came back. */
  reconnected(): void {
    this.#reconnects.inc();
  }

  /** Records one desired-state write. */
  write(operation: "put" | "delete", seconds: number, ok: boolean): void {
    this.#writes.inc({ operation, outcome: ok ? "ok" : "error" });
    if (ok) this.#writeSeconds.observe({ operation }, seconds);
  }

  /** `kv` (the desired-state bucket) with its `put` and `delete` timed. */
  instrumentDesired<T extends object>(kv: T): T {
    return new Proxy(kv, {
      get: (target, property, receiver) => {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== "function") return value;
        if (property !== "put" && property !== "delete") return value.bind(target);
        return async (...args: unknown[]) => {
          const started = performance.now();
          try {
            const result = await value.apply(target, args);
            this.write(property, (performance.now() - started) / 1000, true);
            return result;
          } catch (err) {
            this.write(property, 0, false);
            throw err;
          }
        };
      },
    });
  }

  /** The exposition text. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
