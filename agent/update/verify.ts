/**
 * Checks a release before anything of it is used: the manifest's Ed25519
 * signature against the one key in `[update] release_key`, then the manifest
 * itself (schema, the version and arch asked for). The artifact's bytes are
 * checked against the manifest's size and sha256 after the download.
 *
 * @module
 */

import {
  type AgentArch,
  formatZodIssues,
  RELEASE_KEY_PREFIX,
  ReleaseManifest,
  type SignedRelease,
} from "@drover/contracts";

/** The release must not be used; the message says why (it goes into the status). */
export class ReleaseRefusedError extends Error {
  override name = "ReleaseRefusedError";
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> {
  const b64 = text.replaceAll("-", "+").replaceAll("_", "/");
  return fromBase64(b64 + "=".repeat((4 - b64.length % 4) % 4));
}

/**
 * Verifies `signed` with `publicKey` (`ed25519:…`) and returns its manifest.
 *
 * @throws {ReleaseRefusedError} when the signature does not verify, the
 * manifest is invalid, or it describes another version or arch.
 */
export async function verifyRelease(
  publicKey: string,
  signed: SignedRelease,
  expected: { version: string; arch: AgentArch },
): Promise<ReleaseManifest> {
  const what = `release ${expected.version} (${expected.arch})`;
  let valid = false;
  try {
    const key = await crypto.subtle.importKey(
      "raw",
      fromBase64url(publicKey.slice(RELEASE_KEY_PREFIX.length)),
      { name: "Ed25519" },
      false,
      ["verify"],
    );
    valid = await crypto.subtle.verify(
      { name: "Ed25519" },
      key,
      fromBase64(signed.signature),
      new TextEncoder().encode(signed.manifest),
    );
  } catch {
    valid = false;
  }
  if (!valid) {
    throw new ReleaseRefusedError(
      `${what} refused: its signature does not verify with [update] release_key`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(signed.manifest);
  } catch {
    throw new ReleaseRefusedError(`${what} refused: the signed manifest is not JSON`);
  }
  const parsed = ReleaseManifest.safeParse(json);
  if (!parsed.success) {
    throw new ReleaseRefusedError(`${what} refused: ${formatZodIssues(parsed.error)}`);
  }
  const m = parsed.data;
  if (m.version !== expected.version || m.arch !== expected.arch) {
    throw new ReleaseRefusedError(
      `${what} refused: the signed manifest is for ${m.version} (${m.arch})`,
    );
  }
  return m;
}
