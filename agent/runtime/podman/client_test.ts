/**
 * The podman client against a real podman service (isolated storage, its own
 * socket), a real busybox image and a real registry with htpasswd auth.
 */

import { assert, assertEquals, assertRejects } from "../../../tests/support/assert.ts";
import {
  buildBusyboxImage,
  pushImage,
  startPodman,
  startRegistry,
  tempDir,
  waitFor,
} from "../../../tests/support/mod.ts";
import {
  ImageNotFoundError,
  NameConflictError,
  NotFoundError,
  PodmanClient,
  type PodmanEvent,
  PodmanUnavailableError,
  PullError,
} from "./mod.ts";

const WAIT_MS = 30_000;

/** A label value unique to one test step, so steps never see each other's containers. */
function uniqueLabel(step: string): Record<string, string> {
  return { "drover.test": `${step}-${crypto.randomUUID().slice(0, 8)}` };
}

Deno.test("podman client against a real podman service", async (t) => {
  await using podman = await startPodman();
  using client = new PodmanClient({ socketPath: podman.socket });
  const image = await buildBusyboxImage(podman);

  await t.step("image exists, and the missing case", async () => {
    assertEquals(await client.imageExists(image), true);
    assertEquals(await client.imageExists("localhost/drover/absent:1"), false);
  });

  await t.step("create, start, inspect, list by label, stop twice, remove", async () => {
    const labels = uniqueLabel("lifecycle");
    const name = `lifecycle-${crypto.randomUUID().slice(0, 8)}`;
    const created = await client.createContainer({
      name,
      image,
      command: ["sleep", "1000"],
      env: { GREETING: "hello world" },
      labels,
      restart_policy: "no",
    });
    assert(/^[0-9a-f]{64}$/.test(created.id), `container id ${created.id}`);
    assertEquals(created.warnings, []);

    await client.startContainer(created.id);
    await client.startContainer(name); // already running: 304 counts as success

    const running = await client.inspectContainer(name);
    assertEquals(running.Id, created.id);
    assertEquals(running.Name, name);
    assertEquals(running.State.Status, "running");
    assertEquals(running.State.Running, true);
    assertEquals(running.RestartCount, 0);
    assertEquals(running.Config.Labels["drover.test"], labels["drover.test"]);
    assertEquals(running.ImageName, image);
    assert(running.Config.Env?.includes("GREETING=hello world"), `env ${running.Config.Env}`);

    const listed = await client.listContainers({ labels });
    assertEquals(listed.map((c) => c.Id), [created.id]);
    assertEquals(listed[0]?.Names, [name]);
    assertEquals(listed[0]?.State, "running");
    assertEquals(listed[0]?.Labels, labels);
    assertEquals(listed[0]?.Image, image);
    // A label filter another container does not carry matches nothing: filters are applied.
    assertEquals(await client.listContainers({ all: true, labels: uniqueLabel("other") }), []);
    // Array form, ANDed with a second label the container lacks.
    assertEquals(
      await client.listContainers({
        all: true,
        labels: [`drover.test=${labels["drover.test"]}`, "absent"],
      }),
      [],
    );

    // The agent never stops a container (it removes one); stop it from outside.
    assertEquals((await podman.cli(["stop", "-t", "1", name])).code, 0);
    const stopped = await client.inspectContainer(name);
    assertEquals(stopped.State.Running, false);
    assertEquals(stopped.State.Status, "exited");
    assertEquals(
      await client.listContainers({ labels }),
      [],
      "a stopped container is not listed without all",
    );
    assertEquals((await client.listContainers({ all: true, labels })).map((c) => c.State), [
      "exited",
    ]);

    await client.removeContainer(name, { force: true, timeoutSeconds: 0 });
    await assertRejects(() => client.inspectContainer(name), NotFoundError, `"${name}"`);
    const again = await assertRejects(() => client.removeContainer(name), NotFoundError);
    assertEquals(again.resource, "container");
    assertEquals(again.ref, name);
    await assertRejects(() => client.startContainer(name), NotFoundError);
  });

  await t.step(
    "a taken name is a NameConflictError; the first container is untouched",
    async () => {
      const name = `conflict-${crypto.randomUUID().slice(0, 8)}`;
      const first = await client.createContainer({ name, image, command: ["true"] });
      const err = await assertRejects(
        () => client.createContainer({ name, image, command: ["sleep", "1"] }),
        NameConflictError,
        `"${name}"`,
      );
      assertEquals(err.containerName, name);
      assert(err.podmanMessage?.includes("already in use"), err.podmanMessage);
      assertEquals((await client.inspectContainer(name)).Id, first.id);
      await client.removeContainer(first.id, { force: true });
    },
  );

  await t.step("create with an image not in storage is an ImageNotFoundError", async () => {
    const name = `noimage-${crypto.randomUUID().slice(0, 8)}`;
    const err = await assertRejects(
      () => client.createContainer({ name, image: "localhost/drover/absent:1" }),
      ImageNotFoundError,
      `container "${name}"`,
    );
    assertEquals(err.image, "localhost/drover/absent:1");
    assert(err.message.includes("image not known"), err.message);
    await assertRejects(() => client.inspectContainer(name), NotFoundError);
  });

  await t.step("events stream replays create/start/died of a labelled container", async () => {
    const labels = uniqueLabel("events");
    const since = Math.floor(Date.now() / 1000) - 1;
    const name = `events-${crypto.randomUUID().slice(0, 8)}`;
    // Noise with another label must be filtered out by podman.
    const noise = await client.createContainer({
      name: `${name}-noise`,
      image,
      command: ["true"],
      labels: uniqueLabel("noise"),
    });
    const { id } = await client.createContainer({
      name,
      image,
      command: ["sh", "-c", "exit 3"],
      labels,
    });
    await client.startContainer(id);

    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), WAIT_MS);
    const seen: PodmanEvent[] = [];
    try {
      const events = client.events({
        since,
        filters: { type: ["container"], label: [`drover.test=${labels["drover.test"]}`] },
        signal: timeout.signal,
      });
      await events.opened;
      for await (const event of events) {
        seen.push(event);
        if (event.Action === "died") break;
      }
    } finally {
      clearTimeout(timer);
    }
    const actions = seen.map((e) => e.Action);
    for (const expected of ["create", "start", "died"]) {
      assert(actions.includes(expected), `expected ${expected} in ${actions}`);
    }
    assert(actions.indexOf("create") < actions.indexOf("start"), `order: ${actions}`);
    for (const event of seen) {
      assertEquals(event.Type, "container");
      assertEquals(event.Actor.ID, id);
      assertEquals(event.Actor.Attributes.name, name);
      assertEquals(event.Actor.Attributes["drover.test"], labels["drover.test"]);
      assert(event.time >= since, `event time ${event.time} before since ${since}`);
    }
    assertEquals(seen.at(-1)?.Actor.Attributes.containerExitCode, "3");
    await client.removeContainer(id, { force: true });
    await client.removeContainer(noise.id, { force: true });
  });

  await t.step("events with stream=false end by themselves", async () => {
    const labels = uniqueLabel("recorded");
    const since = Math.floor(Date.now() / 1000) - 1;
    const { id } = await client.createContainer({
      name: `recorded-${crypto.randomUUID().slice(0, 8)}`,
      image,
      command: ["true"],
      labels,
    });
    const filters = { label: [`drover.test=${labels["drover.test"]}`] };
    const events = await waitFor(async () => {
      const recorded = await Array.fromAsync(client.events({ since, filters, stream: false }));
      return recorded.length > 0 ? recorded : undefined;
    }, { timeoutMs: WAIT_MS, message: "recorded create event" });
    assertEquals(events.map((e) => [e.Action, e.Actor.ID]), [["create", id]]);
    await client.removeContainer(id, { force: true });
  });

  await t.step("aborting the caller's signal ends an event stream quietly", async () => {
    const controller = new AbortController();
    const events = client.events({
      filters: { label: [`drover.test=${uniqueLabel("quiet")["drover.test"]}`] },
      signal: controller.signal,
    });
    await events.opened;
    const consumed = Array.fromAsync(events);
    controller.abort();
    assertEquals(await consumed, []);
    assertEquals(events.closed, true);
  });

  await t.step("logs are decoded into stdout and stderr frames; tail limits them", async () => {
    const name = `logs-${crypto.randomUUID().slice(0, 8)}`;
    await client.createContainer({
      name,
      image,
      command: ["sh", "-c", "echo one; echo two >&2; echo three"],
    });
    await client.startContainer(name);
    await waitFor(
      async () => (await client.inspectContainer(name)).State.Status === "exited",
      { timeoutMs: WAIT_MS, message: `container ${name} exits` },
    );
    const frames = await client.containerLogs(name);
    // stdout and stderr are separate pipes: order is kept within a stream only.
    const texts = (stream: string) => frames.filter((f) => f.stream === stream).map((f) => f.text);
    assertEquals(texts("stdout"), ["one\n", "three\n"]);
    assertEquals(texts("stderr"), ["two\n"]);
    assertEquals(frames.length, 3);
    assertEquals(await client.containerLogs(name, { tail: 1 }), [frames[2]]);
    assertEquals(await client.containerLogs(name, { stdout: false }), [
      { stream: "stderr", text: "two\n" },
    ]);
    await client.removeContainer(name, { force: true });
    await assertRejects(() => client.containerLogs(name), NotFoundError);
  });

  await t.step("a health check runs on demand", async () => {
    const name = `health-${crypto.randomUUID().slice(0, 8)}`;
    await client.createContainer({
      name,
      image,
      command: ["sleep", "1000"],
      healthconfig: {
        Test: ["CMD-SHELL", "test -e /bin/sh"],
        Interval: 60e9,
        Timeout: 10e9,
        Retries: 1,
      },
    });
    await client.startContainer(name);
    const health = await client.runHealthcheck(name);
    assertEquals(health.Status, "healthy");
    assertEquals((await client.inspectContainer(name)).State.Health?.Status, "healthy");
    await client.removeContainer(name, { force: true, timeoutSeconds: 0 });
  });

  await t.step("pull from a local registry with htpasswd auth", async () => {
    await using registry = await startRegistry({
      htpasswd: { username: "drover", password: "s3cret" },
    });
    const remote = `${registry.host}/drover/busybox:pull-test`;
    await pushImage(podman, image, remote, { username: "drover", password: "s3cret" });
    // Make the pull real: the remote tag must not be in local storage yet.
    const untag = await podman.cli(["rmi", "--ignore", remote]);
    assertEquals(untag.code, 0, untag.stderr);
    assertEquals(await client.imageExists(remote), false);

    const auth = { username: "drover", password: "s3cret", serveraddress: registry.host };
    const progress: string[] = [];
    const pulled = await client.pullImage(remote, {
      policy: "missing",
      auth,
      tlsVerify: false,
      onProgress: (line) => progress.push(line),
    });
    assert(/^[0-9a-f]{64}$/.test(pulled.id), `image id ${pulled.id}`);
    assertEquals(pulled.images, [pulled.id]);
    assertEquals(await client.imageExists(remote), true);
    assert(progress.some((l) => l.includes(remote)), `progress: ${progress}`);

    // An error thrown by the caller's callback reaches the caller unchanged.
    const callbackError = await assertRejects(
      () =>
        client.pullImage(remote, {
          policy: "always",
          auth,
          tlsVerify: false,
          onProgress: () => {
            throw new RangeError("progress consumer gave up");
          },
        }),
      RangeError,
      "progress consumer gave up",
    );
    assert(!(callbackError instanceof PodmanUnavailableError));

    const wrong = await assertRejects(
      () =>
        client.pullImage(remote, {
          policy: "always",
          auth: { ...auth, password: "wrong" },
          tlsVerify: false,
        }),
      PullError,
    );
    assertEquals(wrong.image, remote);
    assert(/unauthorized|authentication required/i.test(wrong.registryMessage), wrong.message);
    assert(wrong.message.includes(remote), wrong.message);

    const unknown = await assertRejects(
      () =>
        client.pullImage(`${registry.host}/drover/absent:1`, {
          policy: "always",
          auth,
          tlsVerify: false,
        }),
      PullError,
    );
    assert(/manifest unknown|not found/i.test(unknown.registryMessage), unknown.message);
  });

  await t.step("networks and named volumes: create once, list by label, remove", async () => {
    const labels = uniqueLabel("net");
    assertEquals(await client.createNetwork("drover-test_net", labels), true);
    assertEquals(await client.createNetwork("drover-test_net", labels), false, "exists: 409");
    const networks = await client.listNetworks(labels);
    assertEquals(networks.map((n) => [n.name, n.dns_enabled]), [["drover-test_net", true]]);
    assertEquals(await client.listNetworks(uniqueLabel("none")), []);

    assertEquals(await client.volumeExists("drover-test-vol"), false);
    assertEquals(await client.createVolume("drover-test-vol", labels), true);
    assertEquals(await client.createVolume("drover-test-vol", labels), false, "exists: 500");
    assertEquals(await client.volumeExists("drover-test-vol"), true);
    assertEquals((await client.listVolumes(labels)).map((v) => [v.Name, v.Labels]), [
      ["drover-test-vol", labels],
    ]);
    // In use by a container: neither goes.
    const { id } = await client.createContainer({
      name: "net-user",
      image,
      command: ["sleep", "60"],
      netns: { nsmode: "bridge" },
      Networks: { "drover-test_net": { aliases: ["user"] } },
      volumes: [{ Name: "drover-test-vol", Dest: "/data" }],
    });
    const inUse = await assertRejects(() => client.removeVolume("drover-test-vol"));
    assertEquals((inUse as { status?: number }).status, 409);
    await assertRejects(() => client.removeNetwork("drover-test_net"));
    await client.removeContainer(id, { force: true, timeoutSeconds: 0 });
    await client.removeVolume("drover-test-vol");
    await client.removeNetwork("drover-test_net");
    await assertRejects(() => client.removeVolume("drover-test-vol"), NotFoundError);
    await assertRejects(() => client.removeNetwork("drover-test_net"), NotFoundError);
  });

  await t.step("a stopped service is PodmanUnavailableError; the client recovers", async () => {
    const events = client.events({ filters: { type: ["container"] } });
    await events.opened;
    await podman.stop();
    await assertRejects(() => client.listContainers(), PodmanUnavailableError, podman.socket);
    await assertRejects(
      async () => {
        for await (const _ of events) { /* no events expected while stopping */ }
      },
      PodmanUnavailableError,
      "read podman events",
    );
    await podman.start();
    await waitFor(() => client.listContainers().then(() => true), {
      timeoutMs: WAIT_MS,
      message: "podman answers again after restart",
    });
  });
});

Deno.test("a missing socket is a PodmanUnavailableError naming the socket", async () => {
  await using dir = await tempDir();
  const socketPath = `${dir.path}/absent.sock`;
  using client = new PodmanClient({ socketPath });
  const err = await assertRejects(
    () => client.listContainers(),
    PodmanUnavailableError,
    socketPath,
  );
  assertEquals(err.socketPath, socketPath);
  assertEquals(err.status, undefined);
  assert(err.cause instanceof Error, "keeps the connection error as cause");
  await assertRejects(
    () => client.createContainer({ name: "x", image: "y" }),
    PodmanUnavailableError,
  );
  const events = client.events();
  await assertRejects(() => events.opened, PodmanUnavailableError);
  await assertRejects(() => Array.fromAsync(events), PodmanUnavailableError);
});

Deno.test("an aborted call rejects with the signal's reason", async () => {
  await using dir = await tempDir();
  using client = new PodmanClient({ socketPath: `${dir.path}/absent.sock` });
  const controller = new AbortController();
  controller.abort(new Error("caller gave up"));
  await assertRejects(
    () => client.listContainers({ signal: controller.signal }),
    Error,
    "caller gave up",
  );
});
