/**
 * The agent's Prometheus metrics (off unless `[metrics] listen` is set):
 * reconcile pass durations, podman API errors by operation, NATS reconnects,
 * this device's containers by state, and the time of the last successful
 * reconcile. prom-client formats the exposition; one registry per process.
 * Label values are bounded: operations are the runtime's method names,
 * states are podman's handful, outcomes are ok/error — never an id.
 *
 * @module
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ContainerRuntime, ObservedContainer } from "./runtime/runtime.ts";

/** Buckets of the reconcile pass histogram, in seconds (a pull may take minutes). */
export const RECONCILE_BUCKETS_SECONDS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The agent's metrics. */
export class AgentMetrics {
  /** The registry `/metrics` renders. */
  readonly registry: Registry = new Registry();
  readonly #reconcile: Histogram<"outcome">;
  readonly #podmanErrors: Counter<"operation">;
  readonly #reconnects: Counter;
  readonly #lastSuccess: Gauge;
  #containers: readonly ObservedContainer[] = [];
  #lastSuccessMs: number | undefined;

  constructor(deviceId: string) {
    const registers = [this.registry];
    this.#reconcile = new Histogram({
      name: "drover_agent_reconcile_duration_seconds",
      help: "Duration of one reconcile pass of one deployment.",
      labelNames: ["outcome"],
      buckets: RECONCILE_BUCKETS_SECONDS,
      registers,
    });
    this.#podmanErrors = new Counter({
      name: "drover_agent_podman_api_errors_total",
      help: "Podman API calls that failed, by operation.",
      labelNames: ["operation"],
      registers,
    });
    this.#reconnects = new Counter({
      name: "drover_agent_nats_reconnects_total",
      help: "Times the NATS connection was re-established after a loss.",
      registers,
    });
    this.#lastSuccess = new Gauge({
      name: "drover_agent_last_reconcile_success_timestamp_seconds",
      help: "Unix time of the last reconcile pass that converged (0 before the first).",
      registers,
      collect: () => {
        this.#lastSuccess.set(this.#lastSuccessMs === undefined ? 0 : this.#lastSuccessMs / 1000);
      },
    });
    const listed = () => this.#containers;
    new Gauge({
      name: "drover_agent_containers",
      help: "This device's containers by runtime state, as last listed.",
      labelNames: ["state"],
      registers,
      collect() {
        this.reset();
        for (const state of ["running", "exited", "created"]) this.set({ state }, 0);
        for (const c of listed()) {
          if (c.device !== undefined && c.device !== deviceId) continue;
          this.inc({ state: stateLabel(c.state) });
        }
      },
    });
    for (const outcome of ["ok", "error"]) this.#reconcile.zero({ outcome });
    this.#reconnects.inc(0);
  }

  /** One reconcile pass ended. */
  pass(durationMs: number, ok: boolean, nowMs = Date.now()): void {
    this.#reconcile.observe({ outcome: ok ? "ok" : "error" }, durationMs / 1000);
    if (ok) this.#lastSuccessMs = nowMs;
  }

  /** When the last pass converged (ms since the epoch). */
  get lastSuccessMs(): number | undefined {
    return this.#lastSuccessMs;
  }

  /** The NATS connection came back. */
  reconnected(): void {
    this.#reconnects.inc();
  }

  /**
   * `runtime` with every failed call counted by operation (its method name)
   * and every container list remembered for the state gauge.
   */
  instrument<T extends ContainerRuntime>(runtime: T): T {
    return new Proxy(runtime, {
      get: (target, property, receiver) => {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== "function" || typeof property !== "string") return value;
        return (...args: unknown[]) => {
          const result = value.apply(target, args);
          if (!(result instanceof Promise)) return result;
          return result.then((v) => {
            if (property === "listManaged") this.#containers = v as ObservedContainer[];
            return v;
          }, (err) => {
            if (!(err instanceof Error && err.name === "AbortError")) {
              this.#podmanErrors.inc({ operation: snake(property) });
            }
            throw err;
          });
        };
      },
    });
  }

  /** The exposition text. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** podman's states, with anything unexpected folded into "other" (bounded labels). */
function stateLabel(state: string): string {
  return ["running", "exited", "created", "paused", "stopped", "configured", "initialized"]
      .includes(state)
    ? state
    : "other";
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * Serves `GET /metrics` on `listen` (`host:port`) until `signal` aborts.
 * Anything else is 404. Listening when it returns; throws when the address cannot be bound.
 */
export function serveMetrics(
  metrics: AgentMetrics,
  listen: string,
  signal: AbortSignal,
): Deno.HttpServer<Deno.NetAddr> {
  const colon = listen.lastIndexOf(":");
  const hostname = listen.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const port = Number(listen.slice(colon + 1));
  // Deno.serve binds before it returns (and calls onListen from inside the call).
  return Deno.serve({ hostname, port, signal, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    if (req.method !== "GET" || url.pathname !== "/metrics") {
      return new Response("not found: only GET /metrics\n", { status: 404 });
    }
    return new Response(await metrics.render(), {
      headers: { "content-type": metrics.registry.contentType },
    });
  });
}
