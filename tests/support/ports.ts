/**
 * Loopback port allocation for services started by tests.
 *
 * @module
 */

import { tempRoot } from "./_owned_dir.ts";
import { HarnessError } from "./errors.ts";

/**
 * How long a port handed out by {@linkcode freePort} is kept from every other caller on the
 * host: far longer than any test takes to bind it.
 */
export const PORT_RESERVATION_MS = 10 * 60_000;

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it; the listener
 * is closed before returning, so a process outside the harness could in theory take it first).
 *
 * No two calls on this host return the same port within {@linkcode PORT_RESERVATION_MS}, even
 * from parallel test files: the kernel does hand out a just-closed port again, which gave one
 * nats-server the same client and monitor port ("bind: address already in use"). A reservation
 * is a file named after the port, created exclusively.
 *
 * @throws {HarnessError} when no unreserved port turns up.
 */
export async function freePort(): Promise<number> {
  const dir = `${tempRoot()}/drover-cache/ports`;
  await Deno.mkdir(dir, { recursive: true });
  for (let attempt = 0; attempt < 200; attempt++) {
    // Held while reserving, so a concurrent caller cannot be handed this port by the kernel.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const { port } = listener.addr as Deno.NetAddr;
      if (await reservePort(`${dir}/${port}`)) return port;
    } finally {
      listener.close();
    }
  }
  throw new HarnessError(`Cannot find a free port: 200 kernel picks were reserved under ${dir}`);
}

/** Takes the reservation file at `path`, or an expired one; false if someone holds it. */
async function reservePort(path: string): Promise<boolean> {
  if (await createExclusively(path)) return true;
  let modified: number;
  try {
    modified = (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return await createExclusively(path);
    throw error;
  }
  if (Date.now() - modified < PORT_RESERVATION_MS) return false;
  // Expired. Renaming it away succeeds for one caller only; the winner then creates it anew.
  const expired = `${path}.expired-${crypto.randomUUID()}`;
  try {
    await Deno.rename(path, expired);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  await Deno.remove(expired);
  return await createExclusively(path);
}

async function createExclusively(path: string): Promise<boolean> {
  try {
    (await Deno.open(path, { createNew: true, write: true })).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    throw error;
  }
}

/** Resolves true when something accepts TCP connections on 127.0.0.1:`port`. */
export async function acceptsConnections(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}
