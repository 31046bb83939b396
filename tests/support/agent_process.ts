/**
 * The one way tests and the smoke run start the real agent (`deno run … agent/main.ts
 * --config FILE`) and write its config: a {@linkcode ManagedProcess} whose stdout and stderr
 * go to a log file that can be read while the agent runs, a graceful stop that reports the
 * exit code, and {@linkcode agentToml} for the config.
 *
 * @example
 * ```ts
 * await Deno.writeTextFile(configPath, agentToml({ deviceId: "pi-1", natsUrl, podmanSocket, stateDir }));
 * await using agent = AgentProcess.start({ configPath, logPath: `${dir}/agent.log` });
 * await waitFor(async () => (await agent.logs()).includes("First reconcile pass done"), …);
 * assertEquals(await agent.stop(), 0);
 * ```
 *
 * @module
 */

import { stringify } from "smol-toml";
import { ManagedProcess } from "./_managed_process.ts";

/** Absolute path of the agent's entry point. */
export const AGENT_MAIN = new URL("../../agent/main.ts", import.meta.url).pathname;
/** The repository root (the agent's working directory unless told otherwise). */
const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/** Environment every test agent gets unless overridden: debug logs, no colour codes. */
export const DEFAULT_AGENT_ENV: Readonly<Record<string, string>> = {
  DROVER_LOG_LEVEL: "debug",
  NO_COLOR: "1",
};

/** How long {@linkcode AgentProcess.stop} waits after SIGTERM before SIGKILL. */
export const AGENT_STOP_GRACE_MS = 30_000;

/** Options of {@linkcode AgentProcess.start}. */
export interface AgentProcessOptions {
  /** The agent.toml to run with. */
  configPath: string;
  /** File receiving the agent's output (appended, so a restarted agent keeps the earlier log). */
  logPath: string;
  /**
   * Deno permission flags; default `-A` (most tests are about behaviour; the `agent` task's
   * narrow set is covered by agent_task_test.ts and the smoke run).
   */
  permissions?: string[] | undefined;
  /** Environment over {@linkcode DEFAULT_AGENT_ENV}. */
  env?: Record<string, string> | undefined;
  /** Working directory; default the repository root. */
  cwd?: string | undefined;
}

/** The real agent running as a subprocess. */
export class AgentProcess implements AsyncDisposable {
  /** The config it runs with. */
  readonly configPath: string;
  readonly #process: ManagedProcess;

  private constructor(configPath: string, process: ManagedProcess) {
    this.configPath = configPath;
    this.#process = process;
  }

  /** Starts the agent; it runs until stopped, killed or disposed. */
  static start(options: AgentProcessOptions): AgentProcess {
    const process = ManagedProcess.spawn({
      command: Deno.execPath(),
      args: ["run", ...(options.permissions ?? ["-A"]), AGENT_MAIN, "--config", options.configPath],
      env: { ...DEFAULT_AGENT_ENV, ...options.env },
      cwd: options.cwd ?? REPO_ROOT,
      logPath: options.logPath,
    });
    return new AgentProcess(options.configPath, process);
  }

  /** Process id. */
  get pid(): number {
    return this.#process.pid;
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.#process.running;
  }

  /** Resolves with the exit status once the process has exited and its log is written. */
  get exited(): Promise<Deno.CommandStatus> {
    return this.#process.exited;
  }

  /** The file holding its output. */
  get logPath(): string {
    return this.#process.logPath;
  }

  /** Everything it logged so far. */
  logs(): Promise<string> {
    return this.#process.logs();
  }

  /** The last `lines` lines of its log. */
  logTail(lines = 40): Promise<string> {
    return this.#process.logTail(lines);
  }

  /**
   * SIGTERM (what systemd sends), SIGKILL after `graceMs`; resolves with the exit code (0 for
   * a clean stop; 137 when it had to be killed).
   */
  async stop(graceMs = AGENT_STOP_GRACE_MS): Promise<number> {
    await this.#process.stop(graceMs);
    return (await this.exited).code;
  }

  /** SIGKILL (a crash or power cut); resolves when it is gone. */
  async kill(): Promise<void> {
    await this.#process.kill();
  }

  /** Kills it if it still runs: a test that wanted a clean stop asked for one. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }
}

/** Inputs of {@linkcode agentToml}. */
export interface AgentTomlInput {
  deviceId: string;
  /** One URL, or several. */
  natsUrl: string | string[];
  podmanSocket: string;
  stateDir: string;
  /** Reported labels; default `{ site: "lab" }`. */
  labels?: Record<string, string>;
  /** Default 2: tests want to see status soon. */
  heartbeatSeconds?: number;
  /** `[nats] user`/`password` (the test servers' devices log in with a password). */
  natsUser?: string;
  natsPassword?: string;
  /** `[nats] creds` (a file from `operator device add`). */
  natsCreds?: string;
  /** Further TOML appended as is (e.g. `[registries."…"]` or `[policy]` tables). */
  extraToml?: string | undefined;
}

/** An agent.toml for tests and the smoke run. */
export function agentToml(input: AgentTomlInput): string {
  const nats: Record<string, unknown> = {
    servers: typeof input.natsUrl === "string" ? [input.natsUrl] : input.natsUrl,
  };
  if (input.natsUser !== undefined) nats.user = input.natsUser;
  if (input.natsPassword !== undefined) nats.password = input.natsPassword;
  if (input.natsCreds !== undefined) nats.creds = input.natsCreds;
  const toml = stringify({
    agent: {
      device_id: input.deviceId,
      state_dir: input.stateDir,
      heartbeat_seconds: input.heartbeatSeconds ?? 2,
      labels: input.labels ?? { site: "lab" },
    },
    nats,
    podman: { socket: input.podmanSocket },
  });
  return `${toml}\n${input.extraToml ?? ""}\n`;
}

/** Options of {@linkcode startAgent}: the config's settings, and where its files go. */
export interface StartAgentOptions extends Omit<AgentTomlInput, "stateDir"> {
  /** Directory for `agent-<id>.toml`, `agent-<id>.log` and the state directory `state/`. */
  dir: string;
  /** Environment over {@linkcode DEFAULT_AGENT_ENV}. */
  env?: Record<string, string>;
}

/** Writes a config from `options` into `options.dir` and starts the agent on it. */
export async function startAgent(options: StartAgentOptions): Promise<AgentProcess> {
  const { dir, env, ...settings } = options;
  await Deno.mkdir(`${dir}/state`, { recursive: true });
  const configPath = `${dir}/agent-${options.deviceId}.toml`;
  await Deno.writeTextFile(configPath, agentToml({ ...settings, stateDir: `${dir}/state` }));
  return AgentProcess.start({ configPath, logPath: `${dir}/agent-${options.deviceId}.log`, env });
}
