/**
 * One contract, two runtimes: the behaviour the reconciler relies on, checked against the
 * FAKE `InMemoryRuntime` (which the reconciler tests and the fleet benchmarks use) and against
 * `PodmanRuntime` on a real podman service, with the same steps and the same expectations. A
 * change to either that the other does not share fails here, so the fake cannot drift from
 * podman unnoticed.
 */

import { assert, assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { buildBusyboxImage, startPodman, waitFor } from "../../tests/support/mod.ts";
import { InMemoryRuntime } from "./memory_runtime.ts";
import { PodmanRuntime } from "./podman_runtime.ts";
import {
  ContainerNameConflictError,
  type ContainerRuntime,
  type ContainerSpec,
  ImageMissingError,
  ImagePullError,
  type RuntimeEvent,
} from "./runtime.ts";

/** What the contract needs besides the runtime: an image present, and outside hands. */
interface RuntimeUnderTest extends AsyncDisposable {
  runtime: ContainerRuntime;
  /** An image present locally. */
  image: string;
  /** An image that is absent and whose pull fails. */
  unpullable: string;
  /** Stops a container the way a person would, outside the runtime. */
  stopByHand(id: string): Promise<void>;
}

const TAG = "localhost/drover/busybox:contract";
const UNPULLABLE = "127.0.0.1:1/drover/nothing:1";

function spec(name: string, image: string, extra: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name,
    image,
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
    env: { GREETING: "hello" },
    ports: [],
    volumes: [],
    restart: "no",
    stopTimeoutSeconds: 1,
    labels: {
      "drover.managed": "true",
      "drover.device": "pi-1",
      "drover.deployment": "ct",
      "drover.service": name.split("_")[1] ?? name,
      "drover.revision": "7",
      "drover.spec-hash": "hash-7",
      team: "qa",
    },
    ...extra,
  };
}

function inMemory(): Promise<RuntimeUnderTest> {
  const runtime = new InMemoryRuntime({ images: [TAG] });
  runtime.setPull(UNPULLABLE, { error: "connection refused" });
  return Promise.resolve({
    runtime,
    image: TAG,
    unpullable: UNPULLABLE,
    stopByHand: (id) => Promise.resolve(runtime.stopByHand(id)),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  });
}

async function onPodman(): Promise<RuntimeUnderTest> {
  const podman = await startPodman();
  try {
    const image = await buildBusyboxImage(podman, TAG);
    const runtime = new PodmanRuntime({ socketPath: podman.socket });
    return {
      runtime,
      image,
      unpullable: UNPULLABLE,
      async stopByHand(id) {
        const r = await podman.cli(["stop", "-t", "0", id]);
        assertEquals(r.code, 0, r.stderr);
      },
      async [Symbol.asyncDispose]() {
        runtime[Symbol.dispose]();
        await podman[Symbol.asyncDispose]();
      },
    };
  } catch (e) {
    await podman[Symbol.asyncDispose]();
    throw e;
  }
}

/** The contract's steps, in order, against one runtime. */
async function contract(t: Deno.TestContext, make: () => Promise<RuntimeUnderTest>) {
  await using under = await make();
  const { runtime, image } = under;
  const events: RuntimeEvent[] = [];
  const stopWatching = new AbortController();
  const watching = (async () => {
    for await (const e of runtime.watchEvents(stopWatching.signal)) events.push(e);
  })();
  let id = "";

  await t.step("hasImage tells present from absent", async () => {
    assertEquals(await runtime.hasImage(image), true);
    assertEquals(await runtime.hasImage(under.unpullable), false);
  });

  await t.step(
    "a failed pull is an ImagePullError; create without the image ImageMissing",
    async () => {
      await assertRejects(() => runtime.pullImage(under.unpullable, undefined), ImagePullError);
      await assertRejects(
        () => runtime.createContainer(spec("ct_missing", under.unpullable)),
        ImageMissingError,
      );
    },
  );

  await t.step("create lists a managed container as created, with its labels decoded", async () => {
    id = await runtime.createContainer(spec("ct_web", image));
    // Without drover.managed a container is never listed.
    const foreign = spec("foreign", image);
    delete foreign.labels["drover.managed"];
    await runtime.createContainer(foreign);
    const listed = await runtime.listManaged();
    assertEquals(listed.length, 1);
    const [c] = listed;
    assertEquals(
      [c?.id, c?.name, c?.deployment, c?.service, c?.revision, c?.specHash, c?.device, c?.state],
      [id, "ct_web", "ct", "web", 7, "hash-7", "pi-1", "created"],
    );
    assertEquals([c?.image, c?.labels.team, c?.restarts ?? 0], [image, "qa", 0]);
  });

  await t.step("a second container of that name is a ContainerNameConflictError", async () => {
    await assertRejects(
      () => runtime.createContainer(spec("ct_web", image)),
      ContainerNameConflictError,
    );
  });

  await t.step("start is idempotent: running after one start or two", async () => {
    await runtime.startContainer(id);
    await runtime.startContainer(id);
    assertEquals((await runtime.listManaged())[0]?.state, "running");
  });

  await t.step("stopped by hand it is exited; startStopped starts it again", async () => {
    await under.stopByHand(id);
    assertEquals((await runtime.listManaged())[0]?.state, "exited");
    assertEquals(await runtime.startStopped(id), true);
    assertEquals((await runtime.listManaged())[0]?.state, "running");
  });

  await t.step("remove is idempotent; startStopped of a removed container is false", async () => {
    await runtime.removeContainer(id);
    await runtime.removeContainer(id);
    assertEquals(await runtime.listManaged(), []);
    assertEquals(await runtime.startStopped(id), false);
  });

  await t.step(
    "a started container with a check is starting until a check passes, then healthy",
    async () => {
      const checked = await runtime.createContainer(spec("ct_checked", image, {
        healthcheck: {
          test: ["CMD", "true"],
          intervalMs: 60_000,
          timeoutMs: 5_000,
          retries: 3,
          startPeriodMs: 0,
        },
      }));
      // Not started yet: no health record.
      assertEquals(await runtime.inspectHealth(checked), undefined);
      await runtime.startContainer(checked);
      assertEquals((await runtime.inspectHealth(checked))?.status, "starting");
      const report = await runtime.runHealthcheck(checked);
      assertEquals([report?.status, report?.failingStreak], ["healthy", 0]);
      assertEquals((await runtime.inspectHealth(checked))?.status, "healthy");
      await runtime.removeContainer(checked);
    },
  );

  await t.step(
    "the events name the deployment of what was created, started and removed",
    async () => {
      await waitFor(() => {
        const actions = new Set(
          events.flatMap((e) => e.kind === "container" && e.deployment === "ct" ? [e.action] : []),
        );
        return ["create", "start", "remove"].every((a) => actions.has(a));
      }, {
        timeoutMs: 20_000,
        message: `create, start and remove events in ${JSON.stringify(events)}`,
      });
      assert(events.every((e) => e.kind !== "container" || e.deployment === "ct"), "only ours");
    },
  );

  stopWatching.abort();
  await watching;
}

Deno.test("runtime contract: InMemoryRuntime (the fake)", async (t) => {
  await contract(t, inMemory);
});

Deno.test("runtime contract: PodmanRuntime on a real podman", async (t) => {
  await contract(t, onPodman);
});
