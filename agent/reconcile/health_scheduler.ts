/**
 * Runs health checks on each service's interval. Podman schedules checks with
 * systemd timers, which do not exist everywhere (the test harness, devices
 * without systemd): there nothing runs them and a service would stay
 * `starting` forever. So the agent runs them itself through the runtime
 * (`GET /libpod/containers/{id}/healthcheck`), one small loop per running
 * container with a check, started and stopped as the reconciler observes the
 * containers ({@linkcode HealthScheduler.sync}).
 *
 * Bounded: one check per container at a time (a loop, never overlapping
 * runs), each call given up after the check's timeout plus a grace, and the
 * next check due one interval after the latest one ended, whoever ran it
 * (`nextCheckDelayMs`). A `health_status` event (podman ran a check on its
 * own) only makes the scheduler read the container's health again
 * ({@linkcode HealthScheduler.refresh}). When a container's health changes, its
 * deployment is marked dirty; the reconciler then re-observes and reports.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { HealthReport } from "../runtime/runtime.ts";
import { HEALTH_CHECK_GRACE_MS, type HealthTarget, nextCheckDelayMs } from "./health.ts";
import type { QueueTimers } from "./queue.ts";

/** What the scheduler needs from the runtime. */
export interface HealthRuntime {
  runHealthcheck(id: string, signal?: AbortSignal): Promise<HealthReport | undefined>;
  inspectHealth(id: string, signal?: AbortSignal): Promise<HealthReport | undefined>;
}

/** Options of {@linkcode HealthScheduler}. */
export interface HealthSchedulerOptions {
  runtime: HealthRuntime;
  /** Called when a container's health changed (mark its deployment dirty). */
  onChange: (deployment: string) => void;
  log: Logger;
  /** Timers; tests inject a manual clock. */
  timers?: QueueTimers;
  /** Extra time a check call gets beyond its timeout (default `HEALTH_CHECK_GRACE_MS`). */
  graceMs?: number;
}

/** A `health_status` event this soon after the agent's own check is that check's echo. */
const OWN_ECHO_MS = 1_000;

interface Job {
  target: HealthTarget;
  stop: AbortController;
  report?: HealthReport;
  abandoned: number;
  /** The agent's own check is in flight. */
  checking: boolean;
  /** When the agent's own latest check call ended. */
  ownEndedAtMs?: number;
}

/** The latest check's end: podman's record, or the agent's own call (also a failed one). */
function lastEnded(job: Job): { lastEndedAtMs?: number } {
  const ends = [job.report?.lastEndedAtMs, job.ownEndedAtMs].filter((t) => t !== undefined);
  return ends.length > 0 ? { lastEndedAtMs: Math.max(...ends) } : {};
}

const REAL_TIMERS: QueueTimers = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** One health-check loop per container. See the module documentation. */
export class HealthScheduler {
  readonly #runtime: HealthRuntime;
  readonly #onChange: (deployment: string) => void;
  readonly #log: Logger;
  readonly #timers: QueueTimers;
  readonly #graceMs: number;
  readonly #jobs = new Map<string, Job>();
  readonly #loops = new Set<Promise<void>>();

  constructor(options: HealthSchedulerOptions) {
    this.#runtime = options.runtime;
    this.#onChange = options.onChange;
    this.#log = options.log;
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#graceMs = options.graceMs ?? HEALTH_CHECK_GRACE_MS;
  }

  /**
   * The containers of `deployment` that need their checks run now: loops start for
   * new ones and stop for those no longer listed (stopped, replaced, removed).
   */
  sync(deployment: string, targets: readonly HealthTarget[]): void {
    const wanted = new Map(targets.map((t) => [t.containerId, t]));
    for (const [id, job] of this.#jobs) {
      if (job.target.deployment === deployment && !wanted.has(id)) this.#stopJob(id, job);
    }
    for (const target of targets) {
      const job = this.#jobs.get(target.containerId);
      if (job && job.target.startedAtMs === target.startedAtMs) continue;
      // A restart starts the count anew (podman resets the start period too).
      if (job) this.#stopJob(target.containerId, job);
      this.#startJob(target);
    }
  }

  /** Health reports by container id, of the containers being checked. */
  reports(): ReadonlyMap<string, HealthReport> {
    const out = new Map<string, HealthReport>();
    for (const [id, job] of this.#jobs) if (job.report) out.set(id, job.report);
    return out;
  }

  /** Container ids being checked (tests). */
  containers(): string[] {
    return [...this.#jobs.keys()].sort();
  }

  /**
   * Podman said a container's health changed (`health_status`; on 4.3 the event
   * carries the previous status): read it again, unless the event is the echo of
   * the agent's own check.
   */
  async refresh(containerId: string): Promise<void> {
    const job = this.#jobs.get(containerId);
    if (job === undefined || job.checking) return;
    if (job.ownEndedAtMs !== undefined && this.#timers.now() - job.ownEndedAtMs < OWN_ECHO_MS) {
      return;
    }
    try {
      this.#record(job, await this.#runtime.inspectHealth(containerId, job.stop.signal));
    } catch (err) {
      if (!job.stop.signal.aborted) this.#debug(job, "read", err);
    }
  }

  /** Stops every loop and waits for them. */
  async stopAll(): Promise<void> {
    for (const [id, job] of this.#jobs) this.#stopJob(id, job);
    await Promise.allSettled([...this.#loops]);
  }

  #startJob(target: HealthTarget): void {
    const job: Job = { target, stop: new AbortController(), abandoned: 0, checking: false };
    this.#jobs.set(target.containerId, job);
    const loop = this.#loop(job).finally(() => this.#loops.delete(loop));
    this.#loops.add(loop);
  }

  #stopJob(id: string, job: Job): void {
    job.stop.abort();
    if (this.#jobs.get(id) === job) this.#jobs.delete(id);
  }

  async #loop(job: Job): Promise<void> {
    const { signal } = job.stop;
    // What podman recorded already (an agent restart, a systemd timer): when the next is due.
    await this.refresh(job.target.containerId);
    while (!signal.aborted) {
      const delay = nextCheckDelayMs({
        intervalMs: job.target.intervalMs,
        nowMs: this.#timers.now(),
        ...(job.target.startedAtMs !== undefined ? { startedAtMs: job.target.startedAtMs } : {}),
        ...lastEnded(job),
        abandoned: job.abandoned,
      });
      if (delay > 0) {
        // Due times may move meanwhile (a refresh): look again after the sleep.
        if (!(await this.#sleep(delay, signal))) return;
        continue;
      }
      await this.#check(job);
    }
  }

  async #check(job: Job): Promise<void> {
    const id = job.target.containerId;
    const budgetMs = job.target.timeoutMs + this.#graceMs;
    const timeout = new AbortController();
    const timer = this.#timers.setTimeout(() => timeout.abort(), budgetMs);
    job.checking = true;
    try {
      const report = await this.#runtime.runHealthcheck(
        id,
        AbortSignal.any([job.stop.signal, timeout.signal]),
      );
      job.abandoned = 0;
      this.#record(job, report);
    } catch (err) {
      if (job.stop.signal.aborted) return;
      if (timeout.signal.aborted) {
        job.abandoned++;
        this.#log.warn(
          "Health check of {container} still running after {ms} ms; giving up on it",
          { container: id.slice(0, 12), service: job.target.service, ms: budgetMs },
        );
      } else this.#debug(job, "run", err);
    } finally {
      this.#timers.clearTimeout(timer);
      job.checking = false;
      job.ownEndedAtMs = this.#timers.now();
    }
  }

  #record(job: Job, report: HealthReport | undefined): void {
    if (report === undefined) return;
    const before = job.report?.status;
    job.report = report;
    if (before !== report.status && this.#jobs.get(job.target.containerId) === job) {
      this.#onChange(job.target.deployment);
    }
  }

  /** Resolves true after `ms`, false when `signal` aborts first. */
  #sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve(false);
      const onAbort = () => {
        this.#timers.clearTimeout(id);
        resolve(false);
      };
      const id = this.#timers.setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        resolve(true);
      }, ms);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  #debug(job: Job, what: string, err: unknown): void {
    this.#log.debug("Cannot {what} the health of {container}: {error}", {
      what,
      container: job.target.containerId.slice(0, 12),
      service: job.target.service,
      error: err instanceof Error ? err.message : String(err),
    });
  }
}
