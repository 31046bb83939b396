/**
 * A real nats-server with JetStream for tests: loopback only, free ports, its own store.
 *
 * @module
 */

import { logTail, ManagedProcess, waitUntilReady } from "./_managed_process.ts";
import { killAll, processesReferencing } from "./_host.ts";
import { createOwnedDir, type OwnedDir, sweepAbandonedDirs } from "./_owned_dir.ts";
import { HarnessError, ServiceStartError } from "./errors.ts";
import { acceptsConnections, freePort } from "./ports.ts";
import { waitFor } from "./wait_for.ts";

/**
 * The nats-server binary tests run: `DROVER_NATS_SERVER` when set (the server
 * matrix points it at Debian trixie's 2.10, fetched by scripts/trixie_nats.sh),
 * else `nats-server` on PATH (Debian bookworm's 2.9). Set but empty is an error: it is what
 * `DROVER_NATS_SERVER=$(scripts/trixie_nats.sh …)` gives when the fetch failed, and running the
 * 2.10 pass on 2.9 instead would pass while testing nothing new.
 */
export function natsServerCommand(env = Deno.env.get("DROVER_NATS_SERVER")): string {
  if (env === undefined) return "nats-server";
  if (env.trim() === "") {
    throw new HarnessError(
      "Cannot choose a nats-server: DROVER_NATS_SERVER is set but empty (did scripts/trixie_nats.sh fail?)",
    );
  }
  return env;
}

/** How long {@linkcode startNats} (and restart) waits for the server to be ready. */
export const NATS_START_TIMEOUT_MS = 20_000;

/** Options of {@linkcode startNats}. */
export interface StartNatsOptions {
  /** Client port on 127.0.0.1 (default: a free port). */
  port?: number | undefined;
  /**
   * JetStream store directory (default: `jetstream/` inside the server's temp dir). A directory
   * given here belongs to the caller and is not removed on dispose, so a later server can reuse it.
   */
  storeDir?: string;
  /**
   * Config text appended after the generated `listen`/`http`/`jetstream` settings, e.g. an
   * `include "auth.conf"` line, an `authorization {…}` or a `tls {…}` block.
   */
  extraConfig?: string;
}

/** A running (or stopped, restartable) nats-server. */
export interface NatsServer extends AsyncDisposable {
  /** Client URL, `nats://127.0.0.1:PORT`. */
  readonly url: string;
  /** Client port. */
  readonly port: number;
  /** JetStream store directory; survives {@linkcode NatsServer.restart}. */
  readonly storeDir: string;
  /** Monitoring endpoint, `http://127.0.0.1:MPORT` (`/healthz`, `/varz`, `/jsz`, …). */
  readonly monitorUrl: string;
  /** Server directory holding `nats.conf` and `nats.log`. */
  readonly dir: string;
  /** Path of the generated config file. */
  readonly configPath: string;
  /** Path of the server log (appended across restarts). */
  readonly logPath: string;
  /** True while the server process runs. */
  readonly running: boolean;
  /** Graceful stop: SIGTERM, then SIGKILL if it does not exit in time. Idempotent. */
  stop(): Promise<void>;
  /** Hard stop (SIGKILL), as in a crash or power loss. Idempotent. */
  kill(): Promise<void>;
  /** Stops the server if it runs and starts it again on the same ports and store. */
  restart(): Promise<void>;
}

/**
 * Starts nats-server with JetStream on 127.0.0.1 and waits until it accepts clients and reports
 * healthy. Dispose with `await using` to stop it and remove its directory.
 *
 * @example
 * ```ts
 * await using nats = await startNats();
 * const nc = await connect({ servers: nats.url });
 * ```
 *
 * @throws {ServiceStartError} with the server's log tail if it does not come up.
 */
export async function startNats(options: StartNatsOptions = {}): Promise<NatsServer> {
  await sweepAbandonedDirs("nats", killProcessesReferencing);
  const owned = await createOwnedDir("nats");
  try {
    const port = options.port ?? await freePort();
    const monitorPort = await freePort();
    const storeDir = options.storeDir ?? `${owned.path}/jetstream`;
    const configPath = `${owned.path}/nats.conf`;
    await Deno.writeTextFile(
      configPath,
      natsConfig({ port, monitorPort, storeDir, extraConfig: options.extraConfig }),
    );
    const server = new NatsServerProcess(owned, configPath, port, monitorPort, storeDir);
    await server.start();
    return server;
  } catch (error) {
    await owned.remove();
    throw error;
  }
}

/** Inputs of {@linkcode natsConfig}. */
export interface NatsConfigInput {
  /** Client port. */
  port: number;
  /** HTTP monitoring port. */
  monitorPort: number;
  /** JetStream store directory. */
  storeDir: string;
  /** Text appended verbatim. */
  extraConfig?: string | undefined;
}

/** Renders the nats-server config used by {@linkcode startNats} (pure; exported for tests). */
export function natsConfig(input: NatsConfigInput): string {
  // JSON string literals are valid quoted strings in the NATS config format.
  return [
    `listen: ${JSON.stringify(`127.0.0.1:${input.port}`)}`,
    `http: ${JSON.stringify(`127.0.0.1:${input.monitorPort}`)}`,
    `jetstream {`,
    `  store_dir: ${JSON.stringify(input.storeDir)}`,
    `}`,
    input.extraConfig ?? "",
    "",
  ].join("\n");
}

class NatsServerProcess implements NatsServer {
  readonly url: string;
  readonly monitorUrl: string;
  readonly logPath: string;
  #process: ManagedProcess | undefined;

  constructor(
    readonly owned: OwnedDir,
    readonly configPath: string,
    readonly port: number,
    readonly monitorPort: number,
    readonly storeDir: string,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
    this.monitorUrl = `http://127.0.0.1:${monitorPort}`;
    this.logPath = `${owned.path}/nats.log`;
  }

  get dir(): string {
    return this.owned.path;
  }

  get running(): boolean {
    return this.#process?.running ?? false;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const process = await ManagedProcess.spawn({
      command: natsServerCommand(),
      args: ["--config", this.configPath],
      logPath: this.logPath,
    });
    this.#process = process;
    try {
      await waitUntilReady(
        process,
        async () => await acceptsConnections(this.port) && await this.#healthy(),
        { timeoutMs: NATS_START_TIMEOUT_MS, message: "nats-server ready" },
      );
    } catch (error) {
      await process.kill();
      const exited = await process.exited;
      throw new ServiceStartError(
        "nats-server",
        `not ready on ${this.url} (exit code ${exited.code}, config ${this.configPath})`,
        await logTail(this.logPath),
        { cause: error },
      );
    }
  }

  async #healthy(): Promise<boolean> {
    try {
      const res = await fetch(`${this.monitorUrl}/healthz?js-enabled-only=true`);
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  async stop(): Promise<void> {
    await this.#process?.stop();
  }

  async kill(): Promise<void> {
    await this.#process?.kill();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await this.owned.remove();
  }
}

async function killProcessesReferencing(dir: string): Promise<void> {
  killAll((await processesReferencing(dir)).map((p) => p.pid));
}

/** A nats-server cluster on loopback; every node has JetStream and its own store. */
export interface NatsCluster extends AsyncDisposable {
  /** The nodes, in start order (`n1`, `n2`, …). */
  readonly nodes: NatsServer[];
  /** Every node's client URL. */
  readonly urls: string[];
  /** The node currently leading JetStream's meta group (or one of the nodes' streams). */
  leaderOf(stream?: string): Promise<NatsServer>;
}

/**
 * Starts `size` nats-servers routed into one cluster with JetStream, and
 * waits until JetStream's meta group has a leader.
 */
export async function startNatsCluster(
  size = 3,
  options: { extraConfig?: string } = {},
): Promise<NatsCluster> {
  const clientPorts: number[] = [];
  const clusterPorts: number[] = [];
  for (let i = 0; i < size; i++) {
    clientPorts.push(await freePort());
    clusterPorts.push(await freePort());
  }
  const nodes: NatsServer[] = [];
  try {
    for (let i = 0; i < size; i++) {
      const routes = clusterPorts.filter((_, j) => j !== i).map((p) =>
        JSON.stringify(`nats-route://127.0.0.1:${p}`)
      );
      nodes.push(
        await startNats({
          port: clientPorts[i],
          extraConfig: [
            `server_name: "n${i + 1}"`,
            "cluster {",
            '  name: "drover-test"',
            `  listen: ${JSON.stringify(`127.0.0.1:${clusterPorts[i]}`)}`,
            `  routes: [${routes.join(", ")}]`,
            "}",
            options.extraConfig ?? "",
          ].join("\n"),
        }),
      );
    }
    const cluster = new LoopbackCluster(nodes);
    await waitFor(async () => (await cluster.metaLeaderName()) !== undefined, {
      timeoutMs: 30_000,
      message: "the cluster elects a JetStream meta leader",
    });
    return cluster;
  } catch (error) {
    for (const node of nodes) await Promise.resolve(node[Symbol.asyncDispose]()).catch(() => {});
    throw error;
  }
}

class LoopbackCluster implements NatsCluster {
  constructor(readonly nodes: NatsServer[]) {}

  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** The meta leader's server name, asked of any running node. */
  async metaLeaderName(): Promise<string | undefined> {
    for (const node of this.nodes) {
      if (!node.running) continue;
      try {
        const res = await fetch(`${node.monitorUrl}/jsz`);
        const jsz = await res.json() as { meta_cluster?: { leader?: string } };
        if (jsz.meta_cluster?.leader) return jsz.meta_cluster.leader;
      } catch {
        // that node is not answering; ask the next
      }
    }
    return undefined;
  }

  async leaderOf(stream?: string): Promise<NatsServer> {
    const name = await waitFor(async () => {
      if (stream === undefined) return await this.metaLeaderName();
      for (const node of this.nodes) {
        if (!node.running) continue;
        try {
          const res = await fetch(`${node.monitorUrl}/jsz?streams=true`);
          const jsz = await res.json() as {
            account_details?: {
              stream_detail?: { name: string; cluster?: { leader?: string } }[];
            }[];
          };
          for (const account of jsz.account_details ?? []) {
            for (const detail of account.stream_detail ?? []) {
              if (detail.name === stream && detail.cluster?.leader) return detail.cluster.leader;
            }
          }
        } catch {
          // ask the next node
        }
      }
      return undefined;
    }, { timeoutMs: 30_000, message: `a leader for ${stream ?? "the meta group"}` });
    const index = Number(name.replace(/^n/, "")) - 1;
    const node = this.nodes[index];
    if (node === undefined) throw new Error(`unknown leader name ${name}`);
    return node;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const node of this.nodes) {
      await Promise.resolve(node[Symbol.asyncDispose]()).catch(() => {});
    }
  }
}
