/**
 * Small async helpers shared by the agent, the operator, the tests and the scripts: a sleep
 * that ends when its signal aborts, a timeout race, capped exponential backoff with
 * jitter, admission control (per-key token buckets, a cap on work in progress, throttled log
 * lines), the lifecycle of a process's parts (start in order, stop in reverse) and sealing
 * secrets to one device's xkey (sealing.ts, nkeys only) and a synchronous SHA-256 (sha256.ts). Uses no `Deno` API, so every member
 * may import it without the agent and the operator depending on each other.
 *
 * @example
 * ```ts
 * import { abortableSleep, Backoff, TIMED_OUT, withinMs } from "@drover/common";
 *
 * const backoff = new Backoff({ baseMs: 500, capMs: 10_000 });
 * await abortableSleep(backoff.next(), AbortSignal.timeout(60_000));
 * if (await withinMs(Promise.resolve(1), 100) === TIMED_OUT) throw new Error("too slow");
 * ```
 *
 * @module
 */

export * from "./admission.ts";
export * from "./backoff.ts";
export * from "./lifecycle.ts";
export * from "./sleep.ts";
export * from "./transport_resets.ts";
export * from "./within.ts";
export * from "./sealing.ts";
export * from "./sha256.ts";
