import { assert, assertEquals, assertStringIncludes } from "../tests/support/assert.ts";
import {
  AgentConfig,
  AgentStatus,
  decodeJson,
  DeploymentManifest,
  DesiredState,
  DEVICE_MESSAGE_MAX_LENGTH,
  DeviceRegistration,
  formatZodIssues,
  MAX_VALUE_BYTES,
  PodmanService,
  Score,
} from "./mod.ts";
import type { z } from "zod";

/** Parses or returns the formatted error text. */
function problems(schema: z.ZodType, value: unknown): string {
  const result = schema.safeParse(value);
  return result.success ? "" : formatZodIssues(result.error);
}

// One sample of each wire value, written as a client in another language would.
const SERVICE = {
  name: "web",
  image: "127.0.0.1:5000/demo/web:1.0",
  command: ["httpd", "-f", "-p", "80"],
  entrypoint: ["/bin/busybox"],
  env: { GREETING: "hello" },
  ports: ["8080:80", "127.0.0.1:8443:443/udp"],
  volumes: ["/srv/www:/www:ro", "data:/data"],
  restart: "on-failure",
  labels: { "com.example/team": "edge" },
  healthcheck: {
    test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1/ || exit 1"],
    interval: "10s",
    timeout: "3s",
    retries: 3,
    start_period: "1m30s",
  },
  stop_timeout: "20s",
};
const DESIRED = { deployment: "hello", score: { type: "PodmanV0", services: [SERVICE] } };
const STATUS = {
  device_id: "pi-1",
  status: "ready",
  timestamp: "2026-11-26T12:00:00Z",
  agent_version: "0.1.0",
  labels: { site: "lab" },
  heartbeat_seconds: 10,
  deployments: {
    hello: {
      revision: 42,
      phase: "running",
      services: {
        web: {
          container_id: "abc123",
          state: "running",
          image: SERVICE.image,
          restarts: 0,
          health: "healthy",
        },
      },
    },
    broken: { revision: 7, phase: "failed", message: "score.services: too small", services: {} },
  },
};
const MANIFEST = {
  name: "hello",
  selector: { devices: ["pi-1"], labels: { site: "lab" } },
  score: DESIRED.score,
};

Deno.test("DesiredState keeps its JSON shape", () => {
  assertEquals(DesiredState.parse(DESIRED), DESIRED);
});

Deno.test("AgentStatus keeps its JSON shape (snake_case on the wire)", () => {
  assertEquals(AgentStatus.parse(STATUS), STATUS);
  assertEquals(Object.keys(AgentStatus.shape).sort(), [
    "agent_version",
    "deployments",
    "device_id",
    "heartbeat_seconds",
    "labels",
    "message",
    "status",
    "status_refresh_seconds",
    "timestamp",
    "update",
  ]);
});

Deno.test("AgentStatus: a device-level message is optional and bounded", () => {
  assertEquals(AgentStatus.parse({ ...STATUS, status: "degraded", message: "podman gone" }), {
    ...STATUS,
    status: "degraded",
    message: "podman gone",
  });
  assertStringIncludes(
    problems(AgentStatus, { ...STATUS, message: "x".repeat(DEVICE_MESSAGE_MAX_LENGTH + 1) }),
    "message",
  );
});

const REGISTRATION = {
  labels: { site: "lab", "example.com/tier": "edge" },
  updated_at: "2026-12-01T12:00:00Z",
};

Deno.test("DeviceRegistration keeps its JSON shape; unknown keys are dropped, not rejected", () => {
  assertEquals(DeviceRegistration.parse(REGISTRATION), REGISTRATION);
  assertEquals(Object.keys(DeviceRegistration.shape).sort(), [
    "labels",
    "sealing_key",
    "updated_at",
  ]);
  const parsed = DeviceRegistration.parse({ ...REGISTRATION, future_field: 1 });
  assert(!("future_field" in parsed));
});

Deno.test("DeviceRegistration rejects bad labels and times, naming the field", () => {
  assertStringIncludes(
    problems(DeviceRegistration, { ...REGISTRATION, labels: { "-bad": "x" } }),
    "labels",
  );
  assertStringIncludes(
    problems(DeviceRegistration, { ...REGISTRATION, labels: { site: "a b" } }),
    "labels.site",
  );
  assertStringIncludes(
    problems(DeviceRegistration, { ...REGISTRATION, updated_at: "today" }),
    "updated_at",
  );
  assertStringIncludes(
    problems(DeviceRegistration, { updated_at: REGISTRATION.updated_at }),
    "labels",
  );
});

Deno.test("DeploymentManifest keeps its JSON shape", () => {
  assertEquals(DeploymentManifest.parse(MANIFEST), MANIFEST);
});

Deno.test("PodmanService applies the restart default", () => {
  assertEquals(PodmanService.parse({ name: "a", image: "busybox" }).restart, "always");
});

Deno.test("PodmanService: health check defaults as in compose; stop_timeout stays absent", () => {
  const parsed = PodmanService.parse({
    name: "a",
    image: "busybox",
    healthcheck: { test: ["CMD", "true"] },
  });
  assertEquals(parsed.healthcheck, {
    test: ["CMD", "true"],
    interval: "30s",
    timeout: "30s",
    retries: 3,
    start_period: "0s",
  });
  // A default here would change the spec hash of every existing service (and replace it).
  assert(!("stop_timeout" in parsed));
  assertEquals(
    PodmanService.parse({ name: "a", image: "b", stop_timeout: "0s" }).stop_timeout,
    "0s",
  );
  assertEquals(
    PodmanService.parse({ name: "a", image: "b", healthcheck: { test: ["NONE"] } })
      .healthcheck?.test,
    ["NONE"],
  );
});

Deno.test("AgentStatus from a newer agent: unknown fields are dropped, not rejected", () => {
  const parsed = AgentStatus.parse({ ...STATUS, future_field: 1 });
  assert(!("future_field" in parsed));
});

Deno.test("AgentStatus rejects a non-UTC or malformed timestamp and unknown phases", () => {
  assertStringIncludes(problems(AgentStatus, { ...STATUS, timestamp: "yesterday" }), "timestamp");
  const bad = structuredClone(STATUS);
  (bad.deployments.hello as { phase: string }).phase = "exploded";
  assertStringIncludes(problems(AgentStatus, bad), "deployments.hello.phase");
});

Deno.test("Score: typical mistakes are rejected with the field named", () => {
  const cases: [unknown, string][] = [
    [{ type: "Compose", services: [] }, "type"],
    [{ type: "PodmanV0", services: [] }, "services"],
    [{ type: "PodmanV0", services: [{ name: "Web", image: "x" }] }, "services[0].name"],
    [{ type: "PodmanV0", services: [{ name: "web" }] }, "services[0].image"],
    [{ type: "PodmanV0", services: [{ name: "web", image: "Bad Image" }] }, "services[0].image"],
    [
      { type: "PodmanV0", services: [{ name: "web", image: "x", ports: ["70000:80"] }] },
      'services[0].ports[0]: invalid port "70000:80": host port 70000 is out of range',
    ],
    [
      { type: "PodmanV0", services: [{ name: "web", image: "x", ports: ["80/sctp"] }] },
      "protocol must be tcp or udp",
    ],
    [
      { type: "PodmanV0", services: [{ name: "web", image: "x", volumes: ["rel/path:/x"] }] },
      "services[0].volumes[0]",
    ],
    [
      { type: "PodmanV0", services: [{ name: "web", image: "x", volumes: ["/a:rel"] }] },
      "must be an absolute path",
    ],
    [
      { type: "PodmanV0", services: [{ name: "web", image: "x", env: { "A-B": "1" } }] },
      "services[0].env",
    ],
    [
      { type: "PodmanV0", services: [{ name: "web", image: "x", env: { A: 1 } }] },
      "services[0].env.A",
    ],
    [
      { type: "PodmanV0", services: [{ name: "web", image: "x", restart: "sometimes" }] },
      "services[0].restart",
    ],
    [
      { type: "PodmanV0", services: [{ name: "web", image: "x", labels: { "drover.x": "1" } }] },
      "reserved for Drover",
    ],
    [
      { type: "PodmanV0", services: [{ name: "web", image: "x", enviroment: {} }] },
      'services[0]: unknown key(s) "enviroment"',
    ],
    [
      { type: "PodmanV0", services: [{ name: "a", image: "x" }, { name: "a", image: "y" }] },
      'services[1].name: duplicate service name "a" (also services[0])',
    ],
    ...healthAndStopCases(),
  ];
  for (const [value, expected] of cases) {
    assertStringIncludes(problems(Score, value), expected, JSON.stringify(value));
  }
});

Deno.test("DeploymentManifest: a selector needs devices or labels", () => {
  assertStringIncludes(
    problems(DeploymentManifest, { ...MANIFEST, selector: {} }),
    'selector: selector needs at least one of "devices" or "labels"',
  );
  assertStringIncludes(
    problems(DeploymentManifest, { ...MANIFEST, selector: { devices: ["Bad!"] } }),
    "selector.devices[0]",
  );
  assertStringIncludes(problems(DeploymentManifest, { ...MANIFEST, name: "a_b" }), "name: invalid");
});

Deno.test("AgentConfig: defaults for everything but device_id", () => {
  assertEquals(AgentConfig.parse({ agent: { device_id: "pi-1" } }), {
    agent: {
      device_id: "pi-1",
      state_dir: "/var/lib/drover",
      labels: {},
      heartbeat_seconds: 10,
      log_level: "info",
    },
    nats: { servers: ["nats://127.0.0.1:4222"] },
    podman: { socket: "/run/podman/podman.sock" },
    registries: {},
    policy: { allowed_host_paths: [] },
  });
});

Deno.test("AgentConfig: a single server string becomes a list; registries default tls_verify", () => {
  const config = AgentConfig.parse({
    agent: { device_id: "pi-1" },
    nats: { servers: "nats://hub:4222" },
    registries: { "registry.example.com:5000": { username: "u", password: "p" } },
  });
  assertEquals(config.nats.servers, ["nats://hub:4222"]);
  assertEquals(config.registries["registry.example.com:5000"]?.tls_verify, true);
});

Deno.test("AgentConfig: misspelt and invalid keys are named", () => {
  const cases: [unknown, string][] = [
    [{}, "agent: "],
    [{ agent: { device_id: "pi-1", heartbeat: 5 } }, 'agent: unknown key(s) "heartbeat"'],
    [{ agent: { device_id: "pi-1", heartbeat_seconds: "5" } }, "agent.heartbeat_seconds"],
    [
      { agent: { device_id: "pi-1", state_dir: "var/lib" } },
      "agent.state_dir: must be an absolute path",
    ],
    [{ agent: { device_id: "pi-1" }, nats: { password: "x" } }, "nats.user: password needs user"],
    [{ agent: { device_id: "pi-1" }, nats: { tls_cert: "/c" } }, "nats.tls_cert"],
    [{ agent: { device_id: "pi-1" }, registries: { "not a host": {} } }, "registries"],
    [
      { agent: { device_id: "pi-1" }, policy: { allowed_host_ports: ["90-80"] } },
      "policy.allowed_host_ports[0]",
    ],
    [{ agent: { device_id: "pi-1" }, podmen: {} }, 'unknown key(s) "podmen"'],
  ];
  for (const [value, expected] of cases) {
    assertStringIncludes(problems(AgentConfig, value), expected, JSON.stringify(value));
  }
});

Deno.test("decodeJson reports bad JSON, bad UTF-8, oversize values and schema errors without throwing", () => {
  const bad = [
    ["{", "invalid JSON"],
    [new Uint8Array([0x7b, 0xff, 0x7d]), "value is not valid UTF-8 (3 bytes)"],
    ["x".repeat(MAX_VALUE_BYTES + 1), "more than the"],
    [JSON.stringify({ deployment: "x" }), "score"],
    [
      '{"deployment":"x","score":{"type":"PodmanV0","services":[{"name":"__proto__","image":"x"}]}}',
      "name",
    ],
  ] as const;
  for (const [input, expected] of bad) {
    const result = decodeJson(DesiredState, input);
    assert(!result.ok);
    assertStringIncludes(result.error, expected);
  }
  const good = decodeJson(DesiredState, new TextEncoder().encode(JSON.stringify(DESIRED)));
  assert(good.ok);
  assertEquals(good.value, DESIRED);
});

Deno.test("deployment_revision: optional in desired state and echoed in a deployment's status", () => {
  const desired = { ...DESIRED, deployment_revision: 27 };
  assertEquals(DesiredState.parse(desired), desired);
  assertEquals(DesiredState.parse(DESIRED).deployment_revision, undefined);
  assertStringIncludes(
    problems(DesiredState, { ...DESIRED, deployment_revision: 0 }),
    "deployment_revision",
  );
  const status = structuredClone(STATUS);
  Object.assign(status.deployments.hello, { deployment_revision: 27 });
  assertEquals(AgentStatus.parse(status).deployments.hello?.deployment_revision, 27);
  assertStringIncludes(
    problems(AgentStatus, {
      ...STATUS,
      deployments: { x: { ...STATUS.deployments.broken, deployment_revision: "27" } },
    }),
    "deployments.x.deployment_revision",
  );
});

function healthAndStopCases(): [unknown, string][] {
  const score = (service: Record<string, unknown>) => ({
    type: "PodmanV0",
    services: [{ name: "web", image: "x", ...service }],
  });
  const check = (healthcheck: Record<string, unknown>) =>
    score({ healthcheck: { test: ["CMD", "true"], ...healthcheck } });
  return [
    [score({ healthcheck: { test: [] } }), "services[0].healthcheck.test: expected e.g."],
    [score({ healthcheck: { test: ["CMD"] } }), 'needs the command after "CMD"'],
    [score({ healthcheck: { test: ["CMD-SHELL", "a", "b"] } }), "exactly one non-empty shell"],
    [score({ healthcheck: { test: ["NONE", "x"] } }), "services[0].healthcheck.test"],
    [score({ healthcheck: { test: ["curl", "x"] } }), 'got first element "curl"'],
    [score({ healthcheck: { test: "curl x" } }), "services[0].healthcheck.test"],
    [score({ healthcheck: {} }), "services[0].healthcheck.test: required"],
    [check({ interval: "10" }), "services[0].healthcheck.interval: expected a duration"],
    [check({ interval: "500ms" }), 'healthcheck.interval: "500ms" is too short: at least 1s'],
    [check({ timeout: "0s" }), "services[0].healthcheck.timeout"],
    [check({ retries: 0 }), "services[0].healthcheck.retries: retries must be at least 1"],
    [check({ retries: 1.5 }), "services[0].healthcheck.retries"],
    [check({ start_period: "soon" }), "services[0].healthcheck.start_period"],
    [check({ intervall: "1s" }), 'services[0].healthcheck: unknown key(s) "intervall"'],
    [score({ stop_timeout: 10 }), "services[0].stop_timeout"],
    [score({ stop_timeout: "1500ms" }), 'services[0].stop_timeout: "1500ms" is not a whole'],
    [score({ stop_timeout: "2h" }), 'services[0].stop_timeout: "2h" is too long: at most 1h'],
  ];
}
