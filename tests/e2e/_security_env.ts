/**
 * Shared pieces of the security tests: an auth directory made by the real
 * `operator/auth` code, a nats-server that includes its fragment (and can be
 * told to reload), and connections as the operator or as a device.
 *
 * @module
 */

import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from "@nats-io/transport-node";
import { type KV, Kvm } from "@nats-io/kv";
import { BUCKET_DESIRED_STATE, BUCKET_DEVICES } from "@drover/contracts";
import {
  authInit,
  deviceAdd,
  deviceInboxPrefix,
  type FleetLimits,
} from "../../operator/auth/mod.ts";
import { readDeviceRegistry } from "../../operator/auth/store.ts";
import {
  DEFAULT_HISTORY,
  DEFAULT_REPLICAS,
  ensureBuckets,
  openBucket,
} from "../../operator/nats/kv.ts";
import { DesiredSnapshotService } from "../../operator/devices/snapshots.ts";
import { registerDevice } from "../../operator/fleet/registry.ts";
import { type NatsServer, startNats, type TempDir, tempDir, waitFor } from "../support/mod.ts";

/**
 * An `include` line that works from any config directory. nats-server joins
 * include paths to the including file's directory (an absolute path included
 * from /a/b becomes /a/b/abs/path), so climb to / first; `..` at / stays at /.
 */
export function includeAbsolute(path: string): string {
  return `include ${JSON.stringify("../".repeat(40) + path.replace(/^\/+/, ""))}`;
}

/** An auth directory with devices, and a nats-server that trusts it. */
export class SecureNats implements AsyncDisposable {
  constructor(
    readonly authDir: TempDir,
    readonly nats: NatsServer,
    readonly pidFile: string,
  ) {}

  /** `DIR/<name>`. */
  path(name: string): string {
    return `${this.authDir.path}/${name}`;
  }

  /** Asks the server to re-read its config (as `nats-server --signal reload` does). */
  async reload(): Promise<void> {
    const pid = Number((await Deno.readTextFile(this.pidFile)).trim());
    const before = await this.#configLoadTime();
    Deno.kill(pid, "SIGHUP");
    // /varz's config_load_time changes only when a reload succeeded.
    await waitFor(async () => (await this.#configLoadTime()) !== before, {
      timeoutMs: 10_000,
      message: `nats-server reloaded its config ${this.nats.configPath}`,
    });
  }

  async #configLoadTime(): Promise<string> {
    const res = await fetch(`${this.nats.monitorUrl}/varz`);
    return (await res.json() as { config_load_time: string }).config_load_time;
  }

  /** Connects with the operator's creds. */
  async operator(extra: Partial<NodeConnectionOptions> = {}): Promise<NatsConnection> {
    return await connect({
      servers: this.nats.url,
      authenticator: credsAuthenticator(await Deno.readFile(this.path("operator.creds"))),
      ...extra,
    });
  }

  /** Connects as device `id` with its creds and inbox prefix, as the agent does. */
  async device(
    id: string,
    creds?: Uint8Array,
    extra: Partial<NodeConnectionOptions> = {},
  ): Promise<NatsConnection> {
    return await connect({
      servers: this.nats.url,
      inboxPrefix: deviceInboxPrefix(id),
      authenticator: credsAuthenticator(creds ?? await Deno.readFile(this.path(`${id}.creds`))),
      ...extra,
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.nats[Symbol.asyncDispose]();
    await this.authDir[Symbol.asyncDispose]();
  }
}

/** Options of {@linkcode startSecureNats}. */
export interface SecureNatsOptions {
  /** Devices to provision, with their labels. */
  devices?: Record<string, Record<string, string>>;
  /** Extra server config (e.g. a `tls {}` block). */
  extraConfig?: string;
  /** Account limits given to `auth init` (e.g. a small `maxDevices`). */
  limits?: Partial<FleetLimits>;
}

/**
 * Runs `auth init` and `device add` for each device, then starts nats-server
 * with the fragment and registers each device's labels in the device registry
 * as the operator (what `device add --label` does).
 */
export async function startSecureNats(options: SecureNatsOptions = {}): Promise<SecureNats> {
  const authDir = await tempDir("drover-auth-");
  try {
    const { confPath } = await authInit(authDir.path, { limits: options.limits ?? {} });
    for (const [id, labels] of Object.entries(options.devices ?? {})) {
      await deviceAdd(authDir.path, id, { labels });
    }
    const pidFile = `${authDir.path}/nats.pid`;
    const nats = await startNats({
      extraConfig: [
        `pid_file: ${JSON.stringify(pidFile)}`,
        includeAbsolute(confPath),
        options.extraConfig ?? "",
      ].join("\n"),
    });
    const env = new SecureNats(authDir, nats, pidFile);
    try {
      await registerLabels(env, options.devices ?? {});
    } catch (e) {
      await nats[Symbol.asyncDispose]();
      throw e;
    }
    return env;
  } catch (e) {
    await authDir[Symbol.asyncDispose]();
    throw e;
  }
}

/** Registers each device's labels and sealing key in the `devices` bucket with the operator's creds. */
async function registerLabels(
  env: SecureNats,
  devices: Record<string, Record<string, string>>,
): Promise<void> {
  if (Object.keys(devices).length === 0) return;
  const nc = await env.operator();
  try {
    const kv = await openBucket(nc, BUCKET_DEVICES, {
      history: DEFAULT_HISTORY,
      replicas: DEFAULT_REPLICAS,
    });
    // With the sealing key's public half, as `device add` registers it.
    const issued = (await readDeviceRegistry(env.authDir.path)).devices;
    for (const [id, labels] of Object.entries(devices)) {
      await registerDevice(kv!, id, labels, undefined, issued[id]?.sealing_public_key);
    }
  } finally {
    await nc.close();
  }
}

/**
 * Creates (or opens) Drover's buckets as `operator serve` does — including
 * the stream settings it enforces (no rollups where devices write).
 */
export async function createBuckets(
  nc: NatsConnection,
): Promise<{ desired: KV; status: KV; deployments: KV }> {
  const { desired, status, deployments } = await ensureBuckets(nc);
  return { desired, status, deployments };
}

/**
 * The operator's real snapshot service on `nc` (what `operator serve` runs),
 * for tests that write desired state themselves.
 */
export async function startSnapshots(nc: NatsConnection): Promise<DesiredSnapshotService> {
  const service = new DesiredSnapshotService(nc, await new Kvm(nc).open(BUCKET_DESIRED_STATE));
  void service.start();
  return service;
}
