/**
 * The launcher behind `deno task agent --config FILE`: runs the agent from source with a config
 * anywhere, while the installed agent keeps its fixed, narrow permissions.
 *
 * The `agent` task is this script followed by the agent's own command line
 * (`deno run <flags> agent/main.ts`). Those flags are what `deno task compile` and
 * `deno task bundle` bake into the installed agent (they read the task's `deno run …` part), and
 * they allow only the standard places (/etc/drover, /var/lib/drover, the rootful podman socket,
 * loopback NATS). From source a config usually lives elsewhere, so this script reads the
 * config and runs the agent with exactly what it names added: read of the config file itself,
 * and the permissions {@linkcode requiredPermissions} derives from it (state_dir, podman
 * socket, NATS servers, creds and TLS files), plus read access to `[policy]
 * allowed_host_paths` ({@linkcode hostPathPermissions}). A relative `--config` is taken from the directory
 * the user ran `deno task` in (`INIT_CWD`), not the project root the task runs in.
 *
 * @module
 */

import { DEFAULT_CONFIG_PATH } from "../agent/config.ts";
import { parseArgs } from "../agent/main.ts";
import {
  hostPathPermissions,
  notifyPermissions,
  requiredPermissions,
} from "../agent/permissions.ts";
import { parseConfig } from "../agent/config.ts";
import type { AgentConfig } from "@drover/contracts";

/** The agent command line of the task, split where this launcher needs it. */
export interface AgentCommand {
  /** `run` and the permission and runtime flags, as in the task. */
  runArgs: string[];
  /** The agent's entry script (`agent/main.ts`). */
  entry: string;
  /** What the user typed after `deno task agent`. */
  agentArgs: string[];
}

/**
 * Splits this script's arguments (`deno run <flags> <entry> <user args>`) (pure).
 *
 * @throws {Error} when they are not a `deno run` command line.
 */
export function splitAgentCommand(args: readonly string[]): AgentCommand {
  if (args[0] !== "deno" || args[1] !== "run") {
    throw new Error(`Expected "deno run …" after the launcher, got: ${args.join(" ")}`);
  }
  const entryIndex = args.findIndex((word, i) => i > 1 && !word.startsWith("-"));
  const entry = args[entryIndex];
  if (entry === undefined) throw new Error(`No script in the agent command: ${args.join(" ")}`);
  return {
    runArgs: args.slice(1, entryIndex),
    entry,
    agentArgs: args.slice(entryIndex + 1),
  };
}

/** `path` made absolute against `cwd` (pure; `.`/`..` are left to the OS). */
export function absolutePath(path: string, cwd: string): string {
  return path.startsWith("/") ? path : `${cwd.replace(/\/+$/, "")}/${path}`;
}

/** What the launcher runs: Deno's arguments, and the permissions it added (for one line). */
export interface LaunchPlan {
  args: string[];
  added: string[];
}

/**
 * The `deno` arguments that run the agent for `command` (pure). With a config to run, the
 * agent gets read access to `configPath` (absolute) and, when `config` could be parsed,
 * every permission it names; otherwise the agent starts with only that and reports the
 * config's problem itself. `--help`, `--version` and usage errors run unchanged.
 */
export function launchPlan(
  command: AgentCommand,
  configPath: string | undefined,
  config: AgentConfig | undefined,
  notifySocket: string | undefined,
): LaunchPlan {
  const unchanged = { args: [...command.runArgs, command.entry, ...command.agentArgs], added: [] };
  if (configPath === undefined) return unchanged;
  const added = [`--allow-read=${configPath}`];
  if (config !== undefined) {
    const required = [
      ...requiredPermissions(config),
      ...hostPathPermissions(config),
      ...notifyPermissions(config.agent.state_dir, notifySocket),
    ];
    for (const p of required) added.push(p.flag);
  }
  const merged = mergeFlags(added);
  // Deno merges repeated --allow-* lists, so the task's own flags stay as they are.
  return {
    args: [...command.runArgs, ...merged, command.entry, "--config", configPath],
    added: merged,
  };
}

/** `--allow-read=a --allow-read=b` → `--allow-read=a,b`, first-seen order, no repeats (pure). */
export function mergeFlags(flags: readonly string[]): string[] {
  const lists = new Map<string, string[]>();
  for (const flag of flags) {
    const eq = flag.indexOf("=");
    const [name, value] = eq < 0 ? [flag, ""] : [flag.slice(0, eq), flag.slice(eq + 1)];
    const list = lists.get(name) ?? [];
    if (value !== "" && !list.includes(value)) list.push(value);
    lists.set(name, list);
  }
  return [...lists].map(([name, list]) => (list.length === 0 ? name : `${name}=${list.join(",")}`));
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Runs the agent as a child (same stdio), forwarding SIGTERM and SIGINT; returns its exit code. */
async function run(args: string[]): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), { args }).spawn();
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const forward = (signal: Deno.Signal) => () => {
    try {
      child.kill(signal);
    } catch {
      // Already exited.
    }
  };
  const listeners = signals.map((signal) => [signal, forward(signal)] as const);
  for (const [signal, listener] of listeners) Deno.addSignalListener(signal, listener);
  const status = await child.status;
  for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  return status.signal === null ? status.code : 128 + signalNumber(status.signal);
}

function signalNumber(signal: Deno.Signal): number {
  return ({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 0;
}

/** Entry point: returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const command = splitAgentCommand(args);
  const parsed = parseArgs(command.agentArgs);
  let configPath: string | undefined;
  let config: AgentConfig | undefined;
  if (parsed.kind === "run") {
    // `deno task` runs in the project root; the user meant their own directory.
    configPath = absolutePath(parsed.configPath, env("INIT_CWD") ?? Deno.cwd());
    try {
      config = parseConfig(configPath, await Deno.readTextFile(configPath));
    } catch {
      // Unreadable or invalid: the agent says what is wrong, naming file, line and key.
    }
  }
  const plan = launchPlan(command, configPath, config, env("NOTIFY_SOCKET"));
  if (configPath !== undefined && configPath !== DEFAULT_CONFIG_PATH) {
    console.error(
      `agent task: running with the permissions ${configPath} needs: ${plan.added.join(" ")}`,
    );
  }
  return await run(plan.args);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
