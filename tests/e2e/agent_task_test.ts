/**
 * `deno task agent --config FILE` runs the agent from source with a config anywhere (its read
 * permission follows the config, so a file outside /etc/drover is not "permission denied"),
 * while the flags the installed agent is built with stay the task's narrow list.
 */

import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { BUCKET_AGENT_STATUS, statusKey } from "@drover/contracts";
import { startNats, tempDir, waitFor } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { ensureBuckets } from "../../operator/nats/kv.ts";
import { readAgentTask, splitCommandLine } from "../../scripts/compile.ts";
import { launchPlan, mergeFlags, splitAgentCommand } from "../../scripts/agent_task.ts";
import { collectOutput } from "../support/operator_process.ts";

const REPO = new URL("../../", import.meta.url).pathname;

Deno.test("agent task: a config in a temp dir, given relative to where deno task runs", async () => {
  await using nats = await startNats();
  await using dir = await tempDir();
  const nc = await connect({ servers: nats.url });
  try {
    await ensureBuckets(nc);
    await Deno.writeTextFile(
      `${dir.path}/agent.toml`,
      [
        "[agent]",
        'device_id = "trial-pi"',
        `state_dir = "${dir.path}/state"`,
        "heartbeat_seconds = 1",
        "[nats]",
        `servers = ["${nats.url}"]`,
        "[podman]",
        // No podman here: the device reports itself degraded, which is enough to see it run.
        `socket = "${dir.path}/podman.sock"`,
      ].join("\n") + "\n",
    );
    // As a user would: from the config's directory, with the config's name only.
    const task = new Deno.Command(Deno.execPath(), {
      args: ["task", "--config", `${REPO}deno.json`, "agent", "--config", "agent.toml"],
      cwd: dir.path,
      // A user's shell: no INIT_CWD inherited from the `deno task test` running this test
      // (deno task keeps an INIT_CWD it finds, and the launcher resolves against it).
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: Deno.env.get("HOME") ?? "/root",
        ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
        DROVER_LOG_LEVEL: "info",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = collectOutput(task);
    let exited: Deno.CommandStatus | undefined;
    const status = task.status.then((s) => (exited = s));
    try {
      const kv = await new Kvm(nc).open(BUCKET_AGENT_STATUS);
      await waitFor(async () => {
        if (exited) throw new Error(`the agent exited with ${exited.code}:\n${output.text()}`);
        return (await kv.get(statusKey("trial-pi")))?.operation === "PUT";
      }, { timeoutMs: 60_000, message: "the agent reports its status" });
      assertStringIncludes(output.text(), `--allow-read=${dir.path}/agent.toml`);
    } finally {
      if (!exited) task.kill("SIGTERM");
      await status;
      await output.done;
    }
    assertEquals(exited?.code, 0, output.text());
  } finally {
    await nc.close();
  }
});

Deno.test("agent task: the launcher adds only what the config names; the installed flags stay narrow", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${REPO}deno.json`));
  const words = splitCommandLine(config.tasks.agent);
  const agentCommand = words.slice(words.indexOf("scripts/agent_task.ts") + 1);
  const command = splitAgentCommand([...agentCommand, "--config", "/tmp/x/agent.toml"]);
  assertEquals(command.entry, "agent/main.ts");

  // What compile and bundle bake in: the agent's own flags, none of the launcher's.
  const installed = await readAgentTask(`${REPO}deno.json`);
  assertEquals(installed.entry, "agent/main.ts");
  for (const broad of ["--allow-read", "--allow-run", "--allow-all", "-A"]) {
    assert(!installed.runtimeFlags.includes(broad), `installed agent gets ${broad}`);
  }
  assert(!installed.runtimeFlags.some((f) => f.startsWith("--allow-run")), "no --allow-run");

  const plan = launchPlan(command, "/tmp/x/agent.toml", {
    agent: {
      device_id: "pi-1",
      state_dir: "/tmp/x/state",
      labels: {},
      heartbeat_seconds: 10,
      log_level: "info",
    },
    nats: { servers: ["nats://hub.example:4222"], creds: "/tmp/x/pi-1.creds" },
    podman: { socket: "/tmp/x/podman.sock" },
    registries: {},
    policy: { allowed_host_paths: ["/srv/x"] },
  }, undefined);
  assertEquals(plan.added, [
    "--allow-read=/tmp/x/agent.toml,/tmp/x/state,/tmp/x/podman.sock,/tmp/x/pi-1.creds,/srv/x",
    "--allow-write=/tmp/x/state,/tmp/x/podman.sock",
    "--allow-net=unix:/tmp/x/podman.sock,libpod:80,hub.example:4222",
  ]);
  assertEquals(plan.args.slice(-3), ["agent/main.ts", "--config", "/tmp/x/agent.toml"]);
  assertEquals(plan.args.slice(0, command.runArgs.length), command.runArgs);

  // --help and --version run as typed, with nothing added.
  const help = launchPlan(
    splitAgentCommand([...agentCommand, "--help"]),
    undefined,
    undefined,
    undefined,
  );
  assertEquals(help.added, []);
  assertEquals(
    mergeFlags(["--allow-read=a", "--allow-net=b", "--allow-read=a", "--allow-read=c"]),
    [
      "--allow-read=a,c",
      "--allow-net=b",
    ],
  );
});
