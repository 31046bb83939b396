/**
 * Probing a port that podman publishes (`-p 127.0.0.1:HOST:CONTAINER`) while containers behind
 * it come and go.
 *
 * Podman (netavark) forwards the host port with an iptables DNAT rule to the container's
 * address. The NAT decision is made once per connection, on its first SYN, and kept in
 * conntrack. A connection attempted while the container behind the port is being replaced can
 * be bound to the removed container's address; its SYN retransmissions then follow that
 * conntrack entry into the void (ARP fails) until the kernel gives up, about two minutes later
 * (`tcp_syn_retries` = 6), with "No route to host" or "Connection timed out" — long after the
 * new container serves. Measured on the test machines: under parallel load the window between
 * the old container's network going away and its DNAT rule being removed is wide enough to be
 * hit regularly. A new attempt has a new source port, hence a new conntrack entry and the
 * current DNAT rule; so each probe gets a time limit and the caller's wait simply tries again.
 *
 * @module
 */

/** Time limit of one probe: far above a healthy answer, far below the kernel's SYN give-up. */
export const PUBLISHED_PORT_PROBE_TIMEOUT_MS = 5_000;

/**
 * One `fetch` of `http://127.0.0.1:<port><path>` that gives up (throws a `TimeoutError`) after
 * {@linkcode PUBLISHED_PORT_PROBE_TIMEOUT_MS}, body included. Use it inside `waitFor`.
 *
 * @example
 * ```ts
 * const page = await waitFor(async () => {
 *   const res = await fetchPublishedPort(port, "/index.html");
 *   return res.ok ? await res.text() : (await res.body?.cancel(), undefined);
 * }, { timeoutMs: 30_000, message: "container serves its page" });
 * ```
 */
export function fetchPublishedPort(port: number, path = "/"): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}${path}`, {
    signal: AbortSignal.timeout(PUBLISHED_PORT_PROBE_TIMEOUT_MS),
  });
}
