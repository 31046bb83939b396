import { assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { InMemoryRuntime } from "./memory_runtime.ts";
import {
  ContainerNameConflictError,
  type ContainerSpec,
  ImageMissingError,
  ImagePullError,
  type RuntimeEvent,
  RuntimeUnavailableError,
} from "./runtime.ts";

const spec = (name: string, labels: Record<string, string> = {}): ContainerSpec => ({
  name,
  image: "x:1",
  env: {},
  ports: [],
  volumes: [],
  restart: "always",
  labels: {
    "drover.managed": "true",
    "drover.deployment": "d",
    "drover.service": name,
    "drover.revision": "4",
    "drover.spec-hash": "h",
    ...labels,
  },
});

Deno.test("InMemoryRuntime (fake) creates, starts, lists and removes idempotently", async () => {
  const rt = new InMemoryRuntime({ images: ["x:1"] });
  const id = await rt.createContainer(spec("web"));
  assertEquals((await rt.listManaged())[0]?.state, "created");
  await rt.startContainer(id);
  await rt.startContainer("web"); // by name, already running
  const [c] = await rt.listManaged();
  assertEquals([
    c?.name,
    c?.deployment,
    c?.service,
    c?.revision,
    c?.specHash,
    c?.state,
    c?.restarts,
  ], [
    "web",
    "d",
    "web",
    4,
    "h",
    "running",
    0,
  ]);
  await assertRejects(() => rt.createContainer(spec("web")), ContainerNameConflictError);
  rt.stopByHand(id);
  assertEquals((await rt.listManaged())[0]?.state, "exited");
  await rt.removeContainer(id);
  await rt.removeContainer(id); // already gone
  assertEquals(await rt.listManaged(), []);
  assertEquals(rt.calls.removeContainer, 2);
});

Deno.test("InMemoryRuntime (fake) lists only managed containers", async () => {
  const rt = new InMemoryRuntime({ images: ["x:1"] });
  rt.inject(spec("foreign", { "drover.managed": "false" }));
  await rt.createContainer(spec("mine"));
  assertEquals((await rt.listManaged()).map((c) => c.name), ["mine"]);
  assertEquals(rt.snapshot().length, 2);
});

Deno.test("InMemoryRuntime (fake) needs images pulled and can fail pulls", async () => {
  const rt = new InMemoryRuntime();
  await assertRejects(() => rt.createContainer(spec("web")), ImageMissingError);
  rt.setPull("x:1", { error: "unauthorized: authentication required" });
  const err = await assertRejects(() => rt.pullImage("x:1", undefined), ImagePullError);
  assertEquals(err.registryMessage, "unauthorized: authentication required");
  rt.setPull("x:1", undefined);
  await rt.pullImage("x:1", { tlsVerify: false });
  assertEquals(await rt.hasImage("x:1"), true);
  assertEquals(rt.pulls.map(([i, a]) => [i, a?.tlsVerify]), [["x:1", undefined], [
    "x:1",
    false,
  ]]);
});

Deno.test("InMemoryRuntime (fake) reports events and a resync after an outage", async () => {
  const rt = new InMemoryRuntime({ images: ["x:1"] });
  const ac = new AbortController();
  const seen: RuntimeEvent[] = [];
  const watching = (async () => {
    for await (const e of rt.watchEvents(ac.signal)) {
      seen.push(e);
      if (e.kind === "resync") ac.abort();
    }
  })();
  const id = await rt.createContainer(spec("web"));
  await rt.startContainer(id);
  rt.removeByHand("web");
  rt.setAvailable(false);
  await assertRejects(() => rt.listManaged(), RuntimeUnavailableError);
  rt.setAvailable(true);
  await watching;
  assertEquals(
    seen.map((e) => (e.kind === "container" ? `${e.action} ${e.deployment}/${e.service}` : e.kind)),
    ["create d/web", "start d/web", "died d/web", "remove d/web", "resync"],
  );
});

Deno.test("InMemoryRuntime (fake) latency can be aborted", async () => {
  const rt = new InMemoryRuntime({ latencyMs: { listManaged: 60_000 } });
  const ac = new AbortController();
  const p = rt.listManaged(ac.signal);
  ac.abort(new Error("stop"));
  await assertRejects(() => p, Error, "stop");
});
