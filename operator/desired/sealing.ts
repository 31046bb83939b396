/**
 * Sealing each secret of a desired-state value to the one device it is
 * written for. Runs where desired state is written (the fan-out pass), and
 * only for the keys being written: the plaintext is opened from the store
 * with the operator's key, sealed to the device's xkey, and dropped.
 *
 * @module
 */

import type { KeyPair } from "@nats-io/nkeys";
import type { SealedSecret, SecretRecord } from "@drover/contracts";
import { sealTo } from "@drover/common";
import { openVersion } from "../secrets/store.ts";

/** A secret a value references: its name and pinned version. */
export interface SecretRef {
  name: string;
  version: number;
}

/**
 * Seals secrets for devices. `key` is the operator's sealing key (absent: the
 * service was started without the auth directory); `secrets` the store.
 */
export class Sealer {
  /** The key's public half, derived once: nkeys derives it (an X25519 multiplication) per call. */
  readonly #publicKey: string | undefined;
  /** Values opened during the current batch of seals, by `name@version`; see {@linkcode batch}. */
  #opened: Map<string, Uint8Array> | undefined;

  constructor(
    readonly key: KeyPair | undefined,
    readonly secrets: ReadonlyMap<string, SecretRecord>,
  ) {
    this.#publicKey = key?.getPublicKey();
  }

  /**
   * Runs `fn` with each store version opened at most once however many
   * devices it is sealed for, and zeroes the opened values after: without
   * it every device copy costs a second X25519 multiplication.
   */
  async batch<T>(fn: () => Promise<T>): Promise<T> {
    this.#opened = new Map();
    try {
      return await fn();
    } finally {
      for (const value of this.#opened.values()) value.fill(0);
      this.#opened = undefined;
    }
  }

  /**
   * What each entry will say, without its sealed bytes: the keys it is sealed
   * between, or why it cannot be sealed for `device`. Pure and cheap: it
   * decides whether a stored copy must be rewritten.
   */
  expected(
    device: string,
    sealingKey: string | undefined,
    refs: readonly SecretRef[],
  ): SealedSecret[] {
    return refs.map(({ name, version }) => {
      const problem = this.#problem(device, sealingKey, name, version);
      if (problem !== undefined) return { name, version, problem };
      return { name, version, sender: this.#publicKey!, recipient: sealingKey! };
    });
  }

  /** The entries sealed to `sealingKey`, or carrying their problem. */
  seal(device: string, sealingKey: string | undefined, refs: readonly SecretRef[]): SealedSecret[] {
    return this.expected(device, sealingKey, refs).map((entry) => {
      if (entry.problem !== undefined || this.key === undefined || sealingKey === undefined) {
        return entry;
      }
      const plaintext = this.#open(entry.name, entry.version);
      if (plaintext === undefined) {
        return {
          name: entry.name,
          version: entry.version,
          problem: `secret "${entry.name}" version ${entry.version} cannot be opened with ` +
            "the operator service's key (it was set with another auth directory)",
        };
      }
      const sealed = sealTo(this.key, sealingKey, plaintext);
      if (this.#opened === undefined) plaintext.fill(0);
      return { ...entry, sealed };
    });
  }

  /** Version `version` of secret `name` opened with the operator's key (memoised in a batch). */
  #open(name: string, version: number): Uint8Array | undefined {
    const id = `${name}@${version}`;
    const memo = this.#opened?.get(id);
    if (memo !== undefined) return memo;
    const record = this.secrets.get(name);
    const plaintext = record && this.key && openVersion(record, this.key, version);
    if (plaintext !== undefined) this.#opened?.set(id, plaintext);
    return plaintext;
  }

  #problem(
    device: string,
    sealingKey: string | undefined,
    name: string,
    version: number,
  ): string | undefined {
    if (sealingKey === undefined) {
      return `device "${device}" has no sealing key (provisioned before secrets existed): ` +
        `re-provision it ("operator device revoke ${device}", then "operator device add ${device}")`;
    }
    if (this.key === undefined) {
      return "the operator service has no secrets key: start it with --dir (or " +
        "DROVER_AUTH_DIR) naming the auth directory that holds secrets.xk";
    }
    const record = this.secrets.get(name);
    if (record === undefined) {
      return `secret "${name}" does not exist: "operator secret set ${name} --from-file FILE"`;
    }
    if (!record.versions.some((v) => v.version === version)) {
      return `secret "${name}" version ${version} is no longer kept (only the last ` +
        `${record.versions.length}); apply the deployment again to use the current one`;
    }
    if (record.key !== this.#publicKey) {
      return `secret "${name}" is sealed to another operator key than the service's`;
    }
    return undefined;
  }
}
