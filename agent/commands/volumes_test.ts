import { LABELS } from "@drover/contracts";
import { assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { InMemoryRuntime } from "../runtime/memory_runtime.ts";
import { CommandFailure } from "./errors.ts";
import { purgeVolumes } from "./volumes.ts";

const owner = (device: string, deployment: string) => ({
  [LABELS.managed]: "true",
  [LABELS.device]: device,
  [LABELS.deployment]: deployment,
});

Deno.test("purgeVolumes removes only this device's volumes of that deployment", async () => {
  const runtime = new InMemoryRuntime();
  await runtime.ensureVolume("data", owner("pi-1", "shop"));
  await runtime.ensureVolume("cache", owner("pi-1", "shop"));
  await runtime.ensureVolume("other", owner("pi-1", "blog"));
  await runtime.ensureVolume("neighbour", owner("pi-2", "shop"));
  await runtime.ensureVolume("foreign", {});
  const reply = await purgeVolumes(
    { deviceId: "pi-1", runtime, desired: () => false },
    "shop",
  );
  assertEquals(reply, { device: "pi-1", removed: ["cache", "data"], kept: [] });
  assertEquals([...runtime.volumes.keys()].sort(), ["foreign", "neighbour", "other"]);
});

Deno.test("purgeVolumes refuses while the deployment is (or may be) desired; keeps volumes in use", async () => {
  const runtime = new InMemoryRuntime({ images: ["busybox:1"] });
  await runtime.ensureVolume("data", owner("pi-1", "shop"));
  const deps = { deviceId: "pi-1", runtime, desired: () => true };
  const refused = await assertRejects(() => purgeVolumes(deps, "shop"), CommandFailure);
  assertEquals(refused.code, "bad_request");
  assertEquals(runtime.volumes.has("data"), true);
  // A container still mounts it (its removal in progress): kept, and said why.
  runtime.inject({
    name: "shop_db",
    image: "busybox:1",
    env: {},
    ports: [],
    volumes: [{ type: "volume", source: "data", target: "/data", readOnly: false }],
    restart: "always",
    labels: {},
  });
  const reply = await purgeVolumes({ ...deps, desired: () => false }, "shop");
  assertEquals(reply.kept, [{ name: "data", reason: "still mounted by a container" }]);
  assertEquals(runtime.volumes.has("data"), true);
});
