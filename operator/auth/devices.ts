/**
 * Provisioning and revoking devices: `device add`, `device revoke`, `device list`.
 *
 * Adding a device signs a user JWT with the account's signing key; the server
 * needs no change, because it trusts every user the account signs. Revoking
 * adds the user's public key to the account JWT's revocation list, which the
 * server learns from `nats-auth.conf` on its next reload.
 *
 * @module
 */

import { resolve } from "node:path";
import { createUser, fmtCreds } from "@nats-io/jwt";
import { createSealingKey, sealingSeedText } from "@drover/common";
import {
  DEFAULT_NATS_SERVER,
  DeviceLabels,
  formatZodIssues,
  InvalidNameError,
  nameProblem,
} from "@drover/contracts";
import { AuthInputError, DeviceExistsError, DeviceUnknownError } from "./errors.ts";
import { encodeDeviceUserJwt } from "./claims.ts";
import { renderDeviceToml } from "./device_config.ts";
import { readReleasePublicKey } from "./release_key.ts";
import { writeAuthConf } from "./init.ts";
import {
  authPath,
  type DeviceRecord,
  readAuthState,
  readDeviceRegistry,
  readSigningKeys,
  SECRET_FILE_MODE,
  writeDeviceRegistry,
  writeFileAtomic,
} from "./store.ts";

/** Options of {@linkcode deviceAdd}. */
export interface DeviceAddOptions {
  /** Device labels (`site=lab`). */
  labels?: Record<string, string>;
  /** NATS URLs written into the device's config; defaults to {@linkcode DEFAULT_NATS_SERVER}. */
  servers?: string[];
  /** CA file path written into the device's config as `[nats] tls_ca`. */
  tlsCa?: string;
  /** When the creds stop working (the server refuses them after this time). */
  expiresAt?: Date;
}

/** What {@linkcode deviceAdd} wrote. */
export interface DeviceAddResult {
  deviceId: string;
  /** Absolute path of the device's creds (secret, 0600). */
  credsPath: string;
  /** Absolute path of the device's agent config. */
  configPath: string;
  /** The user's public key (what a revocation names). */
  userPublicKey: string;
  /** Absolute path of the device's sealing key (xkey seed, secret, 0600). */
  sealingKeyPath: string;
  /** Its public half: what the registry records and secrets are sealed to. */
  sealingPublicKey: string;
  /** When the creds expire, if they do. */
  expiresAt?: Date;
}

/** One row of {@linkcode deviceList}. */
export interface DeviceListEntry {
  id: string;
  labels: Record<string, string>;
  userPublicKey: string;
  createdAt: string;
  expiresAt?: string;
  revokedAt?: string;
}

const SERVER_SCHEMES = new Set(["nats:", "tls:", "ws:", "wss:"]);

/** Checks a device id and returns it. @throws {AuthInputError} */
export function checkDeviceId(id: string): string {
  const problem = nameProblem(id);
  if (problem !== undefined) {
    throw new AuthInputError(new InvalidNameError("device id", id, problem).message);
  }
  return id;
}

/** Checks labels with the contract's schema. @throws {AuthInputError} naming the label */
export function checkLabels(labels: Record<string, string>): Record<string, string> {
  const parsed = DeviceLabels.safeParse(labels);
  if (!parsed.success) {
    throw new AuthInputError(`Invalid --label: ${formatZodIssues(parsed.error)}`);
  }
  return parsed.data;
}

/** Checks NATS server URLs. @throws {AuthInputError} naming the URL */
export function checkServers(servers: string[]): string[] {
  for (const server of servers) {
    let url: URL | undefined;
    try {
      url = new URL(server);
    } catch {
      url = undefined;
    }
    if (url === undefined || !SERVER_SCHEMES.has(url.protocol) || url.hostname === "") {
      throw new AuthInputError(
        `Invalid --server ${JSON.stringify(server)}: expected a URL such as nats://host:4222 ` +
          "(schemes nats, tls, ws, wss)",
      );
    }
  }
  return servers;
}

/**
 * Issues creds for device `id` and writes `DIR/<id>.creds` (0600) and
 * `DIR/<id>.toml`. A revoked id may be added again; it gets a new key.
 *
 * @throws {DeviceExistsError} when `id` already has unrevoked creds.
 * @throws {AuthNotInitializedError} when `auth init` has not run for `dir`.
 */
export async function deviceAdd(
  dir: string,
  id: string,
  options: DeviceAddOptions = {},
): Promise<DeviceAddResult> {
  const absDir = resolve(dir);
  const deviceId = checkDeviceId(id);
  const labels = checkLabels(options.labels ?? {});
  const servers = checkServers(options.servers ?? [DEFAULT_NATS_SERVER]);
  const state = await readAuthState(absDir);
  const keys = await readSigningKeys(absDir, state);
  const registry = await readDeviceRegistry(absDir);
  const previous = registry.devices[deviceId];
  if (previous !== undefined && previous.revoked_at === undefined) {
    throw new DeviceExistsError(deviceId);
  }

  const user = createUser();
  // A new key on every add: re-provisioning a device rotates it.
  const sealing = createSealingKey();
  const credsPath = authPath(absDir, `${deviceId}.creds`);
  const configPath = authPath(absDir, `${deviceId}.toml`);
  const sealingKeyPath = authPath(absDir, `${deviceId}.xk`);
  const releaseKey = await readReleasePublicKey(absDir);
  const toml = renderDeviceToml({
    deviceId,
    labels,
    servers,
    ...(releaseKey !== undefined ? { releaseKey } : {}),
    ...(options.tlsCa !== undefined ? { tlsCa: resolve(options.tlsCa) } : {}),
  });
  await writeFileAtomic(
    credsPath,
    fmtCreds(
      await encodeDeviceUserJwt(keys, deviceId, user, {
        ...(options.expiresAt !== undefined
          ? { expiresAt: Math.floor(options.expiresAt.getTime() / 1000) }
          : {}),
      }),
      user,
    ),
    SECRET_FILE_MODE,
  );
  await writeFileAtomic(sealingKeyPath, sealingSeedText(sealing) + "\n", SECRET_FILE_MODE);
  await writeFileAtomic(configPath, toml, SECRET_FILE_MODE);
  const record: DeviceRecord = {
    labels,
    user_public_key: user.getPublicKey(),
    sealing_public_key: sealing.getPublicKey(),
    created_at: new Date().toISOString(),
    ...(options.expiresAt !== undefined ? { expires_at: options.expiresAt.toISOString() } : {}),
    revoked_keys: previous?.revoked_keys ?? {},
  };
  registry.devices[deviceId] = record;
  await writeDeviceRegistry(absDir, registry);
  return {
    deviceId,
    credsPath,
    configPath,
    userPublicKey: record.user_public_key,
    sealingKeyPath,
    sealingPublicKey: sealing.getPublicKey(),
    ...(options.expiresAt !== undefined ? { expiresAt: options.expiresAt } : {}),
  };
}

/** What {@linkcode deviceRevoke} did. */
export interface DeviceRevokeResult {
  deviceId: string;
  userPublicKey: string;
  /** The rewritten fragment; nats-server must reload it. */
  confPath: string;
  /** False when the device was already revoked (nothing changed). */
  changed: boolean;
}

/**
 * Revokes device `id`: its user key joins the account's revocation list, the
 * account JWT is re-signed and `nats-auth.conf` rewritten. The server applies
 * it on reload (`nats-server --signal reload`, or SIGHUP), and then also
 * closes the device's open connections. The creds file is removed.
 *
 * @throws {DeviceUnknownError} when `id` was never added.
 */
export async function deviceRevoke(dir: string, id: string): Promise<DeviceRevokeResult> {
  const absDir = resolve(dir);
  const deviceId = checkDeviceId(id);
  const state = await readAuthState(absDir);
  const keys = await readSigningKeys(absDir, state);
  const registry = await readDeviceRegistry(absDir);
  const record = registry.devices[deviceId];
  if (record === undefined) throw new DeviceUnknownError(deviceId);
  const changed = record.revoked_at === undefined;
  if (changed) {
    const now = new Date();
    // The server refuses every JWT of this key issued at or before this second.
    record.revoked_keys[record.user_public_key] = Math.ceil(now.getTime() / 1000);
    record.revoked_at = now.toISOString();
    await writeDeviceRegistry(absDir, registry);
  }
  const confPath = await writeAuthConf(absDir, keys, state, registry);
  await Deno.remove(authPath(absDir, `${deviceId}.creds`)).catch(() => {});
  await Deno.remove(authPath(absDir, `${deviceId}.xk`)).catch(() => {});
  return { deviceId, userPublicKey: record.user_public_key, confPath, changed };
}

/** Every device in the registry, sorted by id. */
export async function deviceList(dir: string): Promise<DeviceListEntry[]> {
  const absDir = resolve(dir);
  await readAuthState(absDir);
  const registry = await readDeviceRegistry(absDir);
  return Object.entries(registry.devices)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([id, r]) => ({
      id,
      labels: r.labels,
      userPublicKey: r.user_public_key,
      createdAt: r.created_at,
      ...(r.expires_at !== undefined ? { expiresAt: r.expires_at } : {}),
      ...(r.revoked_at !== undefined ? { revokedAt: r.revoked_at } : {}),
    }));
}
