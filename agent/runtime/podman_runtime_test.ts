/**
 * PodmanRuntime against a real podman service (isolated storage) and a real
 * local registry, plus the pure spec translation.
 */

import { assert, assertEquals, assertRejects } from "../../tests/support/assert.ts";
import {
  buildBusyboxImage,
  fetchPublishedPort,
  freePort,
  pushImage,
  startPodman,
  startRegistry,
  waitFor,
} from "../../tests/support/mod.ts";
import { PodmanRuntime, toHealthReport, toLibpodSpec } from "./podman_runtime.ts";
import {
  ContainerNameConflictError,
  type ContainerSpec,
  ImageMissingError,
  ImagePullError,
  type RuntimeEvent,
  RuntimeUnavailableError,
} from "./runtime.ts";

const TAG = "localhost/drover/busybox:runtime-test";

function spec(name: string, image: string, port?: number): ContainerSpec {
  return {
    name,
    image,
    command: ["sh", "-c", 'echo "$GREETING" > /tmp/index.html && exec httpd -f -p 80 -h /tmp'],
    env: { GREETING: "hello from the runtime test" },
    ports: port
      ? [{ hostIp: "127.0.0.1", hostPort: port, containerPort: 80, protocol: "tcp" }]
      : [],
    volumes: [],
    restart: "always",
    labels: {
      team: "qa",
      "drover.managed": "true",
      "drover.deployment": "rt",
      "drover.service": name.split("_")[1] ?? name,
      "drover.revision": "12",
      "drover.spec-hash": "hash-1",
    },
  };
}

Deno.test("toLibpodSpec: health check durations in ns, stop timeout in seconds", () => {
  const body = toLibpodSpec({
    name: "a_b",
    image: "docker.io/library/busybox:1",
    env: {},
    ports: [],
    volumes: [],
    restart: "always",
    labels: {},
    healthcheck: {
      test: ["CMD", "true"],
      intervalMs: 1000,
      timeoutMs: 2500,
      retries: 2,
      startPeriodMs: 0,
    },
    stopTimeoutSeconds: 3,
  });
  assertEquals(body.healthconfig, {
    Test: ["CMD", "true"],
    Interval: 1e9,
    Timeout: 2.5e9,
    Retries: 2,
    StartPeriod: 0,
  });
  assertEquals(body.stop_timeout, 3);
});

Deno.test("toHealthReport: podman's record; no status means no health check", () => {
  assertEquals(toHealthReport({ Status: "", FailingStreak: 0, Log: null }), undefined);
  assertEquals(toHealthReport(undefined), undefined);
  assertEquals(
    toHealthReport({
      Status: "unhealthy",
      FailingStreak: 2,
      Log: [{
        Start: "2026-12-01T15:23:04.8Z",
        End: "2026-12-01T15:23:05Z",
        ExitCode: 1,
        Output: "nope\n",
      }],
    }),
    {
      status: "unhealthy",
      failingStreak: 2,
      lastExitCode: 1,
      lastOutput: "nope",
      lastEndedAtMs: Date.parse("2026-12-01T15:23:05Z"),
    },
  );
});

Deno.test("toLibpodSpec maps env, ports, bind mounts, named volumes and restart policy", () => {
  const body = toLibpodSpec({
    name: "d_s",
    image: "x:1",
    entrypoint: ["/bin/sh"],
    env: { A: "1" },
    ports: [
      { hostIp: "127.0.0.1", hostPort: 8080, containerPort: 80, protocol: "tcp" },
      { containerPort: 53, protocol: "udp" },
    ],
    volumes: [
      { type: "bind", source: "/srv/a", target: "/a", readOnly: true },
      { type: "volume", source: "data", target: "/data", readOnly: false },
    ],
    restart: "on-failure",
    labels: { "drover.managed": "true" },
  });
  assertEquals(body, {
    name: "d_s",
    // Fully qualified: podman never gets to resolve a short name.
    image: "docker.io/library/x:1",
    entrypoint: ["/bin/sh"],
    env: { A: "1" },
    labels: { "drover.managed": "true" },
    portmappings: [
      { container_port: 80, host_port: 8080, host_ip: "127.0.0.1", protocol: "tcp" },
      { container_port: 53, protocol: "udp" },
    ],
    mounts: [{ destination: "/a", type: "bind", source: "/srv/a", options: ["rbind", "ro"] }],
    volumes: [{ Name: "data", Dest: "/data", Options: [] }],
    restart_policy: "on-failure",
  });
});

Deno.test("toLibpodSpec: network, resources, process options, devices and log cap", () => {
  const base = {
    name: "d_s",
    image: "x:1",
    env: {},
    ports: [],
    volumes: [],
    restart: "always" as const,
    labels: {},
  };
  const body = toLibpodSpec({
    ...base,
    network: { mode: "bridge", name: "drover-pi-1_d", aliases: ["s"], labels: {} },
    memoryBytes: 67108864,
    cpus: 0.5,
    pidsLimit: 50,
    user: "1000:1000",
    workingDir: "/app",
    readOnly: true,
    tmpfs: [{ target: "/tmp", options: [] }, { target: "/run", options: ["size=1m"] }],
    capAdd: ["CAP_NET_ADMIN"],
    capDrop: ["ALL"],
    devices: [{ host: "/dev/null", container: "/dev/sensor", permissions: "rw" }],
    log: { driver: "k8s-file", maxSizeBytes: 10485760 },
  });
  assertEquals(body.netns, { nsmode: "bridge" });
  assertEquals(body.Networks, { "drover-pi-1_d": { aliases: ["s"] } });
  assertEquals(body.resource_limits, {
    memory: { limit: 67108864 },
    cpu: { quota: 50000, period: 100000 },
    pids: { limit: 50 },
  });
  assertEquals([body.user, body.work_dir, body.read_only_filesystem], ["1000:1000", "/app", true]);
  assertEquals(body.mounts, [
    { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["rw", "nosuid", "nodev"] },
    { destination: "/run", type: "tmpfs", source: "tmpfs", options: ["size=1m"] },
  ]);
  assertEquals([body.cap_add, body.cap_drop], [["CAP_NET_ADMIN"], ["ALL"]]);
  assertEquals(body.devices, [{ path: "/dev/null:/dev/sensor:rw" }]);
  assertEquals(body.log_configuration, { driver: "k8s-file", size: 10485760 });
  const host = toLibpodSpec({ ...base, network: { mode: "host" }, log: { driver: "none" } });
  assertEquals(host.netns, { nsmode: "host" });
  assertEquals(host.Networks, undefined);
  assertEquals(host.resource_limits, undefined, "no limits asked, none sent");
  assertEquals(host.log_configuration, { driver: "none" });
});

Deno.test("PodmanRuntime creates, lists, starts and removes containers on a real podman", async () => {
  await using podman = await startPodman();
  const image = await buildBusyboxImage(podman, TAG);
  using runtime = new PodmanRuntime({ socketPath: podman.socket, stopTimeoutSeconds: 0 });
  assertEquals(await runtime.hasImage(image), true);
  assertEquals(await runtime.hasImage("localhost/drover/nothing:1"), false);

  const port = await freePort();
  const id = await runtime.createContainer(spec("rt_web", image, port));
  // A foreign container without Drover's labels is never listed.
  const foreign = await podman.cli(["create", "--name", "foreign", image, "sleep", "60"]);
  assertEquals(foreign.code, 0, foreign.stderr);
  let [c] = await runtime.listManaged();
  assertEquals([c?.id, c?.name, c?.deployment, c?.service, c?.revision, c?.specHash, c?.state], [
    id,
    "rt_web",
    "rt",
    "web",
    12,
    "hash-1",
    "created",
  ]);
  assertEquals(c?.restarts, 0);
  assertEquals(c?.labels.team, "qa");
  await runtime.startContainer(id);
  await runtime.startContainer(id); // already running: fine
  const page = await waitFor(async () => {
    const res = await fetchPublishedPort(port, "/index.html");
    return res.ok ? await res.text() : (await res.body?.cancel(), undefined);
  }, { timeoutMs: 20_000, message: "container serves the page with env applied" });
  assertEquals(page, "hello from the runtime test\n");
  [c] = await runtime.listManaged();
  assertEquals(c?.state, "running");

  await assertRejects(
    () => runtime.createContainer(spec("rt_web", image)),
    ContainerNameConflictError,
  );
  await assertRejects(
    () => runtime.createContainer(spec("rt_other", "localhost/drover/nothing:1")),
    ImageMissingError,
  );
  assertEquals((await podman.cli(["stop", "-t", "0", id])).code, 0); // from outside
  assertEquals((await runtime.listManaged())[0]?.state, "exited");
  await runtime.removeContainer(id);
  await runtime.removeContainer(id); // already gone: fine
  assertEquals(await runtime.listManaged(), []);
  const ps = await podman.cli(["ps", "-a", "--format", "{{.Names}}"]);
  assertEquals(ps.stdout.trim(), "foreign");
});

Deno.test("PodmanRuntime pulls with registry credentials and reports refusals", async () => {
  await using podman = await startPodman();
  const creds = { username: "drover", password: "s3cret" };
  await using registry = await startRegistry({ htpasswd: creds });
  const local = await buildBusyboxImage(podman, TAG);
  const remote = `${registry.host}/drover/busybox:1`;
  await pushImage(podman, local, remote, creds);
  using runtime = new PodmanRuntime({ socketPath: podman.socket });
  assertEquals(await runtime.hasImage(remote), false);
  const err = await assertRejects(
    () => runtime.pullImage(remote, { ...creds, password: "wrong", tlsVerify: false }),
    ImagePullError,
  );
  // podman 4.3 passes on the registry's "unauthorized"; 5.4 says "authentication required".
  assert(/unauthorized|authentication required/i.test(err.registryMessage), err.message);
  await runtime.pullImage(remote, { ...creds, tlsVerify: false });
  assertEquals(await runtime.hasImage(remote), true);
});

Deno.test("PodmanRuntime events: drift by hand, and a resync after podman restarts", async () => {
  await using podman = await startPodman();
  const image = await buildBusyboxImage(podman, TAG);
  using runtime = new PodmanRuntime({ socketPath: podman.socket, stopTimeoutSeconds: 0 });
  const ac = new AbortController();
  const seen: RuntimeEvent[] = [];
  const watching = (async () => {
    for await (const e of runtime.watchEvents(ac.signal)) seen.push(e);
  })();
  try {
    const id = await runtime.createContainer(spec("rt_web", image));
    await runtime.startContainer(id);
    // Not managed: never reported.
    await podman.cli(["run", "-d", "--name", "foreign", image, "sleep", "60"]);
    const rm = await podman.cli(["rm", "-f", "-t", "0", "rt_web"]);
    assertEquals(rm.code, 0, rm.stderr);
    await waitFor(
      () => seen.some((e) => e.kind === "container" && e.action === "remove"),
      { timeoutMs: 15_000, message: "remove event of the managed container" },
    );
    const actions = seen.map((e) => e.kind === "container" ? `${e.action} ${e.deployment}` : "");
    for (const a of ["create rt", "start rt", "remove rt"]) {
      assert(actions.includes(a), `${a} in ${actions}`);
    }
    assert(
      seen.every((e) => e.kind === "container" && e.deployment === "rt"),
      "only managed containers",
    );

    await podman.stop();
    await assertRejects(() => runtime.listManaged(), RuntimeUnavailableError);
    await podman.start();
    await waitFor(() => seen.some((e) => e.kind === "resync"), {
      timeoutMs: 20_000,
      message: "a resync once podman is back",
    });
    // And the stream is live again.
    const again = await runtime.createContainer(spec("rt_again", image));
    await waitFor(
      () => seen.some((e) => e.kind === "container" && e.service === "again"),
      { timeoutMs: 15_000, message: "events after the reconnect" },
    );
    await runtime.removeContainer(again);
  } finally {
    ac.abort();
    await watching;
  }
});

Deno.test("PodmanRuntime reports restarts made by podman's restart policy", async () => {
  await using podman = await startPodman();
  const image = await buildBusyboxImage(podman, TAG);
  using runtime = new PodmanRuntime({ socketPath: podman.socket, stopTimeoutSeconds: 0 });
  const ac = new AbortController();
  const watching = (async () => {
    for await (const _ of runtime.watchEvents(ac.signal)) { /* keeps the restart cache fresh */ }
  })();
  try {
    const crashing = { ...spec("rt_crash", image), command: ["sh", "-c", "sleep 0.3; exit 3"] };
    const id = await runtime.createContainer(crashing);
    await runtime.startContainer(id);
    const restarts = await waitFor(async () => {
      const [c] = await runtime.listManaged();
      return (c?.restarts ?? 0) >= 2 ? c?.restarts : undefined;
    }, { timeoutMs: 30_000, message: "restart count from podman" });
    assert(restarts !== undefined && restarts >= 2);
    // A fresh runtime (agent restart) learns the count by inspecting once.
    using fresh = new PodmanRuntime({ socketPath: podman.socket });
    const [c] = await fresh.listManaged();
    assert((c?.restarts ?? 0) >= 2, `fresh runtime sees ${c?.restarts} restarts`);
    await runtime.removeContainer(id);
  } finally {
    ac.abort();
    await watching;
  }
});

Deno.test("startStopped: waits, then starts a stopped container, but not one removed meanwhile", async () => {
  await using podman = await startPodman();
  const image = await buildBusyboxImage(podman, TAG);
  using runtime = new PodmanRuntime({
    socketPath: podman.socket,
    stopTimeoutSeconds: 0,
    stoppedSettleMs: 1_500,
  });
  const id = await runtime.createContainer({ ...spec("rt_web", image), restart: "no" });
  // Never started ("created") counts as stopped; a running one is left alone.
  assertEquals(await runtime.startStopped(id), true);
  assertEquals((await runtime.listManaged())[0]?.state, "running");
  assertEquals(await runtime.startStopped(id), false);

  // `podman rm -f` by hand while the runtime waits: the start must not slip in between.
  assertEquals((await podman.cli(["stop", "-t", "0", id])).code, 0);
  const starting = runtime.startStopped(id);
  const rm = await podman.cli(["rm", "-f", "-t", "0", "rt_web"]);
  assertEquals(rm.code, 0, rm.stderr);
  assertEquals(await starting, false);
  assertEquals(await runtime.listManaged(), []);
});

Deno.test("listManaged reports the device label, the last exit code and restarts of a crash loop", async () => {
  await using podman = await startPodman();
  const image = await buildBusyboxImage(podman, TAG);
  using runtime = new PodmanRuntime({ socketPath: podman.socket, stopTimeoutSeconds: 0 });
  const crashing: ContainerSpec = {
    ...spec("rt_crash", image),
    command: ["sh", "-c", "exit 3"],
    restart: "always",
    labels: { ...spec("rt_crash", image).labels, "drover.device": "pi-1" },
  };
  const ac = new AbortController();
  // Consume events as the reconciler does: restarts and exit codes are learnt from them.
  const events = (async () => {
    for await (const _ of runtime.watchEvents(ac.signal)) { /* drained */ }
  })();
  try {
    const id = await runtime.createContainer(crashing);
    await runtime.startContainer(id);
    const seen = await waitFor(async () => {
      const [c] = await runtime.listManaged();
      return c && (c.restarts ?? 0) >= 3 ? c : undefined;
    }, { timeoutMs: 30_000, message: "podman restarts the crashing container" });
    assertEquals([seen.device, seen.exitCode], ["pi-1", 3]);
    assert(seen.startedAtMs !== undefined && Math.abs(seen.startedAtMs - Date.now()) < 60_000);
  } finally {
    ac.abort();
    await events;
  }
});
