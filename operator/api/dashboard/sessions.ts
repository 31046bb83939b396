/**
 * Dashboard logins: each login gets a fresh random session id (the cookie),
 * held in memory with its issue time and expiry; logout ends it, expiry ends
 * it, a restart of `serve` ends them all. The table keeps a SHA-256 of each
 * id, so looking one up reveals nothing through timing, and at most
 * {@linkcode MAX_SESSIONS} (the oldest is ended first).
 *
 * @module
 */

import { createHash, randomBytes } from "node:crypto";

/** How long a login lasts, in seconds. */
export const SESSION_MAX_AGE_SECONDS = 12 * 3600;
/** Sessions held at once. */
export const MAX_SESSIONS = 1_000;

/** One live session. */
export interface Session {
  /** Ms since the epoch. */
  issuedAt: number;
  /** Ms since the epoch. */
  expiresAt: number;
}

const digest = (id: string) => createHash("sha256").update(id).digest("hex");

/** The live sessions of one `serve`. */
export class Sessions {
  readonly #now: () => number;
  readonly #maxAgeMs: number;
  readonly #byDigest = new Map<string, Session>();

  constructor(now: () => number = Date.now, maxAgeSeconds = SESSION_MAX_AGE_SECONDS) {
    this.#now = now;
    this.#maxAgeMs = maxAgeSeconds * 1000;
  }

  /** Sessions live now. */
  get size(): number {
    return this.#byDigest.size;
  }

  /** Starts a session; returns its id (the cookie's value). */
  issue(): string {
    const id = randomBytes(32).toString("base64url");
    if (this.#byDigest.size >= MAX_SESSIONS) {
      this.#byDigest.delete(this.#byDigest.keys().next().value!);
    }
    const issuedAt = this.#now();
    this.#byDigest.set(digest(id), { issuedAt, expiresAt: issuedAt + this.#maxAgeMs });
    return id;
  }

  /** The session `id` names if it is live (an expired one is ended here). */
  check(id: string | null): Session | undefined {
    if (id === null || id === "") return undefined;
    const key = digest(id);
    const session = this.#byDigest.get(key);
    if (session === undefined) return undefined;
    if (this.#now() >= session.expiresAt) {
      this.#byDigest.delete(key);
      return undefined;
    }
    return session;
  }

  /** Ends the session `id` names (logout). */
  end(id: string | null): void {
    if (id !== null) this.#byDigest.delete(digest(id));
  }
}
