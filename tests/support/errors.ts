/**
 * Error classes raised by the test harness. Each names the service or command and carries the
 * evidence needed to debug a failure (log tail, stderr) in its message.
 *
 * @module
 */

/** Base class of every error the harness throws on purpose. */
export class HarnessError extends Error {
  /** Creates a harness error; `cause` keeps the underlying failure. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HarnessError";
  }
}

/** A real service (nats-server, podman service, registry) did not come up. */
export class ServiceStartError extends HarnessError {
  /** Which service failed, e.g. "nats-server". */
  readonly service: string;
  /** The last lines the service logged, also included in the message. */
  readonly logTail: string;

  /** Creates the error; the message ends with the service's log tail. */
  constructor(service: string, reason: string, logTail: string, options?: ErrorOptions) {
    super(
      `Cannot start ${service}: ${reason}\n--- last lines of the ${service} log ---\n${logTail}`,
      options,
    );
    this.name = "ServiceStartError";
    this.service = service;
    this.logTail = logTail;
  }
}

/** A command the harness runs (podman CLI, tar, htpasswd, …) exited with a non-zero code. */
export class CommandError extends HarnessError {
  /** The command line as an array. */
  readonly command: string[];
  /** The exit code. */
  readonly code: number;
  /** What the command wrote to stderr. */
  readonly stderr: string;

  /** Creates the error; the message holds the command, exit code and stderr. */
  constructor(command: string[], code: number, stderr: string, options?: ErrorOptions) {
    super(
      `Command failed with exit code ${code}: ${command.join(" ")}\n${stderr.trim()}`,
      options,
    );
    this.name = "CommandError";
    this.command = command;
    this.code = code;
    this.stderr = stderr;
  }
}

/** {@linkcode waitFor} ran out of time before its condition held. */
export class WaitTimeoutError extends HarnessError {
  /** Creates the error; `cause` is the last error the condition threw, if any. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "WaitTimeoutError";
  }
}

/** Cleaning up a service left something behind (a process, a mount, a directory). */
export class CleanupError extends HarnessError {
  /** Creates the error; the message lists what was left behind. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CleanupError";
  }
}
