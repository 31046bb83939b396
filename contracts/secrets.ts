/**
 * The value of `secrets/<name>`: one secret of the operator's store, its
 * recent versions each sealed to the operator's own xkey (never plaintext).
 *
 * @module
 */

import { z } from "zod";
import { MountName } from "./score.ts";
import { MAX_SECRET_BYTES } from "./desired_state.ts";

/** Versions kept per secret: a rollback to a recent revision still finds its version. */
export const SECRET_VERSIONS_KEPT = 5;

/** One version of a secret, sealed to the operator's key. */
export const SecretVersion = z.object({
  version: z.int().positive(),
  /** RFC 3339 UTC time it was set. */
  created_at: z.iso.datetime(),
  /** Base64 of the value sealed from and to the operator's xkey (`sender` of the record). */
  sealed: z.string().max(Math.ceil((MAX_SECRET_BYTES + 64) / 3) * 4),
});
/** One version of a secret. */
export type SecretVersion = z.infer<typeof SecretVersion>;

/** What `secrets/<name>` holds. */
export const SecretRecord = z.object({
  name: MountName,
  /** The operator's xkey public key the versions are sealed with (sender and recipient). */
  key: z.string().max(64),
  /** Newest last; at most {@linkcode SECRET_VERSIONS_KEPT}. */
  versions: z.array(SecretVersion).min(1).max(SECRET_VERSIONS_KEPT),
});
/** What `secrets/<name>` holds. */
export type SecretRecord = z.infer<typeof SecretRecord>;
