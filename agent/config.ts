/**
 * Loading `agent.toml`: TOML syntax via smol-toml, meaning via the contracts'
 * `AgentConfig` schema. Every problem becomes a {@linkcode ConfigError} whose
 * message names the file, the line (where one can be found) and the key, e.g.
 * `/etc/drover/agent.toml:7: agent.heartbeat_seconds: expected number, received string`.
 *
 * @module
 */

import { parse, TomlError } from "smol-toml";
import type { z } from "zod";
import {
  AgentConfig,
  clipLine,
  credsIdentity,
  explainIssues,
  formatIssueMessage,
  formatPath,
  LogLevel,
} from "@drover/contracts";

/** Most schema problems a {@linkcode ConfigError} lists one by one. */
export const MAX_REPORTED_ISSUES = 20;

/** Where the agent looks for its config when `--config` is not given. */
export const DEFAULT_CONFIG_PATH = "/etc/drover/agent.toml";

/** Environment variable that overrides `[agent] log_level`. */
export const LOG_LEVEL_ENV = "DROVER_LOG_LEVEL";

/** One problem found in a config file. */
export interface ConfigProblem {
  /** 1-based line, when it could be located. */
  line?: number | undefined;
  /** Dotted key path (`agent.heartbeat_seconds`), when the problem is about one key. */
  key?: string | undefined;
  /** What is wrong. */
  message: string;
}

/** The config file cannot be read or is invalid. The agent exits with EX_CONFIG (78). */
export class ConfigError extends Error {
  override name = "ConfigError";
  /** The config file. */
  readonly file: string;
  /** Every problem found (at least one). */
  readonly problems: readonly ConfigProblem[];
  constructor(file: string, problems: ConfigProblem[], options?: ErrorOptions) {
    super(problems.map((p) => formatProblem(file, p)).join("\n"), options);
    this.file = file;
    this.problems = problems;
  }
}

function formatProblem(file: string, p: ConfigProblem): string {
  const where = p.line === undefined ? file : `${file}:${p.line}`;
  return p.key === undefined ? `${where}: ${p.message}` : `${where}: ${p.key}: ${p.message}`;
}

/**
 * Reads and validates the agent config at `path`, checks that the files it
 * names are readable, and applies {@linkcode LOG_LEVEL_ENV} from `env`
 * (pass `(n) => Deno.env.get(n)`).
 *
 * @throws {ConfigError} naming file, line and key of every problem.
 */
export async function loadConfig(
  path: string,
  env: (name: string) => string | undefined = () => undefined,
): Promise<AgentConfig> {
  let source: string;
  try {
    source = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "file not found (pass --config PATH)"
      : e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable
      ? `permission denied (${(e as Error).message})`
      : (e as Error).message;
    throw new ConfigError(path, [{ message: `cannot read config file: ${why}` }], { cause: e });
  }
  const config = applyEnvOverrides(path, parseConfig(path, source), env);
  await checkReferencedFiles(path, source, config);
  return config;
}

/**
 * Parses and validates config text; `file` is only used in messages. Pure.
 *
 * @throws {ConfigError}
 */
export function parseConfig(file: string, source: string): AgentConfig {
  let raw: unknown;
  try {
    raw = parse(source);
  } catch (e) {
    if (e instanceof TomlError) {
      const first = (e.message.split("\n")[0] ?? "").replace(/^Invalid TOML document:\s*/, "");
      throw new ConfigError(file, [{ line: e.line, message: `invalid TOML: ${first}` }], {
        cause: e,
      });
    }
    throw new ConfigError(file, [{ message: `invalid TOML: ${(e as Error).message}` }], {
      cause: e,
    });
  }
  const result = AgentConfig.safeParse(raw);
  if (result.success) return result.data;
  // Bounded: a hostile file (an array of 100 000 bad values) must not yield a
  // message of megabytes.
  const issues = result.error.issues;
  const problems = issuesToProblems(source, issues.slice(0, MAX_REPORTED_ISSUES));
  if (issues.length > MAX_REPORTED_ISSUES) {
    problems.push({ message: `… and ${issues.length - MAX_REPORTED_ISSUES} more problem(s)` });
  }
  throw new ConfigError(file, problems, { cause: result.error });
}

function issuesToProblems(source: string, issues: z.core.$ZodIssue[]): ConfigProblem[] {
  const index = indexKeyLines(source);
  const problems: ConfigProblem[] = [];
  // One problem per unknown key, at the key's own line, with the key it likely misspells.
  for (const issue of explainIssues(AgentConfig, issues)) {
    const path = issue.path.map((s) => (typeof s === "number" ? s : String(s)));
    problems.push({
      line: findLine(index, path),
      key: path.length > 0 ? clipLine(formatPath(path)) : undefined,
      message: formatIssueMessage(issue),
    });
  }
  return problems;
}

/** Full key path (table + key) of every key or table header line. */
type KeyLineIndex = { path: string[]; line: number }[];

/**
 * Finds the lines where keys and tables are defined. Best effort: it handles
 * `[table]`, `[[array]]`, dotted and quoted keys; it does not need to be a
 * full TOML parser because smol-toml has already accepted the text.
 */
function indexKeyLines(source: string): KeyLineIndex {
  const index: KeyLineIndex = [];
  let table: string[] = [];
  let inMultiline: string | undefined;
  source.split(/\r?\n/).forEach((text, i) => {
    const line = i + 1;
    if (inMultiline !== undefined) {
      if (text.includes(inMultiline)) inMultiline = undefined;
      return;
    }
    const trimmed = text.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const header = /^\[\[?\s*(.*?)\s*\]\]?\s*(#.*)?$/.exec(trimmed);
    if (header) {
      table = splitKey(header[1] ?? "");
      index.push({ path: table, line });
      return;
    }
    const eq = findAssignment(trimmed);
    if (eq < 0) return;
    const keyPath = [...table, ...splitKey(trimmed.slice(0, eq))];
    index.push({ path: keyPath, line });
    const value = trimmed.slice(eq + 1).trim();
    for (const quote of ['"""', "'''"]) {
      if (value.startsWith(quote) && value.indexOf(quote, 3) < 0) inMultiline = quote;
    }
  });
  return index;
}

/** Index of the `=` separating key and value, skipping `=` inside quoted keys. */
function findAssignment(text: string): number {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "=") return i;
  }
  return -1;
}

/** Splits a TOML key (`a."b.c".d`) into its segments. */
function splitKey(key: string): string[] {
  const out: string[] = [];
  let current = "";
  let quote: string | undefined;
  for (const c of key.trim()) {
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else current += c;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === ".") {
      out.push(current.trim());
      current = "";
    } else current += c;
  }
  out.push(current.trim());
  return out;
}

/**
 * Line of the deepest key or table that is a prefix of `path`. For a value
 * inside an array (`nats.servers[1]`) that is the array's key; for a missing
 * key, the line of its table header.
 */
function findLine(index: KeyLineIndex, path: (string | number)[]): number | undefined {
  const wanted = path.filter((s): s is string => typeof s === "string");
  let best: { depth: number; line: number } | undefined;
  for (const entry of index) {
    if (entry.path.length > wanted.length) continue;
    if (!entry.path.every((segment, i) => segment === wanted[i])) continue;
    if (best === undefined || entry.path.length > best.depth) {
      best = { depth: entry.path.length, line: entry.line };
    }
  }
  return best !== undefined && best.depth > 0 ? best.line : undefined;
}

/**
 * Applies environment overrides ({@linkcode LOG_LEVEL_ENV}).
 *
 * @throws {ConfigError} naming the variable when its value is invalid.
 */
export function applyEnvOverrides(
  file: string,
  config: AgentConfig,
  env: (name: string) => string | undefined,
): AgentConfig {
  const level = env(LOG_LEVEL_ENV);
  if (level === undefined || level === "") return config;
  const parsed = LogLevel.safeParse(level.trim().toLowerCase());
  if (!parsed.success) {
    throw new ConfigError(file, [{
      message: `environment variable ${LOG_LEVEL_ENV}=${JSON.stringify(level)} is not one of ${
        LogLevel.options.join(", ")
      }`,
    }]);
  }
  return { ...config, agent: { ...config.agent, log_level: parsed.data } };
}

/** The config keys that name files the agent must be able to read. */
const FILE_KEYS = ["creds", "nkey_seed", "tls_ca", "tls_cert", "tls_key"] as const;

/**
 * Checks that every file named in `[nats]` is readable now, so a typo is a
 * config error at start rather than an endless reconnect loop.
 */
async function checkReferencedFiles(
  file: string,
  source: string,
  config: AgentConfig,
): Promise<void> {
  const index = indexKeyLines(source);
  const problems: ConfigProblem[] = [];
  for (const key of FILE_KEYS) {
    const path = config.nats[key];
    if (path === undefined) continue;
    try {
      const info = await Deno.stat(path);
      if (!info.isFile) throw new Error("not a regular file");
      (await Deno.open(path, { read: true })).close();
    } catch (e) {
      problems.push({
        line: findLine(index, ["nats", key]),
        key: `nats.${key}`,
        message: `cannot read ${path}: ${
          e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message
        }`,
      });
    }
  }
  if (problems.length === 0 && config.nats.creds !== undefined) {
    const problem = credsOwnerProblem(
      config.agent.device_id,
      await Deno.readTextFile(config.nats.creds).catch(() => ""),
    );
    if (problem !== undefined) {
      problems.push({
        line: findLine(index, ["nats", "creds"]),
        key: "nats.creds",
        message: `${config.nats.creds}: ${problem}`,
      });
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
}

/**
 * Why the creds in `text` cannot be this device's (another device's, or the
 * operator's), or undefined: starting with them would only loop on the
 * server's permission violations. Pure.
 */
export function credsOwnerProblem(deviceId: string, text: string): string | undefined {
  const identity = credsIdentity(text);
  if (identity?.kind === "device" && identity.device !== deviceId) {
    return `these are device "${identity.device}"'s credentials, but agent.device_id is ` +
      `"${deviceId}": use "${deviceId}"'s (operator device add ${deviceId} --dir DIR) or fix ` +
      "device_id";
  }
  if (identity?.kind === "operator") {
    return "these are the operator's credentials; a device needs its own " +
      `(operator device add ${deviceId} --dir DIR)`;
  }
  return undefined;
}
