/**
 * Shared pieces of the agent's end-to-end tests: a real nats-server with
 * Drover's account layout (the device in its own account, as in production)
 * and the buckets created the operator's way, the operator's real snapshot
 * service, a real podman service with the busybox
 * image, the agent as a real subprocess (tests/support/agent_process.ts),
 * and helpers to write desired state and read back what podman and the status
 * bucket say.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { type KV, Kvm } from "@nats-io/kv";
import {
  AgentStatus,
  BUCKET_AGENT_STATUS,
  BUCKET_DESIRED_STATE,
  type DeploymentStatus,
  type DesiredStateInput,
  desiredStateKey,
  LABELS,
  statusKey,
} from "@drover/contracts";
import {
  buildBusyboxImage,
  fetchPublishedPort,
  freePort,
  type NatsServer,
  type PodmanService,
  startPodman,
  type TempDir,
  tempDir,
  waitFor,
} from "../support/mod.ts";

import { connectAdmin, DEVICE_PASSWORD, startDroverNats } from "../support/drover_nats.ts";
import { AgentProcess, agentToml } from "../support/agent_process.ts";
import { DesiredSnapshotService } from "../../operator/devices/snapshots.ts";

/** Image tag used by the tests: not `:latest`, so the agent does not try to pull it. */
export const TEST_IMAGE = "localhost/drover/busybox:1";

/** Options of {@linkcode startAgentEnv}. */
export interface AgentEnvOptions {
  deviceId?: string;
  heartbeatSeconds?: number;
  /** Extra TOML appended to the generated config (e.g. `[registries."…"]`). */
  extraToml?: string;
  /** Create the buckets (as the operator would). Default true. */
  createBuckets?: boolean;
  /** More devices the NATS server knows, for agents sharing the podman host (`startAgentFor`). */
  otherDevices?: string[];
}

/** Everything an agent e2e test needs, disposed with `await using`. */
export class AgentEnv implements AsyncDisposable {
  readonly deviceId: string;
  readonly nats: NatsServer;
  readonly podman: PodmanService;
  readonly dir: TempDir;
  readonly configPath: string;
  #nc: NatsConnection | undefined;
  #snapshots: DesiredSnapshotService | undefined;
  #agents: AgentProcess[] = [];
  #agentCount = 0;

  constructor(
    deviceId: string,
    nats: NatsServer,
    podman: PodmanService,
    dir: TempDir,
    configPath: string,
  ) {
    this.deviceId = deviceId;
    this.nats = nats;
    this.podman = podman;
    this.dir = dir;
    this.configPath = configPath;
  }

  /** Operator-side connection (reconnects after server restarts). */
  async nc(): Promise<NatsConnection> {
    if (this.#nc === undefined || this.#nc.isClosed()) {
      const nc = await connectAdmin(this.nats.url, {
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
      });
      this.#nc = nc;
      (async () => {
        for await (const s of nc.status()) {
          if (s.type === "reconnect") this.#snapshots?.rewatch();
        }
      })().catch(() => {});
    }
    return this.#nc;
  }

  /**
   * Starts the operator's snapshot service, which agents ask for their keys
   * (in production `operator serve` runs it). Idempotent.
   */
  async startSnapshots(): Promise<void> {
    if (this.#snapshots !== undefined) return;
    const nc = await this.nc();
    this.#snapshots = new DesiredSnapshotService(nc, await this.desiredKv());
    void this.#snapshots.start();
  }

  /** The desired-state bucket, operator side. */
  async desiredKv(): Promise<KV> {
    return await new Kvm(await this.nc()).open(BUCKET_DESIRED_STATE);
  }

  /** The agent-status bucket, operator side. */
  async statusKv(): Promise<KV> {
    return await new Kvm(await this.nc()).open(BUCKET_AGENT_STATUS);
  }

  /** Creates both buckets as the operator does. */
  async createBuckets(): Promise<void> {
    const kvm = new Kvm(await this.nc());
    await kvm.create(BUCKET_DESIRED_STATE, { history: 5 });
    await kvm.create(BUCKET_AGENT_STATUS, { history: 1 });
  }

  /** Starts an agent process on this environment's config (killed when the env is disposed). */
  startAgent(env: Record<string, string> = {}, permissions?: string[]): AgentProcess {
    const agent = AgentProcess.start({
      configPath: this.configPath,
      logPath: `${this.dir.path}/agent-${++this.#agentCount}.log`,
      env,
      permissions,
    });
    this.#agents.push(agent);
    return agent;
  }

  /**
   * Starts an agent for another device (one of `otherDevices`) on the same NATS and
   * podman, with its own config and state directory.
   */
  async startAgentFor(deviceId: string, env: Record<string, string> = {}): Promise<AgentProcess> {
    const configPath = `${this.dir.path}/agent-${deviceId}.toml`;
    await Deno.writeTextFile(
      configPath,
      agentToml({
        deviceId,
        natsUrl: this.nats.url,
        natsUser: deviceId,
        natsPassword: DEVICE_PASSWORD,
        podmanSocket: this.podman.socket,
        stateDir: `${this.dir.path}/state-${deviceId}`,
      }),
    );
    const agent = AgentProcess.start({
      configPath,
      logPath: `${this.dir.path}/agent-${deviceId}-${++this.#agentCount}.log`,
      env,
    });
    this.#agents.push(agent);
    return agent;
  }

  /** Writes a desired state for this device (or another); returns the revision. */
  async putDesired(
    deployment: string,
    value: DesiredStateInput | string,
    device = this.deviceId,
  ): Promise<number> {
    const data = typeof value === "string" ? value : JSON.stringify(value);
    return await this.#retry(async () =>
      await (await this.desiredKv()).put(
        desiredStateKey(device, deployment),
        new TextEncoder().encode(data),
      )
    );
  }

  /** Deletes a deployment's desired state. */
  async deleteDesired(deployment: string, device = this.deviceId): Promise<void> {
    await this.#retry(async () =>
      await (await this.desiredKv()).delete(desiredStateKey(device, deployment))
    );
  }

  /** Operator writes right after a server restart may time out while JetStream recovers. */
  async #retry<T>(write: () => Promise<T>): Promise<T> {
    let result: T | undefined;
    await waitFor(async () => {
      result = await write();
      return true;
    }, { timeoutMs: 30_000, intervalMs: 250, message: "operator write to KV" });
    return result as T;
  }

  /** The agent's latest status, or undefined. */
  async status(deviceId = this.deviceId): Promise<AgentStatus | undefined> {
    let entry;
    try {
      entry = await (await this.statusKv()).get(statusKey(deviceId));
    } catch {
      return undefined; // server restarting: "not yet" for the callers' waitFor
    }
    if (entry === null || entry.operation !== "PUT") return undefined;
    return AgentStatus.parse(entry.json());
  }

  /** Waits until the status of `deployment` satisfies `check`; returns it. */
  async waitForDeployment(
    deployment: string,
    check: (d: DeploymentStatus) => boolean,
    message: string,
    timeoutMs = 60_000,
  ): Promise<DeploymentStatus> {
    return await waitFor(async () => {
      const d = (await this.status())?.deployments[deployment];
      return d !== undefined && check(d) ? d : undefined;
    }, { timeoutMs, message: `${message} (agent logs: ${this.dir.path})` });
  }

  /** Managed containers as `podman ps -a` sees them. */
  async containers(): Promise<PodmanPsEntry[]> {
    const result = await this.podman.cli([
      "ps",
      "-a",
      "--filter",
      `label=${LABELS.managed}=true`,
      "--format",
      "json",
    ]);
    if (result.code !== 0) throw new Error(`podman ps failed: ${result.stderr}`);
    const list = JSON.parse(result.stdout || "[]") as PodmanPsEntry[];
    return list;
  }

  /** Containers of one deployment. */
  async containersOf(deployment: string): Promise<PodmanPsEntry[]> {
    return (await this.containers()).filter((c) => c.Labels?.[LABELS.deployment] === deployment);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const agent of this.#agents) await agent.kill().catch(() => {});
    // Keep the agents' logs for a post-mortem when asked to.
    const keep = Deno.env.get("DROVER_E2E_KEEP_LOGS");
    if (keep) {
      await Deno.mkdir(keep, { recursive: true });
      for (const entry of Deno.readDirSync(this.dir.path)) {
        if (entry.name.endsWith(".log")) {
          await Deno.copyFile(`${this.dir.path}/${entry.name}`, `${keep}/${entry.name}`);
        }
      }
    }
    await this.#snapshots?.[Symbol.asyncDispose]().catch(() => {});
    await this.#nc?.close().catch(() => {});
    await this.podman[Symbol.asyncDispose]();
    await this.nats[Symbol.asyncDispose]();
    await this.dir[Symbol.asyncDispose]();
  }
}

/** The part of `podman ps --format json` the tests read. */
export interface PodmanPsEntry {
  Id: string;
  Names: string[];
  State: string;
  Image: string;
  Labels: Record<string, string> | null;
}

/** Starts nats, podman (with the test image) and writes an agent config. */
export async function startAgentEnv(options: AgentEnvOptions = {}): Promise<AgentEnv> {
  const deviceId = options.deviceId ?? "pi-1";
  const dir = await tempDir("drover-agent-e2e-");
  const [nats, podman] = await Promise.all([
    startDroverNats([deviceId, ...(options.otherDevices ?? [])]),
    startPodman(),
  ]);
  await buildBusyboxImage(podman, TEST_IMAGE);
  const configPath = `${dir.path}/agent.toml`;
  await Deno.writeTextFile(
    configPath,
    agentToml({
      deviceId,
      natsUrl: nats.url,
      natsUser: deviceId,
      natsPassword: DEVICE_PASSWORD,
      podmanSocket: podman.socket,
      stateDir: `${dir.path}/state`,
      heartbeatSeconds: options.heartbeatSeconds ?? 2,
      extraToml: options.extraToml,
    }),
  );
  const env = new AgentEnv(deviceId, nats, podman, dir, configPath);
  if (options.createBuckets ?? true) await env.createBuckets();
  await env.startSnapshots();
  return env;
}

/** One service of a test deployment. */
export type TestService = DesiredStateInput["score"]["services"][number];

/** The desired state of `deployment` running `services` with podman. */
export function podmanDeployment(deployment: string, services: TestService[]): DesiredStateInput {
  return { deployment, score: { type: "PodmanV0", services } };
}

/**
 * A busybox web server deployment: serves `$GREETING` (from env) on
 * `127.0.0.1:hostPort`.
 */
export function webDeployment(
  deployment: string,
  hostPort: number,
  greeting: string,
  image = TEST_IMAGE,
): DesiredStateInput {
  return podmanDeployment(deployment, [{
    name: "web",
    image,
    command: [
      "sh",
      "-c",
      // PID 1 ignores SIGTERM unless it traps it: trap so stop/replace is quick.
      "trap 'exit 0' TERM; mkdir -p /tmp/www && echo \"$GREETING\" > /tmp/www/index.html && " +
      "httpd -f -p 80 -h /tmp/www & wait",
    ],
    env: { GREETING: greeting },
    ports: [`127.0.0.1:${hostPort}:80`],
  }]);
}

/** A deployment of one or more `sleep` services (no ports). */
export function sleepDeployment(
  deployment: string,
  services: string[] = ["main"],
  marker = "1",
  image = TEST_IMAGE,
): DesiredStateInput {
  return podmanDeployment(
    deployment,
    services.map((name) => ({
      name,
      image,
      command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
      env: { MARKER: marker },
    })),
  );
}

/** Fetches `http://127.0.0.1:port/` until it answers with `text`. */
export async function waitForPage(port: number, text: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(async () => {
    const res = await fetchPublishedPort(port);
    const body = await res.text();
    return res.ok && body.trim() === text ? true : undefined;
  }, { timeoutMs, message: `page on 127.0.0.1:${port} says ${JSON.stringify(text)}` });
}

export { AgentProcess, freePort, waitFor };
