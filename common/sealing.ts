/**
 * Sealing secrets to one key: X25519 key agreement with an XSalsa20-Poly1305
 * box (NaCl `box`), through nkeys' curve ("xkey") pairs — the same format nex
 * and the NATS auth-callout use. A sealed value names no key by itself; the
 * receiver opens it with its own private key and the sender's public key, so
 * only the one device it was sealed to can read it, and a changed byte makes
 * it fail to open instead of yielding garbage.
 *
 * The operator and the agent both use it: one copy.
 *
 * @module
 */

import { createCurve, fromCurveSeed, type KeyPair } from "@nats-io/nkeys";

/** An xkey public key: "X" then 55 base32 characters. */
export const SEALING_PUBLIC_KEY = /^X[A-Z2-7]{55}$/;

/** A new xkey pair; its seed (`SX…`) is the secret half. */
export function createSealingKey(): KeyPair {
  return createCurve();
}

/** The xkey pair of a seed as written in a key file (`SX…`, surrounding white space ignored). */
export function sealingKeyFromSeed(seed: string): KeyPair {
  return fromCurveSeed(new TextEncoder().encode(seed.trim()));
}

/** The seed of `key` as text, for a key file. */
export function sealingSeedText(key: KeyPair): string {
  return new TextDecoder().decode(key.getSeed());
}

/** Seals `plaintext` from `sender` to `recipient` (an xkey public key); base64 of the box. */
export function sealTo(sender: KeyPair, recipient: string, plaintext: Uint8Array): string {
  return sender.seal(plaintext, recipient).toBase64();
}

/**
 * Opens what {@linkcode sealTo} made, as `recipient`, checking it came from
 * `sender`. `undefined` when it was sealed to another key, by another sender,
 * or changed since.
 */
export function openFrom(
  recipient: KeyPair,
  sender: string,
  sealed: string,
): Uint8Array | undefined {
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(sealed);
  } catch {
    return undefined;
  }
  try {
    return recipient.open(bytes, sender) ?? undefined;
  } catch {
    return undefined;
  }
}
