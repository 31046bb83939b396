/**
 * `auth init`: create the operator, system account and `DROVER` account keys
 * once, and write the server fragment and the operator service's creds.
 *
 * @module
 */

import { resolve } from "node:path";
import { createAccount, createOperator, createUser, fmtCreds } from "@nats-io/jwt";
import { AuthAlreadyInitializedError } from "./errors.ts";
import {
  DEFAULT_FLEET_LIMITS,
  encodeConnectionGuardUserJwt,
  encodeDevicesAccountJwt,
  encodeDroverAccountJwt,
  encodeOperatorJwt,
  encodeOperatorUserJwt,
  encodeSystemAccountJwt,
  type FleetLimits,
  renderAuthConf,
  type Revocations,
  type SigningKeys,
} from "./claims.ts";
import { createReleaseKey } from "./release_key.ts";
import {
  AUTH_FILES,
  AUTH_STATE_VERSION,
  authPath,
  type AuthState,
  type DeviceRegistry,
  ensurePrivateDir,
  isInitialized,
  readAuthState,
  readDeviceRegistry,
  readSigningKeys,
  SECRET_FILE_MODE,
  writeDeviceRegistry,
  writeFileAtomic,
  writeSeed,
} from "./store.ts";

/** File mode of the server fragment: it holds only public JWTs. */
export const CONF_FILE_MODE = 0o644;

/** Options of {@linkcode authInit}. */
export interface AuthInitOptions {
  /** Replace existing keys (every existing creds file stops working). */
  force?: boolean;
  /** Account limits; {@linkcode DEFAULT_FLEET_LIMITS} where not given. */
  limits?: Partial<FleetLimits>;
}

/** What {@linkcode authInit} wrote. */
export interface AuthInitResult {
  /** Absolute path of the fragment to `include` in nats-server's config. */
  confPath: string;
  /** Absolute path of the operator service's creds. */
  operatorCredsPath: string;
  /** Absolute path of the connection guard's system-account creds (`serve --system-creds`). */
  systemCredsPath: string;
  /** Public key of the `DROVER` account. */
  accountPublicKey: string;
  /** Public key of the `DROVER_DEVICES` account. */
  devicesAccountPublicKey: string;
}

/** Every public key revoked in the registry, with its revocation time. */
export function revocationsOf(registry: DeviceRegistry): Revocations {
  const out: Revocations = {};
  for (const record of Object.values(registry.devices)) Object.assign(out, record.revoked_keys);
  return out;
}

/** The limits recorded in `auth.json`. */
export function limitsOf(state: Pick<AuthState, "limits">): FleetLimits {
  return {
    maxDevices: state.limits.max_devices,
    maxOperatorConnections: state.limits.max_operator_connections,
    storageBytes: state.limits.storage_bytes,
  };
}

/**
 * Re-signs the account JWTs (the devices' one with the registry's
 * revocations) and rewrites `nats-auth.conf`.
 */
export async function writeAuthConf(
  dir: string,
  keys: SigningKeys,
  state: Pick<AuthState, "operator_jwt" | "system_account_jwt" | "limits">,
  registry: DeviceRegistry,
): Promise<string> {
  const confPath = authPath(dir, AUTH_FILES.conf);
  const limits = limitsOf(state);
  const conf = renderAuthConf({
    operatorJwt: state.operator_jwt,
    systemAccountPublicKey: keys.systemAccount.getPublicKey(),
    accountJwts: {
      [keys.systemAccount.getPublicKey()]: state.system_account_jwt,
      [keys.account.getPublicKey()]: await encodeDroverAccountJwt(keys, limits),
      [keys.devicesAccount.getPublicKey()]: await encodeDevicesAccountJwt(
        keys,
        limits,
        revocationsOf(registry),
      ),
    },
  });
  await writeFileAtomic(confPath, conf, CONF_FILE_MODE);
  return confPath;
}

/**
 * Creates the keys in `dir` (0700; seeds and creds 0600) and writes
 * `nats-auth.conf` and `operator.creds`.
 *
 * @throws {AuthAlreadyInitializedError} when `dir` already holds keys and `force` is not set.
 */
export async function authInit(
  dir: string,
  options: AuthInitOptions = {},
): Promise<AuthInitResult> {
  const absDir = resolve(dir);
  if (await isInitialized(absDir)) {
    if (!options.force) throw new AuthAlreadyInitializedError(absDir);
    await forgetDevices(absDir);
  }
  await ensurePrivateDir(absDir);
  const keys: SigningKeys = {
    operator: createOperator(),
    systemAccount: createAccount(),
    account: createAccount(),
    accountSigning: createAccount(),
    devicesAccount: createAccount(),
    devicesAccountSigning: createAccount(),
  };
  const limits = { ...DEFAULT_FLEET_LIMITS, ...options.limits };
  await writeSeed(absDir, AUTH_FILES.operatorSeed, keys.operator);
  await writeSeed(absDir, AUTH_FILES.systemAccountSeed, keys.systemAccount);
  await writeSeed(absDir, AUTH_FILES.accountSeed, keys.account);
  await writeSeed(absDir, AUTH_FILES.accountSigningSeed, keys.accountSigning);
  await writeSeed(absDir, AUTH_FILES.devicesAccountSeed, keys.devicesAccount);
  await writeSeed(absDir, AUTH_FILES.devicesAccountSigningSeed, keys.devicesAccountSigning);
  const registry: DeviceRegistry = { version: 1, devices: {} };
  await writeDeviceRegistry(absDir, registry);
  const state: AuthState = {
    version: AUTH_STATE_VERSION,
    created_at: new Date().toISOString(),
    operator_public_key: keys.operator.getPublicKey(),
    system_account_public_key: keys.systemAccount.getPublicKey(),
    account_public_key: keys.account.getPublicKey(),
    account_signing_public_key: keys.accountSigning.getPublicKey(),
    devices_account_public_key: keys.devicesAccount.getPublicKey(),
    devices_account_signing_public_key: keys.devicesAccountSigning.getPublicKey(),
    limits: {
      max_devices: limits.maxDevices,
      max_operator_connections: limits.maxOperatorConnections,
      storage_bytes: limits.storageBytes,
    },
    operator_jwt: await encodeOperatorJwt(keys),
    system_account_jwt: await encodeSystemAccountJwt(keys),
  };
  const confPath = await writeAuthConf(absDir, keys, state, registry);

  // Signs agent releases; devices provisioned from now on trust it (docs/security.md).
  await createReleaseKey(absDir);

  const operatorUser = createUser();
  const operatorCredsPath = authPath(absDir, AUTH_FILES.operatorCreds);
  await writeFileAtomic(
    operatorCredsPath,
    fmtCreds(await encodeOperatorUserJwt(keys, operatorUser), operatorUser),
    SECRET_FILE_MODE,
  );

  const systemCredsPath = await writeSystemCreds(absDir, keys);

  // Written last: its presence is what marks the directory as initialised.
  await writeFileAtomic(
    authPath(absDir, AUTH_FILES.state),
    JSON.stringify(state, null, 2) + "\n",
    SECRET_FILE_MODE,
  );
  return {
    confPath,
    operatorCredsPath,
    systemCredsPath,
    accountPublicKey: state.account_public_key,
    devicesAccountPublicKey: state.devices_account_public_key,
  };
}

/**
 * Writes `DIR/system.creds` (0600): a new user of the system account that may do only what
 * `serve`'s connection guard does (claims.ts, `encodeConnectionGuardUserJwt`). Returns its path.
 */
async function writeSystemCreds(dir: string, keys: SigningKeys): Promise<string> {
  const user = createUser();
  const path = authPath(dir, AUTH_FILES.systemCreds);
  await writeFileAtomic(
    path,
    fmtCreds(await encodeConnectionGuardUserJwt(keys, user), user),
    SECRET_FILE_MODE,
  );
  return path;
}

/**
 * Issues the connection guard's creds in an initialised auth directory (made before `auth init`
 * wrote them, or to replace them). Returns the path of `DIR/system.creds`.
 *
 * @throws {AuthNotInitializedError} when `auth init` has not run for `dir`.
 */
export async function issueSystemCreds(dir: string): Promise<string> {
  const absDir = resolve(dir);
  const keys = await readSigningKeys(absDir, await readAuthState(absDir));
  return await writeSystemCreds(absDir, keys);
}

/** Removes the creds and configs of devices signed by keys that are about to be replaced. */
async function forgetDevices(dir: string): Promise<void> {
  const registry = await readDeviceRegistry(dir).catch(() => undefined);
  for (const id of Object.keys(registry?.devices ?? {})) {
    for (const file of [`${id}.creds`, `${id}.toml`]) {
      await Deno.remove(authPath(dir, file)).catch(() => {});
    }
  }
  await Deno.remove(authPath(dir, AUTH_FILES.state)).catch(() => {});
}
