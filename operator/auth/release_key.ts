/**
 * The release key: an Ed25519 key (WebCrypto) that signs agent releases.
 * Agents trust only manifests signed by the public half in their config
 * (`[update] release_key`), so a stolen operator NATS identity or a tampered
 * Object Store cannot make a device run anything (contracts/agent_update.ts).
 *
 * Kept in the auth directory with the other secrets: `release.key` (PKCS#8,
 * base64, 0600) and `release.pub` (`ed25519:<base64url>`, public).
 *
 * @module
 */

import {
  RELEASE_KEY_PREFIX,
  type ReleaseManifest,
  ReleasePublicKey,
  type SignedRelease,
} from "@drover/contracts";
import { AuthFileInvalidError } from "./errors.ts";
import { authPath, ensurePrivateDir, SECRET_FILE_MODE, writeFileAtomic } from "./store.ts";

/** File names of the release key inside the auth directory. */
export const RELEASE_KEY_FILES = { secret: "release.key", public: "release.pub" } as const;

/** The release key, ready to sign. */
export interface ReleaseKey {
  privateKey: CryptoKey;
  /** `ed25519:<base64url of the raw public key>`, as agents configure it. */
  publicKey: string;
}

const ED25519 = { name: "Ed25519" } as const;

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function base64url(bytes: Uint8Array): string {
  return base64(bytes).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

async function publicKeyText(key: CryptoKey): Promise<string> {
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", key));
  return `${RELEASE_KEY_PREFIX}${base64url(raw)}`;
}

/** Creates a new release key in `dir` (replacing one that is there). */
export async function createReleaseKey(dir: string): Promise<ReleaseKey> {
  await ensurePrivateDir(dir);
  const pair = await crypto.subtle.generateKey(ED25519, true, ["sign", "verify"]) as CryptoKeyPair;
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const publicKey = await publicKeyText(pair.publicKey);
  await writeFileAtomic(
    authPath(dir, RELEASE_KEY_FILES.secret),
    base64(pkcs8) + "\n",
    SECRET_FILE_MODE,
  );
  await writeFileAtomic(authPath(dir, RELEASE_KEY_FILES.public), publicKey + "\n", 0o644);
  return { privateKey: pair.privateKey, publicKey };
}

/** The public release key of `dir`, or undefined when none was created yet. */
export async function readReleasePublicKey(dir: string): Promise<string | undefined> {
  const path = authPath(dir, RELEASE_KEY_FILES.public);
  let text: string;
  try {
    text = (await Deno.readTextFile(path)).trim();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  if (!ReleasePublicKey.safeParse(text).success) {
    throw new AuthFileInvalidError(path, "not an ed25519 public key");
  }
  return text;
}

/**
 * Reads the release key of `dir`; with `create`, makes one when the directory
 * (initialised by an older Drover) has none yet.
 *
 * @throws {AuthFileInvalidError} when the key file is not a PKCS#8 Ed25519 key.
 */
export async function readReleaseKey(
  dir: string,
  options: { create?: boolean } = {},
): Promise<ReleaseKey & { created: boolean }> {
  const path = authPath(dir, RELEASE_KEY_FILES.secret);
  let text: string;
  try {
    text = (await Deno.readTextFile(path)).trim();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && options.create) {
      return { ...await createReleaseKey(dir), created: true };
    }
    if (e instanceof Deno.errors.NotFound) {
      throw new AuthFileInvalidError(
        path,
        "missing: this auth directory has no release key yet (it was created by an older " +
          "Drover); run with --create-key once to create it, then put the printed public key " +
          "into every agent's [update] release_key",
        { cause: e },
      );
    }
    throw e;
  }
  let privateKey: CryptoKey;
  try {
    privateKey = await crypto.subtle.importKey("pkcs8", fromBase64(text), ED25519, true, ["sign"]);
  } catch (e) {
    throw new AuthFileInvalidError(path, `not a PKCS#8 Ed25519 key (${(e as Error).message})`, {
      cause: e,
    });
  }
  // The public half is derived again, so a stale release.pub cannot mislead.
  const { kty, crv, x } = await crypto.subtle.exportKey("jwk", privateKey);
  if (kty === undefined || crv === undefined || x === undefined) {
    throw new Error("Cannot derive the release public key: the exported JWK lacks kty, crv or x");
  }
  const publicCrypto = await crypto.subtle.importKey(
    "jwk",
    { kty, crv, x },
    ED25519,
    true,
    ["verify"],
  );
  return { privateKey, publicKey: await publicKeyText(publicCrypto), created: false };
}

/** Signs `manifest`: its JSON text exactly as shipped, and the signature of those bytes. */
export async function signRelease(
  key: CryptoKey,
  manifest: ReleaseManifest,
): Promise<SignedRelease> {
  const text = JSON.stringify(manifest);
  const signature = new Uint8Array(
    await crypto.subtle.sign(ED25519, key, new TextEncoder().encode(text)),
  );
  return { manifest: text, signature: base64(signature) };
}
