import { DeploymentManifest } from "@drover/contracts";
import { assertEquals } from "../tests/support/assert.ts";
import { summarise } from "./aggregate.ts";
import { createApi } from "./http.ts";

const manifest = DeploymentManifest.parse({
  name: "web",
  selector: { devices: ["pi-1"] },
  score: { type: "PodmanV0", services: [{ name: "httpd", image: "busybox" }] },
});

function api(unhealthy: string | null = null) {
  return createApi({
    view: () => summarise([manifest], new Map(), new Map(), new Map(), Date.now()),
    unhealthy: () => unhealthy,
  });
}

const get = (path: string, method = "GET") => new Request(`http://operator${path}`, { method });

Deno.test("http: /api/deployments and /api/deployments/:name", async () => {
  const list = await api()(get("/api/deployments")).json();
  assertEquals(list.map((d: { name: string }) => d.name), ["web"]);
  const one = api()(get("/api/deployments/web"));
  assertEquals(one.status, 200);
  assertEquals(one.headers.get("content-type"), "application/json; charset=utf-8");
  const body = await one.json();
  assertEquals([body.targeted, body.ready, body.pending], [1, 0, 1]);
  assertEquals(body.devices[0].device_id, "pi-1");
});

Deno.test("http: /api/devices lists explicit targets that never reported", async () => {
  // No desired-state key yet, no status: the device is unknown to the fleet view.
  const devices = await api()(get("/api/devices")).json();
  assertEquals(devices, []);
});

Deno.test("http: errors are JSON with the right status", async () => {
  const missing = api()(get("/api/deployments/nope"));
  assertEquals(missing.status, 404);
  assertEquals((await missing.json()).error, 'deployment "nope" not found');
  assertEquals(api()(get("/nowhere")).status, 404);
  await api()(get("/nowhere")).body?.cancel();
  const post = api()(get("/api/devices", "POST"));
  assertEquals(post.status, 405);
  await post.body?.cancel();
});

Deno.test("http: /healthz reports readiness", async () => {
  assertEquals((await api()(get("/healthz")).json()).status, "ok");
  const starting = api("starting")(get("/healthz"));
  assertEquals(starting.status, 503);
  assertEquals((await starting.json()).message, "starting");
});

Deno.test("http: a failing view becomes a 500, not a crash", async () => {
  const broken = createApi({
    view: () => {
      throw new Error("boom");
    },
    unhealthy: () => null,
  });
  const res = broken(get("/api/devices"));
  assertEquals(res.status, 500);
  assertEquals((await res.json()).error, "internal error: boom");
});
