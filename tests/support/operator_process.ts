/**
 * The operator in cross-process tests (tests/e2e/operator_*_test.ts, operator/api/http_test.ts):
 * run the real CLI and the real `serve` as subprocesses, with exactly the
 * permissions of the `deno task operator` entry, and read KV revisions. (The agent's
 * counterpart is agent_process.ts.)
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type KV, Kvm } from "@nats-io/kv";
import { waitFor } from "./wait_for.ts";
import { type CommandResult, runCommand } from "./_exec.ts";

const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/** The `deno run …` arguments of the root `operator` task (so tests use its permissions). */
export async function operatorTaskArgs(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}deno.json`));
  const task: string = config.tasks.operator;
  const words = task.split(/\s+/);
  if (words[0] !== "deno") throw new Error(`Unexpected operator task: ${task}`);
  return words.slice(1).map((w) => (w.endsWith(".ts") ? `${REPO_ROOT}${w}` : w));
}

/** Output of one CLI run. */
export type CliResult = CommandResult;

/**
 * Runs `drover-operator ARGS` as a subprocess against `natsUrl`, in the project root as
 * `deno task operator` does. Relative paths resolve against the project root unless `env`
 * sets `INIT_CWD` (the directory a user ran `deno task` in).
 */
export async function runOperatorCli(
  natsUrl: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  return await runCommand(Deno.execPath(), [...await operatorTaskArgs(), ...args], {
    // INIT_CWD set explicitly: one inherited from a `deno task test` run elsewhere would not
    // match this process's directory.
    env: { NATS_URL: natsUrl, INIT_CWD: REPO_ROOT, ...env },
    cwd: REPO_ROOT,
  });
}

/** A running `serve` subprocess. */
export interface OperatorService extends AsyncDisposable {
  /** Base URL of the HTTP API. */
  readonly apiUrl: string;
  /** Process id of the `serve` process (for its RSS). */
  readonly pid: number;
  /** Log output so far (stderr). */
  logs(): string;
  /** SIGTERM and wait; returns the exit code. Idempotent. */
  stop(): Promise<number>;
  /** SIGKILL (a crash: nothing is cleaned up) and wait. Idempotent with {@linkcode stop}. */
  kill(): Promise<number>;
}

/** Starts `serve` and waits until `/healthz` answers 200. */
export async function startOperatorService(
  natsUrl: string,
  port: number,
  extraArgs: string[] = [],
): Promise<OperatorService> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...await operatorTaskArgs(),
      "serve",
      "--listen",
      `127.0.0.1:${port}`,
      ...extraArgs,
    ],
    env: { NATS_URL: natsUrl, DROVER_LOG_LEVEL: "debug" },
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = collectOutput(child);
  const drained = output.done;
  const apiUrl = `http://127.0.0.1:${port}`;
  let exit: Promise<number> | undefined;
  const end = (signal: Deno.Signal) => {
    if (exit === undefined) {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
      exit = child.status.then(async (s) => (await drained, s.code));
    }
    return exit;
  };
  const service: OperatorService = {
    apiUrl,
    pid: child.pid,
    logs: output.text,
    stop: () => end("SIGTERM"),
    kill: () => end("SIGKILL"),
    async [Symbol.asyncDispose]() {
      await service.stop();
    },
  };
  try {
    await waitFor(async () => {
      const res = await fetch(`${apiUrl}/healthz`);
      await res.body?.cancel();
      return res.ok;
    }, { timeoutMs: 30_000, message: "operator serve answers /healthz" });
  } catch (e) {
    await service.stop();
    throw new Error(`${(e as Error).message}:\n${output.text()}`, { cause: e });
  }
  return service;
}

/** A NATS connection and the three buckets, for the test's own reads and writes. */
export interface TestKv extends AsyncDisposable {
  nc: NatsConnection;
  open(bucket: string): Promise<KV>;
}

/** Connects to NATS for the test itself. */
export async function testKv(natsUrl: string): Promise<TestKv> {
  const nc = await connect({ servers: natsUrl });
  const kvm = new Kvm(nc);
  return {
    nc,
    open: (bucket) => kvm.open(bucket),
    async [Symbol.asyncDispose]() {
      await nc.close();
    },
  };
}

/** Key → revision of every live key of `kv` (for "nothing was rewritten" checks). */
export async function liveRevisions(kv: KV): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const keys: string[] = [];
  for await (const key of await kv.keys()) keys.push(key);
  for (const key of keys) {
    const entry = await kv.get(key);
    if (entry && entry.operation === "PUT") out.set(key, entry.revision);
  }
  return out;
}

/**
 * Reads a child's stdout and stderr into one growing text, so its log can be
 * shown when a test fails (and the pipes never fill up and block it).
 */
export function collectOutput(
  child: { stdout: ReadableStream<Uint8Array>; stderr: ReadableStream<Uint8Array> },
): { text: () => string; done: Promise<unknown> } {
  let log = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    // One decoder per stream: a character split across two chunks of one stream must not
    // be decoded with the other stream's bytes in between.
    const decoder = new TextDecoder();
    for await (const chunk of stream) log += decoder.decode(chunk, { stream: true });
    log += decoder.decode();
  };
  return { text: () => log, done: Promise.all([drain(child.stdout), drain(child.stderr)]) };
}
