/**
 * Real-service test harness: nats-server, an isolated podman service, a busybox test image and a
 * local container registry, each started on free loopback ports in its own temp directory and
 * cleaned up with `await using`.
 *
 * @example
 * ```ts
 * import { startNats, startPodman, buildBusyboxImage, waitFor } from "../support/mod.ts";
 *
 * Deno.test("deploys", async () => {
 *   await using nats = await startNats();
 *   await using podman = await startPodman();
 *   const image = await buildBusyboxImage(podman);
 *   // …
 * });
 * ```
 *
 * @module
 */

export * from "./busybox_image.ts";
export * from "./errors.ts";
export * from "./files.ts";
export * from "./log_file.ts";
export { ManagedProcess, type SpawnOptions } from "./_managed_process.ts";
export * from "./nats.ts";
export * from "./podman.ts";
export * from "./ports.ts";
export * from "./published_port.ts";
export * from "./registry.ts";
export * from "./temp_dir.ts";
export * from "./wait_for.ts";
