/**
 * The command table: every CLI command, in the order `--help` lists them.
 * A new command is one module in this folder plus one line here.
 *
 * @module
 */

import type { Command } from "./cli.ts";
import { applyCommand } from "./apply.ts";
import { diffCommand } from "./diff.ts";
import { deleteCommand } from "./delete.ts";
import { getCommand } from "./get.ts";
import { statusCommand } from "./status.ts";
import { serveCommand } from "./serve.ts";
import { authCommand } from "./auth.ts";
import { deviceCommand } from "./device.ts";
import { rolloutCommand } from "./rollout.ts";
import { historyCommand } from "./history.ts";
import { logsCommand } from "./logs.ts";
import { pingCommand } from "./ping.ts";
import { eventsCommand } from "./events.ts";
import { agentCommand } from "./agent.ts";
import { secretCommand } from "./secret.ts";
import { convertCommand } from "./convert.ts";

/** Every command, by position in help. */
export const COMMANDS: readonly Command[] = [
  applyCommand,
  diffCommand,
  deleteCommand,
  getCommand,
  statusCommand,
  rolloutCommand,
  historyCommand,
  logsCommand,
  pingCommand,
  eventsCommand,
  serveCommand,
  authCommand,
  deviceCommand,
  secretCommand,
  agentCommand,
  convertCommand,
];

/** Finds a command by name. */
export function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}
