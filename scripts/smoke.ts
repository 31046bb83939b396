/**
 * `deno task smoke [--keep]`: brings up the whole of Drover on this machine and proves the path
 * end to end — nats-server, an isolated podman service, a locally built busybox image, the
 * operator service, one agent registered with `site=home` in the operator's device registry (the
 * labels deployments select by) — then applies examples/hello.yaml, fetches the page, applies a
 * change, restarts NATS under a stopped agent and checks the workload was left alone, and
 * deletes it. Prints each step with its timing and a PASS/FAIL summary; exits non-zero on FAIL.
 *
 * Everything lives in temp dirs on loopback and is removed at the end, also after a failure or
 * Ctrl-C. `--keep` leaves it all running after the checks, prints how to poke at it, and cleans
 * up on Ctrl-C.
 *
 * @module
 */

import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import {
  AgentStatus,
  BUCKET_AGENT_STATUS,
  decodeJson,
  DeploymentManifest,
  formatZodIssues,
  labelPairs,
  statusKey,
} from "@drover/contracts";
import {
  buildBusyboxImage,
  freePort,
  ManagedProcess,
  type NatsServer,
  type PodmanService,
  startNats,
  startPodman,
  waitFor,
} from "../tests/support/mod.ts";
import { AgentProcess, agentToml } from "../tests/support/agent_process.ts";
import { readTask } from "./compile.ts";
import { Progress } from "./smoke/progress.ts";
import {
  type Daemon,
  DAEMON_STOP_GRACE_MS,
  runCli,
  runCliChecked,
  SmokeError,
} from "./smoke/processes.ts";
import { untilAborted } from "@drover/common";

const DEVICE_ID = "smoke-pi";
const DEVICE_LABELS = { site: "home", arch: Deno.build.arch };
const DEPLOYMENT = "hello";
const CONTAINER = `${DEPLOYMENT}_web`;
const EXAMPLE_MANIFEST = "examples/hello.yaml";
const FIRST_GREETING = "Hello from Drover";
const SECOND_GREETING = "Hello again from Drover, revision two";
/** Convergence bounds: generous, the machine is shared (these are limits, not measurements). */
const CONVERGE_TIMEOUT_MS = 90_000;
const START_TIMEOUT_MS = 60_000;

const STEPS = {
  prereqs: "Check prerequisites (scripts/prereqs.sh)",
  nats: "Start nats-server with JetStream",
  podman: "Start podman service with isolated storage",
  image: "Build the demo image locally (busybox httpd)",
  operator: "Start the operator (serve)",
  register: "Register the device's labels (operator device label)",
  agent: "Start the agent",
  apply: `Apply ${EXAMPLE_MANIFEST}`,
  served: "Fetch the page from the container",
  show: "Show get deployments / get devices",
  change: "Apply a change and see it served",
  reconnect: "Stop agent, restart nats-server, start agent: reconnects, workload untouched",
  delete: "Delete the deployment: container gone",
} as const;

/** Everything a step may need; filled in as the services come up. */
interface Env {
  dir: string;
  signal: AbortSignal;
  nats?: NatsServer;
  podman?: PodmanService;
  image?: string;
  operatorFlags: string[];
  agentFlags: string[];
  operator?: ManagedProcess;
  agent?: AgentProcess;
  apiUrl?: string;
  agentConfigPath?: string;
  hostPort?: number;
  manifestPath?: string;
}

function operatorCommand(env: Env, args: string[]): [string, ...string[]] {
  return [Deno.execPath(), "run", ...env.operatorFlags, "operator/main.ts", ...args];
}

function operatorEnv(env: Env): Record<string, string> {
  return { NATS_URL: env.nats!.url };
}

/** Runs an operator CLI command (`apply …`, `get …`) and returns its stdout. */
async function operator(env: Env, args: string[]): Promise<string> {
  return (await runCliChecked(operatorCommand(env, args), operatorEnv(env), env.signal)).stdout;
}

/**
 * The agent task's permissions are scoped to the paths of a device install (/etc/drover,
 * /var/lib/drover, /run/podman/podman.sock). The smoke run keeps its config, state and podman
 * socket in temp dirs, so it grants those too — the same flags the agent's preflight asks for
 * when a config points elsewhere; NATS on 127.0.0.1 is already allowed.
 */
function agentFlagsForSmoke(env: Env): string[] {
  const socket = env.podman!.socket;
  return [
    ...env.agentFlags,
    `--allow-read=${env.dir},${socket}`,
    `--allow-write=${env.dir},${socket}`,
    `--allow-net=unix:${socket}`,
  ];
}

/** Starts the agent the way the tests do, with the `agent` task's permissions (see above). */
function startAgent(env: Env): AgentProcess {
  return AgentProcess.start({
    configPath: env.agentConfigPath!,
    logPath: `${env.dir}/agent.log`,
    permissions: agentFlagsForSmoke(env),
    env: { DROVER_LOG_LEVEL: "info" },
  });
}

/** The agent config the smoke run uses (TOML). */
function agentConfig(env: Env): string {
  return agentToml({
    deviceId: DEVICE_ID,
    stateDir: `${env.dir}/agent-state`,
    labels: DEVICE_LABELS,
    heartbeatSeconds: 2,
    natsUrl: env.nats!.url,
    podmanSocket: env.podman!.socket,
  });
}

/** examples/hello.yaml with the host port replaced by a free one (8088 may be taken here). */
async function smokeManifest(env: Env, greeting: string): Promise<string> {
  const manifest = parseYaml(await Deno.readTextFile(EXAMPLE_MANIFEST));
  const checked = DeploymentManifest.safeParse(manifest);
  if (!checked.success) {
    throw new SmokeError(`${EXAMPLE_MANIFEST} is invalid: ${formatZodIssues(checked.error)}`);
  }
  const web = manifest.score.services[0];
  web.ports = [`127.0.0.1:${env.hostPort}:8080`];
  web.env = { ...web.env, GREETING: greeting };
  return stringifyYaml(manifest);
}

/** The page served on the published port, or undefined when nothing answers. */
async function fetchPage(env: Env): Promise<string | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${env.hostPort}/`, {
      signal: AbortSignal.timeout(2000),
    });
    const text = await response.text();
    return response.ok ? text.trim() : undefined;
  } catch {
    return undefined;
  }
}

function waitForPage(env: Env, expected: string): Promise<string> {
  return waitFor(async () => (await fetchPage(env)) === expected ? expected : undefined, {
    timeoutMs: CONVERGE_TIMEOUT_MS,
    intervalMs: 200,
    message: `page on 127.0.0.1:${env.hostPort} says ${JSON.stringify(expected)}`,
    signal: env.signal,
  });
}

/** Id and start time of the deployment's container, or undefined when there is none. */
async function container(env: Env): Promise<{ id: string; startedAt: string } | undefined> {
  const result = await env.podman!.cli([
    "ps",
    "--all",
    "--filter",
    `label=drover.deployment=${DEPLOYMENT}`,
    "--format",
    "{{.ID}}",
    "--no-trunc",
  ]);
  const ids = result.stdout.trim().split("\n").filter((l) => l !== "");
  const [id] = ids;
  if (id === undefined) return undefined;
  if (ids.length > 1) {
    throw new SmokeError(`expected one ${DEPLOYMENT} container, found ${ids.length}`);
  }
  const inspect = await env.podman!.cli(["inspect", id, "--format", "{{.State.StartedAt}}"]);
  return { id, startedAt: inspect.stdout.trim() };
}

/** The device's status as the agent last wrote it to KV (connects per call: NATS may restart). */
async function deviceStatus(env: Env): Promise<AgentStatus | undefined> {
  const nc = await connect({ servers: env.nats!.url, reconnect: false, timeout: 2000 });
  try {
    const kv = await new Kvm(nc).open(BUCKET_AGENT_STATUS);
    const entry = await kv.get(statusKey(DEVICE_ID));
    if (!entry || entry.operation !== "PUT") return undefined;
    const decoded = decodeJson(AgentStatus, entry.value);
    if (!decoded.ok) throw new SmokeError(`agent-status/${DEVICE_ID} is invalid: ${decoded.error}`);
    return decoded.value;
  } finally {
    await nc.close();
  }
}

interface DeploymentRow {
  name: string;
  targeted: number;
  ready: number;
  failed: number;
  pending: number;
}

async function deploymentRow(env: Env): Promise<DeploymentRow | undefined> {
  const rows = JSON.parse(await operator(env, ["get", "deployments", "-o", "json"]));
  return (rows as DeploymentRow[]).find((r) => r.name === DEPLOYMENT);
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}

async function daemonFailure(daemon: Daemon, what: string): Promise<SmokeError> {
  return new SmokeError(
    `${what}\n--- last lines of ${daemon.logPath} ---\n${await daemon.logTail()}`,
  );
}

/** Waits until `daemon` passes `ready`, failing early (with its log) if it exits. */
async function waitForDaemon(
  name: string,
  daemon: Daemon,
  env: Env,
  message: string,
  ready: () => Promise<unknown>,
) {
  try {
    await waitFor(async () => {
      if (!daemon.running) throw new SmokeError(`${name} exited`);
      return await ready();
    }, { timeoutMs: START_TIMEOUT_MS, intervalMs: 250, message, signal: env.signal });
  } catch (error) {
    if (env.signal.aborted) throw error;
    throw await daemonFailure(daemon, (error as Error).message);
  }
  if (!daemon.running) throw await daemonFailure(daemon, `${name} exited`);
}

function indent(text: string): string {
  return text.trimEnd().split("\n").map((l) => `  ${l}`).join("\n");
}

async function runSteps(progress: Progress, env: Env, cleanup: AsyncDisposableStack) {
  await progress.step(STEPS.prereqs, async (note) => {
    const result = await runCli(["bash", "scripts/prereqs.sh"], undefined, env.signal);
    if (result.stdout.trim() !== "") note(result.stdout.trim());
    if (result.code !== 0) throw new SmokeError(`prereqs.sh failed:\n${result.stderr}`);
    note("nats-server, podman, runc, busybox-static present");
  });

  await progress.step(STEPS.nats, async (note) => {
    env.nats = cleanup.use(await startNats());
    note(`${env.nats.url} (store ${env.nats.storeDir}, monitor ${env.nats.monitorUrl})`);
  });

  await progress.step(STEPS.podman, async (note) => {
    env.podman = cleanup.use(await startPodman());
    note(`socket ${env.podman.socket}`);
  });

  await progress.step(STEPS.image, async (note) => {
    const manifest = parseYaml(await Deno.readTextFile(EXAMPLE_MANIFEST));
    const tag: string = manifest.score.services[0].image;
    env.image = await buildBusyboxImage(env.podman!, tag);
    note(`${env.image} imported from /bin/busybox (no registry needed)`);
  });

  await progress.step(STEPS.operator, async (note) => {
    const port = await freePort();
    env.apiUrl = `http://127.0.0.1:${port}`;
    const [command, ...args] = operatorCommand(env, ["serve", "--listen", `127.0.0.1:${port}`]);
    const daemon = ManagedProcess.spawn({
      command,
      args,
      env: operatorEnv(env),
      logPath: `${env.dir}/operator.log`,
    });
    env.operator = daemon;
    cleanup.defer(async () => void await daemon.stop(DAEMON_STOP_GRACE_MS));
    await waitForDaemon(
      "operator",
      daemon,
      env,
      "operator /healthz answers",
      () => httpOk(`${env.apiUrl}/healthz`),
    );
    note(`pid ${daemon.pid}, API ${env.apiUrl} (log ${daemon.logPath})`);
  });

  await progress.step(STEPS.register, async (note) => {
    // What a user does: selectors match the operator's registry, not what the agent reports.
    const labels = labelPairs(DEVICE_LABELS);
    note(`$ drover-operator device label ${DEVICE_ID} ${labels.join(" ")}`);
    note(indent(await operator(env, ["device", "label", DEVICE_ID, ...labels])));
  });

  await progress.step(STEPS.agent, async (note) => {
    env.agentConfigPath = `${env.dir}/agent.toml`;
    await Deno.writeTextFile(env.agentConfigPath, agentConfig(env));
    const daemon = startAgent(env);
    env.agent = daemon;
    cleanup.defer(async () => void await env.agent?.stop(DAEMON_STOP_GRACE_MS));
    await waitForDaemon(
      "agent",
      daemon,
      env,
      `agent reports status as ${DEVICE_ID}`,
      () => deviceStatus(env),
    );
    const status = await deviceStatus(env);
    note(`pid ${daemon.pid}, device ${DEVICE_ID} labels ${JSON.stringify(DEVICE_LABELS)}`);
    note(`status: ${status?.status}, agent ${status?.agent_version} (log ${daemon.logPath})`);
  });

  await progress.step(STEPS.apply, async (note) => {
    env.hostPort = await freePort();
    env.manifestPath = `${env.dir}/hello.yaml`;
    await Deno.writeTextFile(env.manifestPath, await smokeManifest(env, FIRST_GREETING));
    note(`${EXAMPLE_MANIFEST} with host port ${env.hostPort} -> ${env.manifestPath}`);
    note(indent(await operator(env, ["apply", "-f", env.manifestPath, "--wait"])));
  });

  await progress.step(STEPS.served, async (note) => {
    const page = await waitForPage(env, FIRST_GREETING);
    const found = await container(env);
    note(`GET http://127.0.0.1:${env.hostPort}/ -> ${JSON.stringify(page)}`);
    note(`container ${CONTAINER} ${found?.id.slice(0, 12)}`);
  });

  await progress.step(STEPS.show, async (note) => {
    const row = await waitFor(async () => {
      const r = await deploymentRow(env);
      return r && r.targeted === 1 && r.ready === 1 ? r : undefined;
    }, {
      timeoutMs: CONVERGE_TIMEOUT_MS,
      message: "get deployments shows 1/1 ready",
      signal: env.signal,
    });
    note("$ drover-operator get deployments");
    note(indent(await operator(env, ["get", "deployments"])));
    note("$ drover-operator get devices");
    note(indent(await operator(env, ["get", "devices"])));
    note(
      `json: targeted=${row.targeted} ready=${row.ready} failed=${row.failed} pending=${row.pending}`,
    );
  });

  await progress.step(STEPS.change, async (note) => {
    const before = await container(env);
    await Deno.writeTextFile(env.manifestPath!, await smokeManifest(env, SECOND_GREETING));
    note(`GREETING -> ${JSON.stringify(SECOND_GREETING)}`);
    note(indent(await operator(env, ["apply", "-f", env.manifestPath!, "--wait"])));
    await waitForPage(env, SECOND_GREETING);
    const after = await container(env);
    if (!after || after.id === before?.id) {
      throw new SmokeError(`expected a replaced container, still ${before?.id.slice(0, 12)}`);
    }
    note(
      `served ${JSON.stringify(SECOND_GREETING)}; container replaced ${
        before?.id.slice(0, 12)
      } -> ${after.id.slice(0, 12)}`,
    );
  });

  await progress.step(STEPS.reconnect, async (note) => {
    const before = await container(env);
    if (!before) throw new SmokeError(`no ${CONTAINER} container before the restart`);
    const code = await env.agent!.stop(DAEMON_STOP_GRACE_MS);
    note(`agent stopped (${code === 0 ? "clean exit on SIGTERM" : `exit code ${code}`})`);
    await env.nats!.restart();
    note(`nats-server restarted on ${env.nats!.url} with the same store`);
    const restartedAt = new Date();
    env.agent = startAgent(env);
    const status = await waitFor(async () => {
      if (!env.agent!.running) throw await daemonFailure(env.agent!, "agent exited after restart");
      const s = await deviceStatus(env);
      const deployment = s?.deployments[DEPLOYMENT];
      return s && new Date(s.timestamp) > restartedAt && deployment?.phase === "running"
        ? s
        : undefined;
    }, {
      timeoutMs: CONVERGE_TIMEOUT_MS,
      intervalMs: 250,
      message: `restarted agent reports ${DEPLOYMENT} running`,
      signal: env.signal,
    });
    note(`agent pid ${env.agent.pid} reconnected: status ${status.status} at ${status.timestamp}`);
    const after = await container(env);
    if (after?.id !== before.id || after.startedAt !== before.startedAt) {
      throw new SmokeError(
        `workload was touched: container ${before.id.slice(0, 12)} started ${before.startedAt} ` +
          `is now ${after?.id.slice(0, 12)} started ${after?.startedAt}`,
      );
    }
    note(`container ${after.id.slice(0, 12)} untouched (same id, started ${after.startedAt})`);
    const page = await fetchPage(env);
    if (page !== SECOND_GREETING) throw new SmokeError(`page now says ${JSON.stringify(page)}`);
    note(`still serving ${JSON.stringify(page)}`);
  });

  await progress.step(STEPS.delete, async (note) => {
    note(indent(await operator(env, ["delete", DEPLOYMENT])));
    await waitFor(async () => (await container(env)) === undefined, {
      timeoutMs: CONVERGE_TIMEOUT_MS,
      message: `${CONTAINER} container removed`,
      signal: env.signal,
    });
    const page = await fetchPage(env);
    if (page !== undefined) throw new SmokeError(`port ${env.hostPort} still serves ${page}`);
    note(`no container labelled drover.deployment=${DEPLOYMENT}; port ${env.hostPort} closed`);
  });
}

function pokeAround(env: Env): string {
  const podmanEnv = Object.entries(env.podman?.env ?? {}).map(([k, v]) => `${k}=${v}`).join(" ");
  return [
    "",
    "--keep: everything is still running, with hello re-applied. In another shell:",
    `  export NATS_URL=${env.nats?.url}`,
    "  deno task operator get devices",
    "  deno task operator get deployments",
    "  deno task operator status hello",
    `  deno task operator apply -f ${env.manifestPath}   # edit GREETING first`,
    `  curl http://127.0.0.1:${env.hostPort}/`,
    `  curl ${env.apiUrl}/api/devices`,
    `  alias podman-smoke='env ${podmanEnv} podman'`,
    "  podman-smoke ps",
    `Logs: ${env.dir}/agent.log, ${env.dir}/operator.log, ${env.nats?.logPath}`,
    `Agent config: ${env.agentConfigPath}`,
    "Press Ctrl-C to stop everything and clean up.",
  ].join("\n");
}

async function main(): Promise<number> {
  const args = Deno.args;
  if (args.includes("--help") || args.includes("-h")) {
    console.log(
      "Usage: deno task smoke [--keep]\n" +
        "Runs nats-server, podman, the operator and one agent locally and checks the whole path.\n" +
        "  --keep  leave everything running after the checks (Ctrl-C cleans up)",
    );
    return 0;
  }
  const unknown = args.filter((a) => a !== "--keep");
  if (unknown.length > 0) {
    console.error(`smoke: unknown argument ${unknown[0]} (try --help)`);
    return 2;
  }
  const keep = args.includes("--keep");

  const interrupt = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) {
      console.error("\nsmoke: second Ctrl-C, exiting without cleanup");
      Deno.exit(130);
    }
    console.error("\nsmoke: Ctrl-C, cleaning up (press again to exit at once)");
    interrupt.abort(new SmokeError("interrupted by Ctrl-C"));
  };
  Deno.addSignalListener("SIGINT", onSigint);
  Deno.addSignalListener("SIGTERM", onSigint);

  const progress = new Progress(Object.values(STEPS));
  const dir = await Deno.makeTempDir({ prefix: "drover-smoke-" });
  const env: Env = {
    dir,
    signal: interrupt.signal,
    operatorFlags: (await readTask("operator", "deno.json", { allowAll: true })).runtimeFlags,
    agentFlags: (await readTask("agent")).runtimeFlags,
  };
  let passed = false;
  {
    await using cleanup = new AsyncDisposableStack();
    cleanup.defer(() => Deno.remove(dir, { recursive: true }).catch(() => {}));
    try {
      await runSteps(progress, env, cleanup);
      passed = true;
    } catch (error) {
      if (!(error instanceof Error)) throw error;
      // Already reported by the step. For a real failure (not Ctrl-C) show the logs' tails.
      if (!interrupt.signal.aborted) {
        for (const [name, daemon] of [["agent", env.agent], ["operator", env.operator]] as const) {
          if (daemon) {
            console.log(`\n--- ${name} log (tail) ---\n${await daemon.logTail(20)}`);
          }
        }
      }
    }
    console.log(progress.summary());
    if (passed && keep && !interrupt.signal.aborted) {
      // The checks end with a delete; bring the example back so there is something to look at.
      await Deno.writeTextFile(env.manifestPath!, await smokeManifest(env, FIRST_GREETING));
      console.log(await operator(env, ["apply", "-f", env.manifestPath!]));
      console.log(pokeAround(env));
      await untilAborted(interrupt.signal);
    }
    console.log("Cleaning up…");
  }
  Deno.removeSignalListener("SIGINT", onSigint);
  Deno.removeSignalListener("SIGTERM", onSigint);
  console.log("Cleaned up.");
  if (interrupt.signal.aborted && !passed) return 130;
  return passed ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
