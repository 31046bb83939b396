/**
 * sd_notify(3) for `Type=notify` units: `READY=1` after the first reconcile
 * pass, `WATCHDOG=1` pings, `STOPPING=1`, `STATUS=…`.
 *
 * `NOTIFY_SOCKET` names a unix datagram socket (a path, or an abstract name
 * starting with `@`). Deno can only send datagrams from a bound socket, so the
 * notifier binds its own socket at a fixed path in `state_dir` (fixed so that
 * `--allow-net=unix:<path>` can name it); sending also needs net and write
 * permission on `NOTIFY_SOCKET` itself. Needs `--unstable-net` (enabled in
 * the workspace's deno.json). Outside systemd every call is a no-op.
 *
 * @module
 */

/** File name of the notifier's own (sending) socket inside `state_dir`. */
export const NOTIFY_SENDER_SOCKET_NAME = "sd-notify.sock";

/** Environment the notifier reads. */
export interface NotifyEnv {
  NOTIFY_SOCKET?: string | undefined;
  WATCHDOG_USEC?: string | undefined;
  WATCHDOG_PID?: string | undefined;
}

/** Reads the variables of {@linkcode NotifyEnv} (needs `--allow-env` for them). */
export function readNotifyEnv(): NotifyEnv {
  const get = (name: string) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  };
  return {
    NOTIFY_SOCKET: get("NOTIFY_SOCKET"),
    WATCHDOG_USEC: get("WATCHDOG_USEC"),
    WATCHDOG_PID: get("WATCHDOG_PID"),
  };
}

/**
 * Socket address of `NOTIFY_SOCKET`: `@name` is the abstract socket `\0name`.
 * Returns undefined when unset or not a unix socket address.
 */
export function notifySocketAddress(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (value.startsWith("@")) return `\0${value.slice(1)}`;
  if (value.startsWith("/")) return value;
  return undefined; // e.g. vsock:… — not something the agent speaks
}

/**
 * Interval between watchdog pings: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
 * recommends; undefined when the watchdog is off or meant for another process.
 */
export function watchdogIntervalMs(env: NotifyEnv, pid: number): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (env.WATCHDOG_USEC === undefined || !Number.isFinite(usec) || usec <= 0) return undefined;
  if (
    env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== "" && Number(env.WATCHDOG_PID) !== pid
  ) {
    return undefined;
  }
  return Math.max(1, Math.floor(usec / 2000));
}

/** Encodes a notify message: `KEY=value` lines. Newlines inside values would split fields. */
export function encodeNotify(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${v.replace(/[\r\n]+/g, " ")}`)
    .join("\n");
}

/** The sending side could not be set up or a datagram could not be sent. */
export class NotifyError extends Error {
  override name = "NotifyError";
}

/** Sends sd_notify messages; inert when not started by systemd. */
export class SystemdNotifier {
  readonly #target: string | undefined;
  readonly #senderPath: string;
  readonly #watchdogMs: number | undefined;
  #conn: Deno.DatagramConn | undefined;
  #watchdogTimer: ReturnType<typeof setInterval> | undefined;
  #sending: Promise<void> = Promise.resolve();

  /**
   * @param env usually {@linkcode readNotifyEnv}()
   * @param stateDir directory for the notifier's own socket
   */
  constructor(env: NotifyEnv, stateDir: string) {
    this.#target = notifySocketAddress(env.NOTIFY_SOCKET);
    this.#senderPath = `${stateDir.replace(/\/+$/, "")}/${NOTIFY_SENDER_SOCKET_NAME}`;
    this.#watchdogMs = watchdogIntervalMs(env, Deno.pid);
  }

  /** True when `NOTIFY_SOCKET` was set. */
  get enabled(): boolean {
    return this.#target !== undefined;
  }

  /** Watchdog ping interval, when the watchdog is on. */
  get watchdogIntervalMs(): number | undefined {
    return this.#target === undefined ? undefined : this.#watchdogMs;
  }

  /**
   * Sends one message. Does nothing outside systemd.
   *
   * @throws {NotifyError} when the socket cannot be bound or the send fails.
   */
  notify(fields: Record<string, string>): Promise<void> {
    if (this.#target === undefined) return Promise.resolve();
    // A Deno datagram socket allows one send at a time ("Socket already in use"): queue them.
    const sent = this.#sending.then(() => this.#send(fields));
    this.#sending = sent.catch(() => {});
    return sent;
  }

  async #send(fields: Record<string, string>): Promise<void> {
    if (this.#target === undefined) return;
    const conn = this.#connection();
    try {
      await conn.send(new TextEncoder().encode(encodeNotify(fields)), {
        transport: "unixpacket",
        path: this.#target,
      });
    } catch (e) {
      throw new NotifyError(
        `Cannot notify systemd at ${JSON.stringify(this.#target.replace("\0", "@"))}: ${
          (e as Error).message
        }`,
        { cause: e },
      );
    }
  }

  #connection(): Deno.DatagramConn {
    if (this.#conn !== undefined) return this.#conn;
    if (typeof Deno.listenDatagram !== "function") {
      throw new NotifyError("Cannot notify systemd: unix datagram sockets need --unstable-net");
    }
    try {
      // A stale socket file from a previous run would make bind fail.
      try {
        Deno.removeSync(this.#senderPath);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      this.#conn = Deno.listenDatagram({ transport: "unixpacket", path: this.#senderPath });
      return this.#conn;
    } catch (e) {
      throw new NotifyError(
        `Cannot notify systemd: cannot bind ${this.#senderPath}: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  /** `READY=1` with a status line. */
  ready(status: string): Promise<void> {
    return this.notify({ READY: "1", STATUS: status });
  }

  /** `STATUS=…`. */
  status(status: string): Promise<void> {
    return this.notify({ STATUS: status });
  }

  /** `STOPPING=1`. */
  stopping(status = "stopping"): Promise<void> {
    return this.notify({ STOPPING: "1", STATUS: status });
  }

  /**
   * Pings `WATCHDOG=1` every half `WATCHDOG_USEC` while `alive()` says the
   * agent is healthy (so a wedged main loop stops the pings and systemd
   * restarts it). Errors go to `onError`.
   */
  startWatchdog(alive: () => boolean, onError: (e: unknown) => void): void {
    const interval = this.watchdogIntervalMs;
    if (interval === undefined || this.#watchdogTimer !== undefined) return;
    this.#watchdogTimer = setInterval(() => {
      if (!alive()) return;
      this.notify({ WATCHDOG: "1" }).catch(onError);
    }, interval);
  }

  /** Stops the watchdog and closes the socket. */
  close(): void {
    if (this.#watchdogTimer !== undefined) clearInterval(this.#watchdogTimer);
    this.#watchdogTimer = undefined;
    if (this.#conn !== undefined) {
      try {
        this.#conn.close();
      } catch {
        // already closed
      }
      this.#conn = undefined;
      try {
        Deno.removeSync(this.#senderPath);
      } catch {
        // best effort
      }
    }
  }
}
