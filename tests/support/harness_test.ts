import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { mountsUnder, processesReferencing } from "./_host.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { HarnessError } from "./errors.ts";
import { slotAddresses, tryHoldNetworkSlot } from "./_podman_network.ts";
import { natsServerCommand } from "./nats.ts";
import {
  buildBusyboxImage,
  BUSYBOX_INDEX_HTML,
  freePort,
  podmanFetch,
  pushImage,
  startNats,
  startPodman,
  startRegistry,
  tempDir,
  waitFor,
  WaitTimeoutError,
} from "./mod.ts";

async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("freePort: never the same port twice, also when called concurrently", async () => {
  const ports = await Promise.all(Array.from({ length: 200 }, () => freePort()));
  assertEquals(new Set(ports).size, ports.length);
  const [port] = ports;
  assert(port !== undefined);
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  listener.close(); // each port was free to bind
});

Deno.test("startNats: JetStream KV works and data survives a restart on the same port", async () => {
  let dir: string;
  {
    await using nats = await startNats();
    dir = nats.dir;
    assert(nats.url === `nats://127.0.0.1:${nats.port}`, `url is ${nats.url}`);
    const nc = await connect({
      servers: nats.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    try {
      const kv = await new Kvm(nc).create("harness");
      await kv.put("greeting", "hello");
      await nats.restart();
      assert(nats.running, "server runs after restart");
      // A fresh connection proves the data came back from the store, not from a client cache.
      const nc2 = await connect({ servers: nats.url });
      try {
        const entry = await (await new Kvm(nc2).open("harness")).get("greeting");
        assertEquals(entry?.string(), "hello", "value after restart");
      } finally {
        await nc2.close();
      }
      await nats.kill();
      assert(!nats.running, "server is down after kill");
    } finally {
      await nc.close();
    }
  }
  assertEquals(await pathExists(dir), false, "server dir removed");
  assertEquals(await processesReferencing(dir), [], "no process left");
});

Deno.test("startNats: extraConfig is applied and a bad config fails with the log tail", async () => {
  await using nats = await startNats({ extraConfig: "max_payload: 4096" });
  const varz = await (await fetch(`${nats.monitorUrl}/varz`)).json();
  assertEquals(varz.max_payload, 4096, "max_payload from extraConfig");

  const error = await startNats({ extraConfig: "this is { not valid" }).catch((e) => e);
  assert(error instanceof Error && error.name === "ServiceStartError", `got ${error}`);
  assert(/nats-server/.test(error.message) && /log/.test(error.message), error.message);
});

async function fetchText(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(url);
    const text = await res.text();
    return res.ok ? text : undefined;
  } catch {
    return undefined;
  }
}

async function containerState(socket: string, name: string): Promise<string> {
  const res = await podmanFetch(socket, `/v4.0.0/libpod/containers/${name}/json`);
  const body = await res.json();
  if (!res.ok) throw new Error(`inspect ${name}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body.State.Status;
}

Deno.test("startPodman: serves a published busybox httpd, survives a service stop, leaves nothing behind", async () => {
  let dir: string;
  let bridge: string;
  let slotIndex: number;
  let containerPids: number[];
  {
    await using podman = await startPodman();
    dir = podman.dir;
    const ping = await podmanFetch(podman.socket, "/v4.0.0/libpod/_ping");
    assertEquals([ping.status, await ping.text()], [200, "OK"], "_ping");

    const image = await buildBusyboxImage(podman);
    const port = await freePort();
    const run = await podman.cli([
      "run",
      "-d",
      "--name",
      "web",
      "-p",
      `127.0.0.1:${port}:80`,
      image,
      "httpd",
      "-f",
      "-p",
      "80",
      "-h",
      "/www",
    ]);
    assertEquals(run.code, 0, `podman run: ${run.stderr}`);
    const page = await waitFor(() => fetchText(`http://127.0.0.1:${port}/`), {
      timeoutMs: 20_000,
      message: "busybox httpd answers on the published port",
    });
    assertEquals(page, BUSYBOX_INDEX_HTML, "served page");
    bridge = JSON.parse(await Deno.readTextFile(`${dir}/networks/podman.json`)).network_interface;
    slotIndex = Number(/^drover(\d+)$/.exec(bridge)?.[1]);
    assertEquals(slotAddresses(slotIndex).bridge, bridge, "the instance's bridge is a slot's");

    await podman.stop();
    assert(!podman.running, "service stopped");
    assertEquals(
      await fetchText(`http://127.0.0.1:${port}/`),
      BUSYBOX_INDEX_HTML,
      "container still serves",
    );
    const ps = await podman.cli(["inspect", "--format", "{{.Name}} {{.State.Status}}", "web"]);
    assertEquals(ps.stdout.trim(), "web running", "CLI sees the container running");

    await podman.start();
    assertEquals(
      await containerState(podman.socket, "web"),
      "running",
      "state via REST after start",
    );
    await podman.restart();
    assertEquals(
      await containerState(podman.socket, "web"),
      "running",
      "state via REST after restart",
    );
    // A second container that is still running at dispose time is removed too.
    const sleeper = await podman.cli(["run", "-d", "--name", "sleeper", image, "sleep", "600"]);
    assertEquals(sleeper.code, 0, `podman run sleeper: ${sleeper.stderr}`);
    const pids = await podman.cli(["inspect", "--format", "{{.State.Pid}}", "web", "sleeper"]);
    containerPids = pids.stdout.trim().split("\n").map(Number);
    assert(containerPids.length === 2 && containerPids.every((pid) => pid > 0), pids.stdout);
  }
  for (const pid of containerPids) {
    assertEquals(await pathExists(`/proc/${pid}`), false, `container process ${pid} gone`);
  }
  assertEquals(await processesReferencing(dir), [], "no conmon or service left");
  assertEquals(await mountsUnder(dir), [], "no mounts left");
  assertEquals(await pathExists(dir), false, "instance dir removed");
  // The dispose above refuses to give the slot back while its bridge exists; checked here too
  // when the slot is still free (another instance may have taken it, and with it the name).
  const slot = await tryHoldNetworkSlot(slotIndex);
  if (slot !== undefined) {
    try {
      assertEquals(await pathExists(`/sys/class/net/${bridge}`), false, "bridge removed");
    } finally {
      slot.release();
    }
  }
});

Deno.test("startPodman: parallel instances are isolated from each other", async () => {
  await using a = await startPodman();
  await using b = await startPodman();
  const [imageA] = await Promise.all([buildBusyboxImage(a), buildBusyboxImage(b)]);
  const [portA, portB] = [await freePort(), await freePort()];
  const runs = await Promise.all([
    a.cli([
      "run",
      "-d",
      "--name",
      "same",
      "-p",
      `127.0.0.1:${portA}:80`,
      imageA,
      "httpd",
      "-f",
      "-p",
      "80",
      "-h",
      "/www",
    ]),
    b.cli([
      "run",
      "-d",
      "--name",
      "same",
      "-p",
      `127.0.0.1:${portB}:80`,
      imageA,
      "httpd",
      "-f",
      "-p",
      "80",
      "-h",
      "/www",
    ]),
  ]);
  assertEquals(runs.map((r) => r.code), [0, 0], runs.map((r) => r.stderr).join("\n"));
  for (const port of [portA, portB]) {
    await waitFor(() => fetchText(`http://127.0.0.1:${port}/`), {
      timeoutMs: 20_000,
      message: `container on port ${port} serves`,
    });
  }
  // Streaming through podmanFetch: B's event stream sees B's removal; cancelling it releases the
  // connection (the test sanitizers would report a leaked HTTP client otherwise).
  const events = await podmanFetch(
    b.socket,
    `/v4.0.0/libpod/events?stream=true&filters=${encodeURIComponent('{"event":["remove"]}')}`,
  );
  const listA = await (await podmanFetch(a.socket, "/v4.0.0/libpod/containers/json")).json();
  assertEquals(listA.length, 1, "instance A lists only its own container");
  // Removing B's container leaves A's network and container alone.
  assertEquals((await b.cli(["rm", "-f", "-t", "0", "same"])).code, 0, "rm in B");
  const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
  const firstEvent = JSON.parse((await reader.read()).value?.split("\n")[0] ?? "null");
  assertEquals([firstEvent.Action, firstEvent.Actor.Attributes.name], ["remove", "same"], "event");
  await reader.cancel();
  assertEquals(await fetchText(`http://127.0.0.1:${portA}/`), BUSYBOX_INDEX_HTML, "A still serves");
});

Deno.test("startRegistry: push with and without htpasswd, pull over REST, wrong password fails", async () => {
  await using podman = await startPodman();
  const image = await buildBusyboxImage(podman);

  await using open = await startRegistry();
  await pushImage(podman, image, `${open.host}/drover/busybox:open`);

  const creds = { username: "pi", password: "s3cret-Pass" };
  await using locked = await startRegistry({ htpasswd: creds });
  const anonymous = await fetch(`${locked.url}/v2/`);
  await anonymous.body?.cancel();
  assertEquals(anonymous.status, 401, "auth required");
  await pushImage(podman, image, `${locked.host}/drover/busybox:locked`, creds);

  const wrong = await pushImage(podman, image, `${locked.host}/drover/busybox:wrong`, {
    username: "pi",
    password: "not-it",
  }).then(() => undefined, (error) => error);
  assert(wrong instanceof Error && wrong.name === "CommandError", `wrong password: got ${wrong}`);
  assert(!wrong.message.includes("not-it"), "password not echoed in the error");

  // Pull through the REST API as the agent will: registries.conf marks 127.0.0.1 insecure.
  const auth = btoa(JSON.stringify({ ...creds, serveraddress: locked.host }))
    .replaceAll("+", "-").replaceAll("/", "_");
  const pull = await podmanFetch(
    podman.socket,
    `/v4.0.0/libpod/images/pull?reference=${
      encodeURIComponent(`${locked.host}/drover/busybox:locked`)
    }&policy=always`,
    { method: "POST", headers: { "X-Registry-Auth": auth } },
  );
  const lines = (await pull.text()).trim().split("\n").map((line) => JSON.parse(line));
  assertEquals(lines.at(-1)?.error, undefined, `pull: ${JSON.stringify(lines.at(-1))}`);
  assert(typeof lines.at(-1)?.id === "string", "pull reports the image id");
});

Deno.test("startPodman: sweeps an instance abandoned by a test process killed with SIGKILL", async () => {
  const modUrl = new URL("./mod.ts", import.meta.url).href;
  // The child starts an instance with a running container, reports it, then dies without cleanup.
  const script = `
    import { buildBusyboxImage, startPodman } from ${JSON.stringify(modUrl)};
    const podman = await startPodman();
    const image = await buildBusyboxImage(podman);
    const run = await podman.cli(["run", "-d", image, "sleep", "600"]);
    const pid = (await podman.cli(["inspect", "--format", "{{.State.Pid}}", run.stdout.trim()])).stdout.trim();
    console.log(JSON.stringify({ dir: podman.dir, pid: Number(pid) }));
    Deno.kill(Deno.pid, "SIGKILL");
  `;
  const child = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(child.stdout).trim();
  assert(
    stdout.startsWith("{"),
    `child output: ${stdout}\n${new TextDecoder().decode(child.stderr)}`,
  );
  const abandoned: { dir: string; pid: number } = JSON.parse(stdout);
  assert(await pathExists(`/proc/${abandoned.pid}`), "container outlived its test process");

  await using _podman = await startPodman(); // Sweeps abandoned instances first.
  // A parallel test process may be the one sweeping it; either way it goes away.
  await waitFor(async () => !(await pathExists(abandoned.dir)), {
    timeoutMs: 30_000,
    message: `abandoned ${abandoned.dir} is swept`,
  });
  assertEquals(await pathExists(`/proc/${abandoned.pid}`), false, "abandoned container killed");
  assertEquals(await processesReferencing(abandoned.dir), [], "no process of it left");
  assertEquals(await mountsUnder(abandoned.dir), [], "no mount of it left");
});

Deno.test("waitFor returns the first truthy value and reports the last error on timeout", async () => {
  let calls = 0;
  const value = await waitFor(() => ++calls >= 3 ? `after ${calls}` : undefined, {
    timeoutMs: 5_000,
    intervalMs: 1,
    message: "third call",
  });
  assertEquals(value, "after 3");

  const error = await waitFor(() => {
    throw new Error("still booting");
  }, { timeoutMs: 50, intervalMs: 10, message: "service up" }).catch((e) => e);
  assert(error instanceof WaitTimeoutError, `got ${error}`);
  assert(error.message.startsWith("Timed out: service up"), error.message);
  assert(error.message.includes("still booting"), error.message);
  assert(error.cause instanceof Error, "cause is the last error");
});

Deno.test("tempDir is removed on dispose", async () => {
  let path: string;
  {
    await using dir = await tempDir();
    path = dir.path;
    await Deno.writeTextFile(`${path}/file`, "x");
  }
  assertEquals(await pathExists(path), false);
});

Deno.test("natsServerCommand: unset is the host's nats-server, a path is kept, set but empty is refused", () => {
  assertEquals(natsServerCommand(undefined), "nats-server");
  assertEquals(natsServerCommand("/opt/nats/nats-server"), "/opt/nats/nats-server");
  assertThrows(() => natsServerCommand(""), HarnessError, "set but empty");
});

Deno.test("waitFor gives up at its deadline even when an attempt never settles", async () => {
  // Without the deadline on each attempt this wait never ends (Deno reports the pending promise).
  await assertRejects(
    () =>
      waitFor(() => new Promise<boolean>(() => {}), { timeoutMs: 200, message: "a hung probe" }),
    WaitTimeoutError,
    "the last attempt had not settled when the time was up",
  );
  // Positive control: the same wait with a probe that settles returns its value.
  assertEquals(await waitFor(() => Promise.resolve(7), { timeoutMs: 200, message: "seven" }), 7);
});
