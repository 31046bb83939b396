/**
 * The operator's secret store: `secrets/<name>` holds a secret's recent
 * versions, each sealed from and to the operator's own xkey (`secrets.xk` in
 * the auth directory, with its other keys). The plaintext exists only in the
 * memory of the process that sets a value or seals it to a device.
 *
 * @module
 */

import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { KeyPair } from "@nats-io/nkeys";
import {
  BUCKET_SECRETS,
  canonicalJson,
  decodeJson,
  MAX_SECRET_BYTES,
  nameProblem,
  SECRET_VERSIONS_KEPT,
  SecretRecord,
} from "@drover/contracts";
import {
  createSealingKey,
  openFrom,
  sealingKeyFromSeed,
  sealingSeedText,
  sealTo,
} from "@drover/common";
import {
  type BucketSettings,
  inheritedSettings,
  openBucket,
  retryWhileRecovering,
} from "../nats/kv.ts";
import { AUTH_FILES, authPath, SECRET_FILE_MODE, writeFileAtomic } from "../auth/store.ts";

/** A secret cannot be stored (bad name or value, changed meanwhile, wrong key). */
export class SecretStoreError extends Error {
  override name = "SecretStoreError";
}

/** Opens (creating when missing) the `secrets` bucket; one value per key: old versions live in it. */
export async function openSecretsBucket(
  nc: NatsConnection,
  settings?: BucketSettings,
): Promise<KV> {
  const given = settings ?? await inheritedSettings(nc);
  const kv = await retryWhileRecovering(() =>
    openBucket(nc, BUCKET_SECRETS, { ...given, history: 1 })
  );
  return kv!;
}

/** The operator's sealing key from `DIR/secrets.xk`; `undefined` when there is none yet. */
export async function readSecretsKey(dir: string): Promise<KeyPair | undefined> {
  const path = authPath(dir, AUTH_FILES.secretsSeed);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    return sealingKeyFromSeed(text);
  } catch (e) {
    throw new SecretStoreError(`${path} is not an xkey seed: ${(e as Error).message}`);
  }
}

/** The operator's sealing key, created (0600) on first use. */
export async function ensureSecretsKey(dir: string): Promise<KeyPair> {
  const existing = await readSecretsKey(dir);
  if (existing !== undefined) return existing;
  const key = createSealingKey();
  await writeFileAtomic(
    authPath(dir, AUTH_FILES.secretsSeed),
    sealingSeedText(key) + "\n",
    SECRET_FILE_MODE,
  );
  return key;
}

/** Checks a secret name (a DNS label). @throws {SecretStoreError} */
export function checkSecretName(name: string): string {
  const problem = nameProblem(name);
  if (problem !== undefined) {
    throw new SecretStoreError(`Invalid secret name ${JSON.stringify(name)}: ${problem}`);
  }
  return name;
}

/** Checks a secret value's size. @throws {SecretStoreError} */
export function checkSecretValue(name: string, value: Uint8Array): Uint8Array {
  if (value.length === 0) throw new SecretStoreError(`The value of secret "${name}" is empty`);
  if (value.length > MAX_SECRET_BYTES) {
    throw new SecretStoreError(
      `The value of secret "${name}" is ${value.length} bytes; at most ${MAX_SECRET_BYTES}`,
    );
  }
  return value;
}

/** Every secret in the store by name, with the KV revision of each (invalid values skipped). */
export async function readSecrets(kv: KV): Promise<Map<string, SecretRecord>> {
  const out = new Map<string, SecretRecord>();
  const keys = await retryWhileRecovering(async () => {
    const list: string[] = [];
    for await (const key of await kv.keys()) list.push(key);
    return list;
  });
  for (const key of keys.sort()) {
    const record = await readSecret(kv, key);
    if (record !== undefined) out.set(key, record.record);
  }
  return out;
}

/** One secret and its KV revision; `undefined` when there is none. */
export async function readSecret(
  kv: KV,
  name: string,
): Promise<{ record: SecretRecord; revision: number } | undefined> {
  const entry = await retryWhileRecovering(() => kv.get(name));
  if (entry === null || entry.operation !== "PUT") return undefined;
  const decoded = decodeJson(SecretRecord, entry.value);
  if (!decoded.ok) {
    throw new SecretStoreError(`The stored secret "${name}" is invalid: ${decoded.error}`);
  }
  return { record: decoded.value, revision: entry.revision };
}

/** The newest version of a record. */
export function latestVersion(record: SecretRecord): number {
  return record.versions[record.versions.length - 1]?.version ?? 0;
}

/** Opens `version` of `record` with the operator's key; `undefined` when it is not kept or not ours. */
export function openVersion(
  record: SecretRecord,
  key: KeyPair,
  version: number,
): Uint8Array | undefined {
  const stored = record.versions.find((v) => v.version === version);
  // Sealed from and to the record's key: a box made with another key does not open.
  return stored === undefined ? undefined : openFrom(key, record.key, stored.sealed);
}

/** What {@linkcode setSecret} did. */
export interface SetResult {
  version: number;
  /** False when the value equals the newest version's (nothing was written). */
  changed: boolean;
}

/**
 * Stores `value` as the next version of `name` (sealed to `key`), keeping the
 * last {@linkcode SECRET_VERSIONS_KEPT} versions. The same value as the
 * newest version changes nothing. Compare-and-set: a concurrent `set` makes
 * one of them retry.
 */
export async function setSecret(
  kv: KV,
  key: KeyPair,
  name: string,
  value: Uint8Array,
  now: () => Date = () => new Date(),
): Promise<SetResult> {
  checkSecretName(name);
  checkSecretValue(name, value);
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await readSecret(kv, name);
    if (current !== undefined && current.record.key !== key.getPublicKey()) {
      throw new SecretStoreError(
        `Secret "${name}" is sealed to another operator key (${current.record.key}) than ` +
          `this auth directory's (${key.getPublicKey()}); set it with that directory or delete it`,
      );
    }
    const latest = current === undefined ? 0 : latestVersion(current.record);
    if (current !== undefined) {
      const old = openVersion(current.record, key, latest);
      if (old !== undefined && equalBytes(old, value)) return { version: latest, changed: false };
    }
    const version = latest + 1;
    const record: SecretRecord = {
      name,
      key: key.getPublicKey(),
      versions: [
        ...(current?.record.versions ?? []),
        {
          version,
          created_at: now().toISOString(),
          sealed: sealTo(key, key.getPublicKey(), value),
        },
      ].slice(-SECRET_VERSIONS_KEPT),
    };
    try {
      if (current === undefined) {
        const previous = await kv.get(name);
        if (previous === null) await kv.create(name, canonicalJson(record));
        else await kv.update(name, canonicalJson(record), previous.revision);
      } else {
        await kv.update(name, canonicalJson(record), current.revision);
      }
      return { version, changed: true };
    } catch (e) {
      if (!/wrong last sequence|key exists/i.test((e as Error).message)) throw e;
    }
  }
  throw new SecretStoreError(`Secret "${name}" kept changing while it was set; try again`);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
