/**
 * The auth directory on disk: seeds (0600), public metadata, the device
 * registry and generated files. All writes are atomic (temp file + rename) and
 * secrets are created 0600 inside a 0700 directory.
 *
 * @module
 */

import { fromSeed, type KeyPair } from "@nats-io/jwt";
import { z } from "zod";
import { DeviceLabels, formatZodIssues } from "@drover/contracts";
import { AuthFileInvalidError, AuthNotInitializedError } from "./errors.ts";
import type { SigningKeys } from "./claims.ts";

/** File names inside the auth directory. */
export const AUTH_FILES = {
  /** Public metadata; its presence marks an initialised directory. */
  state: "auth.json",
  /** Device registry. */
  devices: "devices.json",
  /** Fragment for nats-server's config. */
  conf: "nats-auth.conf",
  /** Creds of the operator service. */
  operatorCreds: "operator.creds",
  /** Creds of `serve`'s connection guard: a system-account user limited to its subjects. */
  systemCreds: "system.creds",
  /** Seeds (secrets). */
  operatorSeed: "operator.nk",
  systemAccountSeed: "system-account.nk",
  accountSeed: "account.nk",
  accountSigningSeed: "account-signing.nk",
  devicesAccountSeed: "devices-account.nk",
  devicesAccountSigningSeed: "devices-account-signing.nk",
  /** The operator's xkey: the secret store's values are sealed to it. */
  secretsSeed: "secrets.xk",
} as const;

/** File mode of secrets (seeds, creds). */
export const SECRET_FILE_MODE = 0o600;
/** File mode of the auth directory. */
export const AUTH_DIR_MODE = 0o700;

/** Layout version of `auth.json`. */
export const AUTH_STATE_VERSION = 2;

/** Public facts about the keys, kept beside the seeds. */
export const AuthState = z.strictObject({
  /**
   * 2 since devices got an account of their own; a version 1 directory is
   * refused with a message saying to re-initialise (its device creds are in
   * the operator's account, which is exactly what version 2 fixes).
   */
  version: z.literal(AUTH_STATE_VERSION),
  created_at: z.string(),
  operator_public_key: z.string(),
  system_account_public_key: z.string(),
  account_public_key: z.string(),
  account_signing_public_key: z.string(),
  devices_account_public_key: z.string(),
  devices_account_signing_public_key: z.string(),
  /** Account limits; kept so that re-signing (on revoke) keeps them. */
  limits: z.strictObject({
    max_devices: z.number().int().positive(),
    max_operator_connections: z.number().int().positive(),
    storage_bytes: z.number().int().positive(),
  }),
  /**
   * Issued once and reused: nats-server cannot reload a changed operator, so
   * rewriting `nats-auth.conf` must not re-issue it (nor the system account).
   */
  operator_jwt: z.string(),
  system_account_jwt: z.string(),
});
/** Public facts about the keys. */
export type AuthState = z.infer<typeof AuthState>;

/** One provisioned device. */
export const DeviceRecord = z.strictObject({
  labels: DeviceLabels,
  user_public_key: z.string(),
  /** The xkey public key secrets are sealed to (its seed is `<id>.xk`); absent before secrets. */
  sealing_public_key: z.string().optional(),
  created_at: z.string(),
  /** When the creds expire (absent: never). */
  expires_at: z.string().optional(),
  /** Set once revoked: the device's creds no longer connect. */
  revoked_at: z.string().optional(),
  /** Public keys of earlier, revoked creds of the same id (kept so re-signing keeps them revoked). */
  revoked_keys: z.record(z.string(), z.number().int()).default({}),
});
/** One provisioned device. */
export type DeviceRecord = z.infer<typeof DeviceRecord>;

/** All provisioned devices, by id. */
export const DeviceRegistry = z.strictObject({
  version: z.literal(1),
  devices: z.record(z.string(), DeviceRecord),
});
/** All provisioned devices, by id. */
export type DeviceRegistry = z.infer<typeof DeviceRegistry>;

/** Absolute path of `name` inside `dir`. */
export function authPath(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, "")}/${name}`;
}

/** Creates `dir` (and parents) and forces its mode to 0700. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: AUTH_DIR_MODE });
  await Deno.chmod(dir, AUTH_DIR_MODE);
}

/** Writes `data` atomically with `mode` (the mode is set before the content lands). */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode: number,
): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID()}`;
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    await Deno.writeFile(tmp, bytes, { mode, createNew: true });
    await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

async function readJson<S extends z.ZodType>(path: string, schema: S): Promise<z.infer<S>> {
  const text = await Deno.readTextFile(path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new AuthFileInvalidError(path, `invalid JSON: ${(e as Error).message}`, { cause: e });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new AuthFileInvalidError(path, formatZodIssues(parsed.error));
  return parsed.data;
}

/** True when `dir` already holds an initialised auth state. */
export async function isInitialized(dir: string): Promise<boolean> {
  try {
    await Deno.lstat(authPath(dir, AUTH_FILES.state));
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Reads `auth.json`.
 * @throws {AuthNotInitializedError} when it is missing.
 * @throws {AuthFileInvalidError} when it is unreadable or from an older layout.
 */
export async function readAuthState(dir: string): Promise<AuthState> {
  const path = authPath(dir, AUTH_FILES.state);
  try {
    const text = await Deno.readTextFile(path);
    const version = (JSON.parse(text) as { version?: unknown })?.version;
    if (typeof version === "number" && version < AUTH_STATE_VERSION) {
      throw new AuthFileInvalidError(
        path,
        `it was written by an older Drover (layout ${version}) whose device creds live in the ` +
          `operator's NATS account. Re-create the keys with "operator auth init --dir ${dir} ` +
          `--force", reload nats-server and provision every device again (see docs/security.md)`,
      );
    }
  } catch (e) {
    if (e instanceof AuthFileInvalidError) throw e;
    // Missing or unparsable files are reported below with the usual messages.
  }
  try {
    return await readJson(path, AuthState);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new AuthNotInitializedError(dir, { cause: e });
    throw e;
  }
}

/** Reads `devices.json` (an empty registry when it does not exist yet). */
export async function readDeviceRegistry(dir: string): Promise<DeviceRegistry> {
  try {
    return await readJson(authPath(dir, AUTH_FILES.devices), DeviceRegistry);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { version: 1, devices: {} };
    throw e;
  }
}

/** Writes `devices.json`. */
export async function writeDeviceRegistry(dir: string, registry: DeviceRegistry): Promise<void> {
  await writeFileAtomic(
    authPath(dir, AUTH_FILES.devices),
    JSON.stringify(registry, null, 2) + "\n",
    SECRET_FILE_MODE,
  );
}

async function readSeed(dir: string, name: string, expectedPublicKey: string): Promise<KeyPair> {
  const path = authPath(dir, name);
  let kp: KeyPair;
  try {
    kp = fromSeed(new TextEncoder().encode((await Deno.readTextFile(path)).trim()));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new AuthNotInitializedError(dir, { cause: e });
    throw new AuthFileInvalidError(path, `not an nkey seed (${(e as Error).message})`, {
      cause: e,
    });
  }
  if (kp.getPublicKey() !== expectedPublicKey) {
    throw new AuthFileInvalidError(
      path,
      `its public key ${kp.getPublicKey()} is not the ${expectedPublicKey} recorded in auth.json`,
    );
  }
  return kp;
}

/** Loads the signing seeds and checks them against `auth.json`. */
export async function readSigningKeys(dir: string, state: AuthState): Promise<SigningKeys> {
  return {
    operator: await readSeed(dir, AUTH_FILES.operatorSeed, state.operator_public_key),
    systemAccount: await readSeed(
      dir,
      AUTH_FILES.systemAccountSeed,
      state.system_account_public_key,
    ),
    account: await readSeed(dir, AUTH_FILES.accountSeed, state.account_public_key),
    accountSigning: await readSeed(
      dir,
      AUTH_FILES.accountSigningSeed,
      state.account_signing_public_key,
    ),
    devicesAccount: await readSeed(
      dir,
      AUTH_FILES.devicesAccountSeed,
      state.devices_account_public_key,
    ),
    devicesAccountSigning: await readSeed(
      dir,
      AUTH_FILES.devicesAccountSigningSeed,
      state.devices_account_signing_public_key,
    ),
  };
}

/** Writes one seed as a 0600 file. */
export async function writeSeed(dir: string, name: string, kp: KeyPair): Promise<void> {
  await writeFileAtomic(authPath(dir, name), kp.getSeed(), SECRET_FILE_MODE);
}
