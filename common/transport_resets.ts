/**
 * The transport resets nats.js' node transport can leave unhandled, swallowed
 * process-wide by the entry points that connect (the agent, the operator's CLI
 * and service, the hollow fleet).
 *
 * @module
 */

/**
 * nats.js' node transport removes its socket listeners before destroying a
 * socket that the server closed (e.g. after "-ERR Authorization Violation" or
 * "User Authentication Revoked"); the TCP reset that can still follow is then
 * emitted with no listener and would end the process as an uncaught
 * `ECONNRESET` (seen in about half of the revocation runs in
 * tests/e2e/security_agent_test.ts, and after a refused token in the operator's CLI). The client has already handled the close
 * and reconnects, so exactly that error is swallowed; anything else stays fatal.
 *
 * A process-wide handler, so only an entry point installs it (the agent's
 * `main`, tests that provoke such closes), once; call the returned function
 * to remove it.
 */
export function tolerateTransportResets(target: EventTarget = globalThis): () => void {
  const onError = (event: Event) => {
    const error = (event as ErrorEvent).error as { code?: string; stack?: string } | undefined;
    if (
      (error?.code === "ECONNRESET" || error?.code === "EPIPE") &&
      error.stack?.includes("ext:deno_node")
    ) {
      event.preventDefault();
    }
  };
  target.addEventListener("error", onError);
  return () => target.removeEventListener("error", onError);
}
