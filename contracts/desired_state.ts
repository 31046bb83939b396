/**
 * The value of `desired-state/<device>.<deployment>`: what one device should
 * run for one deployment. Deleting or purging the key means "remove that
 * deployment from the device".
 *
 * @module
 */

import { z } from "zod";
import { MountName, Name, Score } from "./score.ts";

/** Largest secret value, in bytes (podman's own limit is 512 KiB). */
export const MAX_SECRET_BYTES = 64 * 1024;

/**
 * One secret of the operator's store as one device receives it: sealed to
 * that device's X25519 key (nkeys xkey, `seal`/`open`), never in plaintext.
 * When the operator cannot seal it (the device has no key, the operator's
 * service has none, the version is no longer kept) `problem` says why and the
 * agent refuses the deployment with that reason.
 */
export const SealedSecret = z.object({
  name: MountName,
  /** The secret's version in the operator's store; spec hashes cover it, never the value. */
  version: z.int().positive(),
  /** Base64 of the nkeys-sealed value (24-byte nonce, then the XSalsa20-Poly1305 box). */
  sealed: z.string().max(Math.ceil((MAX_SECRET_BYTES + 64) / 3) * 4).optional(),
  /** The operator's xkey public key (the box's sender): the agent opens with it. */
  sender: z.string().max(64).optional(),
  /** The device's xkey public key it was sealed to. */
  recipient: z.string().max(64).optional(),
  /** Why it could not be sealed for this device. */
  problem: z.string().max(1024).optional(),
});
/** One secret, sealed to one device. */
export type SealedSecret = z.infer<typeof SealedSecret>;

/** Desired state of one deployment on one device. */
export const DesiredState = z.object({
  deployment: Name,
  score: Score,
  /**
   * The revision of the manifest (`deployments/<deployment>`) this score was
   * last changed in: the deployment revision `apply` prints and `status`
   * shows. It only names the value; the agent echoes it in its status. An
   * agent that predates it drops it (wire objects strip unknown keys).
   */
  deployment_revision: z.number().int().positive().optional(),
  /**
   * The secrets the score's services reference, each sealed to this device.
   * Absent when no service references one.
   */
  secrets: z.array(SealedSecret).max(64).optional(),
});
/** Desired state of one deployment on one device. */
export type DesiredState = z.infer<typeof DesiredState>;
/** Desired state as written (before defaults are applied). */
export type DesiredStateInput = z.input<typeof DesiredState>;
