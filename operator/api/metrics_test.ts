import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import type { FleetView } from "../fleet/aggregate.ts";
import { createApi, METRICS_CONTENT_TYPE } from "./http.ts";
import { OperatorMetrics } from "./metrics.ts";

const VIEW = {
  devices: [
    { device_id: "a", status: "ready", online: true, agent_version: "0.2.0" },
    { device_id: "b", status: "ready", online: true, agent_version: "0.2.0" },
    { device_id: "c", status: "degraded", online: false, agent_version: "0.1.0" },
  ],
  deployments: [
    {
      name: "hello",
      revision: 4,
      state: "rolled_back",
      stable_revision: 3,
      batch: null,
      ready: 2,
      failed: 1,
      pending: 0,
      held: 0,
      offline: 1,
    },
    {
      name: "web",
      revision: 9,
      state: "paused",
      stable_revision: 8,
      batch: 2,
      ready: 1,
      failed: 0,
      pending: 0,
      held: 2,
      offline: 0,
    },
  ],
} as unknown as FleetView;

Deno.test("operator metrics: fleet gauges from the view, write latency, reconnects", async () => {
  const metrics = new OperatorMetrics({ view: () => VIEW });
  const kv = metrics.instrumentDesired({
    put: (_k: string, _v: string) => Promise.resolve(7),
    delete: () => Promise.reject(new Error("gone")),
    other: () => "untouched",
  });
  assertEquals(await kv.put("a.hello", "{}"), 7);
  await kv.delete().catch(() => {});
  assertEquals(kv.other(), "untouched");
  metrics.reconnected();
  const text = await metrics.render();
  assertStringIncludes(text, 'drover_devices{status="ready",online="true"} 2');
  assertStringIncludes(text, 'drover_devices{status="degraded",online="false"} 1');
  assertStringIncludes(text, 'drover_deployment_devices{deployment="hello",phase="failed"} 1');
  assertStringIncludes(text, 'drover_deployment_devices{deployment="web",phase="held"} 2');
  assertStringIncludes(text, 'drover_rollout_state{deployment="hello",state="rolled_back"} 1');
  assertStringIncludes(text, 'drover_rollout_state{deployment="hello",state="complete"} 0');
  assertStringIncludes(text, 'drover_rollout_state{deployment="web",state="paused"} 1');
  assertStringIncludes(text, 'drover_rollout_batch{deployment="web"} 2');
  assertStringIncludes(text, 'drover_deployment_revision{deployment="hello",kind="stable"} 3');
  assertStringIncludes(text, 'drover_agent_info{version="0.2.0"} 2');
  assertStringIncludes(text, 'drover_agent_info{version="0.1.0"} 1');
  assertStringIncludes(text, 'drover_desired_state_writes_total{operation="put",outcome="ok"} 1');
  assertStringIncludes(
    text,
    'drover_desired_state_writes_total{operation="delete",outcome="error"} 1',
  );
  assertStringIncludes(
    text,
    'drover_desired_state_write_duration_seconds_count{operation="put"} 1',
  );
  assertStringIncludes(text, "drover_nats_reconnects_total 1");
});

Deno.test("GET /metrics takes the API token like every other path but /healthz", async () => {
  const metrics = new OperatorMetrics({ view: () => undefined });
  const api = createApi({
    view: () => undefined,
    unhealthy: () => null,
    metrics: () => metrics.render(),
  }, { token: "0123456789abcdef0123" });
  const denied = await api(new Request("http://x/metrics"));
  assertEquals(denied.status, 401);
  await denied.body?.cancel();
  const ok = await api(
    new Request("http://x/metrics", { headers: { authorization: "Bearer 0123456789abcdef0123" } }),
  );
  assertEquals([ok.status, ok.headers.get("content-type")], [200, METRICS_CONTENT_TYPE]);
  assertStringIncludes(await ok.text(), "# TYPE drover_devices gauge");
  const none = await createApi({ view: () => undefined, unhealthy: () => null })(
    new Request("http://x/metrics"),
  );
  assertEquals(none.status, 404);
  await none.body?.cancel();
});
