/**
 * A STAND-IN for systemd where a real systemd cannot run (these tests run in
 * a container without it as PID 1). It keeps the semantics the agent's
 * self-update relies on, and nothing more:
 *
 * - `Restart=always` with `RestartSec=`: whenever the service's process
 *   exits — cleanly, with an error or killed — it is started again after
 *   `restartMs`, for as long as the supervisor runs (`StartLimitIntervalSec=0`);
 * - `ExecStartPre=`: an optional check run before every start; when it fails
 *   the start counts as failed and is retried after `restartMs`, as systemd
 *   does for a unit with `Restart=always`;
 * - `ExecStart=` is run as given (here: systemd/drover-agent-launch, which
 *   does the boot-counting check itself and then execs the agent, keeping the
 *   PID as the unit's main process);
 * - `KillMode=control-group`: the service runs in a process group of its own
 *   (`setsid`), and a kill or stop signals the whole group, so a service that
 *   forks (e.g. `deno task`) leaves nothing running behind, as with a cgroup.
 *
 * The real unit file is checked with `systemd-analyze verify` separately.
 *
 * @module
 */

import { abortableSleep } from "@drover/common";
import { ManagedProcess } from "./_managed_process.ts";
import { runCommand } from "./_exec.ts";

/** A command line. */
export interface ServiceCommand {
  command: string;
  args: string[];
}

/** Options of {@linkcode RestartAlwaysSupervisor.start}. */
export interface SupervisorOptions {
  /** `ExecStart=`. */
  execStart: ServiceCommand;
  /** `ExecStartPre=`, run to completion before each start; non-zero fails that start. */
  execStartPre?: ServiceCommand;
  /** `Environment=` (the whole environment the service sees, over this process's). */
  env?: Record<string, string>;
  /** `RestartSec=` in milliseconds. */
  restartMs: number;
  /** Where the service's stdout and stderr go (appended across restarts, like the journal). */
  logPath: string;
}

/** One start of the service and how it ended. */
export interface ServiceRun {
  pid: number;
  /** Exit code, or undefined while it runs. */
  code?: number;
  signal?: string | null;
}

/** Starts a service again and again, like systemd with `Restart=always`. */
export class RestartAlwaysSupervisor implements AsyncDisposable {
  readonly #options: SupervisorOptions;
  readonly #stop = new AbortController();
  readonly runs: ServiceRun[] = [];
  #current: ManagedProcess | undefined;
  #loop: Promise<void> | undefined;

  private constructor(options: SupervisorOptions) {
    this.#options = options;
  }

  /** Starts supervising at once. */
  static start(options: SupervisorOptions): RestartAlwaysSupervisor {
    const supervisor = new RestartAlwaysSupervisor(options);
    supervisor.#loop = supervisor.#run();
    return supervisor;
  }

  /** Starts so far (including the running one). */
  get starts(): number {
    return this.runs.length;
  }

  /** The process running now, if any. */
  get current(): ManagedProcess | undefined {
    return this.#current?.running ? this.#current : undefined;
  }

  async #run(): Promise<void> {
    const { execStart, execStartPre, env, restartMs, logPath } = this.#options;
    while (!this.#stop.signal.aborted) {
      if (execStartPre !== undefined) {
        const pre = await runCommand(execStartPre.command, execStartPre.args, { env });
        if (pre.code !== 0) {
          await Deno.writeTextFile(
            logPath,
            `supervisor: ExecStartPre failed (${pre.code}): ${pre.stderr}\n`,
            { append: true },
          );
          await abortableSleep(restartMs, this.#stop.signal);
          continue;
        }
      }
      // setsid execs in place (same PID) with a new process group: the unit's "cgroup".
      const process = ManagedProcess.spawn({
        command: "setsid",
        args: [execStart.command, ...execStart.args],
        env,
        logPath,
      });
      this.#current = process;
      const run: ServiceRun = { pid: process.pid };
      this.runs.push(run);
      const status = await process.exited;
      run.code = status.code;
      run.signal = status.signal;
      // As systemd does when the main process exits: the rest of the "cgroup" goes too.
      this.#signalGroup("SIGKILL", process.pid);
      if (this.#stop.signal.aborted) break;
      await abortableSleep(restartMs, this.#stop.signal);
    }
  }

  /** Signals every process of the running service's group. */
  #signalGroup(signal: Deno.Signal, pid = this.#current?.pid): void {
    if (pid === undefined) return;
    try {
      Deno.kill(-pid, signal);
    } catch {
      // The group is gone.
    }
  }

  /**
   * SIGKILLs the running service, every process of it (a crash or a power cut,
   * as far as it can tell); it is started again after `restartMs`.
   */
  async killCurrent(): Promise<void> {
    this.#signalGroup("SIGKILL");
    await this.#current?.exited;
  }

  /** Stops supervising: SIGTERM to the service's group (SIGKILL after `graceMs`), no restart. */
  async stop(graceMs = 20_000): Promise<void> {
    this.#stop.abort();
    const current = this.#current;
    if (current !== undefined) {
      this.#signalGroup("SIGTERM");
      const timer = setTimeout(() => this.#signalGroup("SIGKILL"), graceMs);
      await current.exited;
      clearTimeout(timer);
      // Whatever the main process left behind in its group goes too.
      this.#signalGroup("SIGKILL");
    }
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop(5_000);
  }
}
