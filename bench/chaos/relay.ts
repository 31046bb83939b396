/**
 * A byte relay between two sockets, used to give an agent in its own network
 * namespace a way to its NATS servers (loopback TCP inside the namespace →
 * a unix socket in the run's directory → loopback TCP outside), so that
 * dropping the namespace's traffic (iptables inside it) cuts that one device
 * off and nothing else on the host.
 *
 * As a program (run inside the namespace):
 * `deno run -A bench/chaos/relay.ts PORT=UNIX_PATH …` listens on 127.0.0.1:PORT
 * for each pair and relays every connection to UNIX_PATH.
 *
 * @module
 */

/** Copies both ways until either side ends; closes both. */
export async function pipeBoth(a: Deno.Conn, b: Deno.Conn): Promise<void> {
  const copy = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable, { preventClose: false });
    } catch {
      // One side went away: the other is closed below.
    }
  };
  await Promise.race([copy(a, b), copy(b, a)]);
  for (const c of [a, b]) {
    try {
      c.close();
    } catch {
      // Closed already.
    }
  }
}

/** Accepts connections on `listener` and relays each to a connection `dial` opens. */
export async function serveRelay(
  listener: Deno.Listener,
  dial: () => Promise<Deno.Conn>,
): Promise<void> {
  try {
    for await (const conn of listener) {
      dial().then((other) => pipeBoth(conn, other), () => conn.close());
    }
  } catch {
    // The listener was closed.
  }
}

if (import.meta.main) {
  const relays = Deno.args.map((pair) => {
    const eq = pair.indexOf("=");
    const port = Number(pair.slice(0, eq));
    const path = pair.slice(eq + 1);
    if (!(eq > 0 && Number.isInteger(port) && port > 0 && path !== "")) {
      console.error(`relay: expected PORT=UNIX_PATH, not ${JSON.stringify(pair)}`);
      Deno.exit(2);
    }
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    return serveRelay(listener, () => Deno.connect({ transport: "unix", path }));
  });
  console.log("relay: listening");
  await Promise.all(relays);
}
