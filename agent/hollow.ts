/**
 * Hollow devices: the real agent — `runAgent` from main.ts with its NATS
 * session, desired-state follower, validation, planner, reconciler and status
 * publisher — over `InMemoryRuntime`, a FAKE container runtime, with no disk
 * cache and no systemd. Thousands run in one process, each with its own NATS
 * connection, to see what a fleet costs the servers (`deno task hollow`,
 * scripts/hollow.ts) and to drive the fleet benchmark (bench/fleet.ts).
 *
 * What a hollow device does not exercise: podman, the offline cache file and
 * sd_notify — per-device work the fleet's servers never see.
 *
 * @module
 */

import { AgentConfig } from "@drover/contracts";
import { runAgent } from "./main.ts";
import type { NatsSession } from "./nats/session.ts";
import type { StatusPublisher } from "./status.ts";
import { InMemoryRuntime } from "./runtime/memory_runtime.ts";

/** Images every hollow device already holds (so a deployment of them needs no pull). */
export const HOLLOW_IMAGES: readonly string[] = [
  "localhost/drover/busybox:bench",
  "docker.io/library/busybox:latest",
];

/** Device `index` of a hollow fleet: `<prefix>-00042`. Pure. */
export function hollowDeviceId(prefix: string, index: number): string {
  return `${prefix}-${String(index).padStart(5, "0")}`;
}

/** Settings every device of one hollow fleet shares. */
export interface HollowFleetOptions {
  /** NATS server URLs (all of a cluster's). */
  servers: string[];
  labels: Record<string, string>;
  heartbeatSeconds: number;
  /** Seconds between full status puts while nothing changes (default: the agent's). */
  statusRefreshSeconds?: number;
  /** Directory of `<id>.creds` files from `operator device add`; absent = no auth. */
  credsDir?: string;
  /** User and password for every device (test servers with Drover's account layout). */
  user?: (id: string) => { user: string; password: string };
}

/** The agent config of one hollow device. Pure. */
export function hollowConfig(id: string, options: HollowFleetOptions): AgentConfig {
  const auth = options.user?.(id);
  return AgentConfig.parse({
    agent: {
      device_id: id,
      // Never written: hollow devices keep no cache.
      state_dir: `/nonexistent/drover-hollow/${id}`,
      labels: options.labels,
      heartbeat_seconds: options.heartbeatSeconds,
      log_level: "warning",
    },
    nats: {
      servers: options.servers,
      ...(options.credsDir !== undefined ? { creds: `${options.credsDir}/${id}.creds` } : {}),
      ...(auth !== undefined ? { user: auth.user, password: auth.password } : {}),
    },
    podman: { socket: "/nonexistent/FAKE-in-memory-runtime.sock" },
  });
}

/** One running hollow device. */
export class HollowDevice {
  readonly id: string;
  readonly runtime: InMemoryRuntime;
  #session: NatsSession | undefined;
  #publisher: StatusPublisher | undefined;

  constructor(id: string) {
    this.id = id;
    this.runtime = new InMemoryRuntime({ images: HOLLOW_IMAGES });
  }

  /** Connected to a NATS server now. */
  get connected(): boolean {
    return this.#session?.connected ?? false;
  }

  /** Connected and at least one full status stored. */
  get reporting(): boolean {
    return this.connected && (this.#publisher?.published ?? 0) > 0;
  }

  /** Full status puts and heartbeats sent so far. */
  get sent(): { statuses: number; heartbeats: number } {
    return {
      statuses: this.#publisher?.published ?? 0,
      heartbeats: this.#publisher?.heartbeats ?? 0,
    };
  }

  /** Stops heartbeats and full refreshes (tests: a device that falls silent but stays connected). */
  silence(): void {
    this.#publisher?.stopHeartbeat();
  }

  /** Runs the real agent until `signal` aborts (then it stops as an agent does: a last status). */
  run(options: HollowFleetOptions, signal: AbortSignal): Promise<void> {
    return runAgent(hollowConfig(this.id, options), signal, {
      runtime: this.runtime,
      cache: false,
      systemd: false,
      ...(options.statusRefreshSeconds !== undefined
        ? { statusRefreshSeconds: options.statusRefreshSeconds }
        : {}),
      onStarted: ({ session, publisher }) => {
        this.#session = session;
        this.#publisher = publisher;
      },
    });
  }
}

/** Counts over a set of hollow devices. */
export function fleetCounts(
  devices: Iterable<HollowDevice>,
): { devices: number; connected: number; reporting: number } {
  let n = 0;
  let connected = 0;
  let reporting = 0;
  for (const d of devices) {
    n++;
    if (d.connected) connected++;
    if (d.reporting) reporting++;
  }
  return { devices: n, connected, reporting };
}
