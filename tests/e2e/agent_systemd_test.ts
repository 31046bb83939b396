/**
 * The agent under the narrowest permissions (the `agent` task's set, with
 * this test's paths) talking to a notify socket as systemd would: READY
 * after the first pass, watchdog pings, STOPPING on SIGTERM.
 */
import { freePort, startAgentEnv, waitFor, waitForPage, webDeployment } from "./_agent_harness.ts";
import { assert, assertEquals } from "../support/assert.ts";

Deno.test("agent: sd_notify READY/WATCHDOG/STOPPING under narrow permissions", async () => {
  await using env = await startAgentEnv();
  const notifyPath = `${env.dir.path}/notify.sock`;
  const notify = Deno.listenDatagram({ transport: "unixpacket", path: notifyPath });
  const messages: string[] = [];
  const receiving = (async () => {
    try {
      while (true) {
        const [data] = await notify.receive();
        messages.push(new TextDecoder().decode(data));
      }
    } catch {
      // closed
    }
  })();
  try {
    const stateDir = `${env.dir.path}/state`;
    const natsHostPort = env.nats.url.replace("nats://", "");
    const socket = env.podman.socket;
    const permissions = [
      `--allow-read=${env.dir.path},${socket}`,
      `--allow-write=${stateDir},${socket},${notifyPath}`,
      `--allow-net=${natsHostPort},libpod:80,unix:${socket},unix:${stateDir}/sd-notify.sock,unix:${notifyPath}`,
      "--allow-env=DROVER_LOG_LEVEL,DROVER_LOG_FORMAT,NOTIFY_SOCKET,WATCHDOG_USEC,WATCHDOG_PID",
    ];
    const port = await freePort();
    await env.putDesired("web", webDeployment("web", port, "notify"));
    const agent = env.startAgent(
      { NOTIFY_SOCKET: notifyPath, WATCHDOG_USEC: "1000000" },
      permissions,
    );
    await waitForPage(port, "notify");
    const waitForMessage = async (prefix: string) => {
      await waitFor(() => messages.some((m) => m.startsWith(prefix)), {
        timeoutMs: 30_000,
        intervalMs: 50,
        message: `${prefix} among ${JSON.stringify(messages)}`,
      }).catch(async (e) => {
        throw new Error(`${e.message}; logs:\n${await agent.logs()}`, { cause: e });
      });
    };
    await waitForMessage("READY=1");
    await waitForMessage("WATCHDOG=1");
    // The STATUS= line follows the device: one running deployment.
    await waitFor(() => messages.some((m) => m.includes("STATUS=ready: 1 deployment")), {
      timeoutMs: 30_000,
      message: `STATUS line for one deployment in ${JSON.stringify(messages)}`,
    });
    assertEquals(await agent.stop(), 0);
    await waitForMessage("STOPPING=1");
    const ready = messages.findIndex((m) => m.startsWith("READY=1"));
    const stopping = messages.findIndex((m) => m.startsWith("STOPPING=1"));
    assert(ready < stopping, `READY before STOPPING: ${JSON.stringify(messages)}`);
    assertEquals((await env.status())?.status, "stopped");
  } finally {
    notify.close();
    await receiving;
  }
});
