/**
 * Loopback port allocation for services started by tests.
 *
 * @module
 */

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it; the listener
 * is closed before returning, so a parallel process could in theory take it first).
 */
export function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return Promise.resolve(port);
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
