import { DeploymentManifest } from "@drover/contracts";
import {
  assert,
  assertEquals,
  assertStringIncludes,
  assertThrows,
} from "../../tests/support/assert.ts";
import { freePort, startNats, waitFor } from "../../tests/support/mod.ts";
import { summarise } from "../fleet/aggregate.ts";
import { EXIT } from "../commands/cli.ts";
import { asCliError } from "../commands/errors.ts";
import {
  ApiExposureError,
  apiTokenProblem,
  checkApiExposure,
  createApi,
  isLoopbackHost,
  logsRequestFromQuery,
} from "./http.ts";
import type { FleetView } from "../fleet/aggregate.ts";
import {
  DeviceBusyError,
  DeviceRefusedError,
  DeviceReplyError,
  type DeviceRequests,
  DeviceUnreachableError,
} from "../devices/requests.ts";
import type { EventsRequest, LogsRequest } from "@drover/contracts";
import { operatorTaskArgs, runOperatorCli } from "../../tests/support/operator_process.ts";

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
  const list = await (await api()(get("/api/deployments"))).json();
  assertEquals(list.map((d: { name: string }) => d.name), ["web"]);
  const one = await api()(get("/api/deployments/web"));
  assertEquals(one.status, 200);
  assertEquals(one.headers.get("content-type"), "application/json; charset=utf-8");
  const body = await one.json();
  assertEquals([body.targeted, body.ready, body.pending], [1, 0, 1]);
  assertEquals(body.devices[0].device_id, "pi-1");
});

Deno.test("http: /api/devices lists explicit targets that never reported", async () => {
  // No desired-state key yet, no status: the device is unknown to the fleet view.
  const devices = await (await api()(get("/api/devices"))).json();
  assertEquals(devices, []);
});

Deno.test("http: errors are JSON with the right status", async () => {
  const missing = await api()(get("/api/deployments/nope"));
  assertEquals(missing.status, 404);
  assertEquals((await missing.json()).error, 'deployment "nope" not found');
  const nowhere = await api()(get("/nowhere"));
  assertEquals(nowhere.status, 404);
  await nowhere.body?.cancel();
  const post = await api()(get("/api/devices", "POST"));
  assertEquals(post.status, 405);
  await post.body?.cancel();
});

Deno.test("http: a malformed %-escape in the path is the client's mistake (400), a valid one decodes", async () => {
  for (
    const path of ["/api/deployments/%E0%A4%A", "/api/deployments/%zz", "/api/devices/a%2/events"]
  ) {
    const res = await api()(get(path));
    assertEquals(res.status, 400, path);
    assertStringIncludes((await res.json()).error, "malformed %-escape", path);
  }
  const escaped = await api()(get("/api/deployments/we%62"));
  assertEquals(escaped.status, 200);
  assertEquals((await escaped.json()).name, "web");
});

Deno.test("http: /healthz reports readiness", async () => {
  assertEquals((await (await api()(get("/healthz"))).json()).status, "ok");
  const starting = await api("starting")(get("/healthz"));
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
  const res = await broken(get("/api/devices"));
  assertEquals(res.status, 500);
  assertEquals((await res.json()).error, "internal error: boom");
});

Deno.test("http: /api/* answers 503 while the service is starting", async () => {
  const starting = createApi({ view: () => undefined, unhealthy: () => "starting" });
  const res = await starting(get("/api/devices"));
  assertEquals(res.status, 503);
  assertEquals((await res.json()).error, "starting");
});

const TOKEN = "0123456789abcdef-token";

function withToken(path: string, authorization?: string, method = "GET"): Request {
  const headers: Record<string, string> = {};
  if (authorization !== undefined) headers.authorization = authorization;
  return new Request(`http://operator${path}`, { method, headers });
}

Deno.test("http: with a token every request but /healthz needs it", async () => {
  const guarded = createApi({
    view: () => summarise([manifest], new Map(), new Map(), new Map(), Date.now()),
    unhealthy: () => null,
  }, { token: TOKEN });
  for (const path of ["/api/devices", "/api/deployments", "/api/deployments/web", "/nowhere"]) {
    const missing = await guarded(withToken(path));
    assertEquals(missing.status, 401, path);
    assertEquals(missing.headers.get("www-authenticate"), 'Bearer realm="drover-operator"');
    assertStringIncludes((await missing.json()).error, "Authorization: Bearer");
    for (
      const wrong of [
        `Bearer ${TOKEN}x`,
        `Bearer ${TOKEN.slice(0, -1)}`,
        "Bearer ",
        `Basic ${TOKEN}`,
        TOKEN,
        `Bearer ${TOKEN} extra`,
      ]
    ) {
      const res = await guarded(withToken(path, wrong));
      assertEquals(res.status, 401, `${path} with ${wrong}`);
      assertStringIncludes(res.headers.get("www-authenticate") ?? "", 'error="invalid_token"');
      await res.body?.cancel();
    }
  }
  const ok = await guarded(withToken("/api/deployments/web", `Bearer ${TOKEN}`));
  const okBody = await ok.json();
  assertEquals(ok.status, 200, JSON.stringify(okBody));
  assertEquals(okBody.name, "web");
  // The scheme is case-insensitive (RFC 9110); HEAD is guarded like GET.
  const lower = await guarded(withToken("/api/devices", `bearer ${TOKEN}`));
  assertEquals(lower.status, 200);
  await lower.body?.cancel();
  const head = await guarded(withToken("/api/devices", undefined, "HEAD"));
  assertEquals(head.status, 401);
  await head.body?.cancel();
  // Behind the token, routing answers as without one: an unknown path is 404.
  const nowhere = await guarded(withToken("/nowhere", `Bearer ${TOKEN}`));
  assertEquals(nowhere.status, 404);
  await nowhere.body?.cancel();
  // Liveness probes carry no credentials.
  const health = await guarded(withToken("/healthz"));
  assertEquals(health.status, 200);
  await health.body?.cancel();
});

Deno.test("http: loopback addresses", () => {
  for (
    const host of [
      "127.0.0.1",
      "127.1.2.3",
      "localhost",
      "LOCALHOST",
      "::1",
      "[::1]",
      "0:0:0:0:0:0:0:1",
      "::ffff:127.0.0.1",
    ]
  ) {
    assertEquals(isLoopbackHost(host), true, host);
  }
  for (
    const host of [
      "0.0.0.0",
      "::",
      "",
      "1",
      "192.168.1.10",
      "example.com",
      "localhost.example.com",
      "128.0.0.1",
      "127.0.0.256",
      "::2",
      "10.127.0.1",
    ]
  ) {
    assertEquals(isLoopbackHost(host), false, host);
  }
});

Deno.test("http: checkApiExposure picks the token and refuses an open API beyond loopback", () => {
  const loopback = { hostname: "127.0.0.1", port: 8080 };
  const everywhere = { hostname: "0.0.0.0", port: 8080 };
  assertEquals(checkApiExposure(loopback, undefined, undefined), undefined);
  assertEquals(checkApiExposure(loopback, undefined, ""), undefined);
  assertEquals(checkApiExposure(everywhere, undefined, TOKEN), TOKEN);
  assertEquals(checkApiExposure(everywhere, TOKEN, "other-token-1234567"), TOKEN);
  assertEquals(checkApiExposure(everywhere, "", TOKEN), TOKEN);

  const open = assertThrows(() => checkApiExposure(everywhere, undefined, ""), ApiExposureError);
  assertEquals(asCliError(open)?.exitCode, EXIT.usage, "the CLI's usage error");
  assertStringIncludes(open.message, "on 0.0.0.0:8080 without a token");
  assertStringIncludes(open.details.join("\n"), "DROVER_API_TOKEN");
  assertStringIncludes(open.details.join("\n"), "--listen 127.0.0.1:8080");
  const v6 = assertThrows(
    () => checkApiExposure({ hostname: "::", port: 1 }, undefined, undefined),
    ApiExposureError,
  );
  assertStringIncludes(v6.message, "on [::]:1 without");

  // A weak token is refused wherever it listens, naming where it came from.
  const short = assertThrows(
    () => checkApiExposure(loopback, "short", undefined),
    ApiExposureError,
  );
  assertEquals(asCliError(short)?.exitCode, EXIT.usage);
  assertStringIncludes(short.message, "Invalid --api-token: it has 5 character(s)");
  const spaced = assertThrows(
    () => checkApiExposure(loopback, undefined, "a token with spaces in it"),
    ApiExposureError,
  );
  assertStringIncludes(spaced.message, "Invalid DROVER_API_TOKEN: it may hold only");
  assertEquals(apiTokenProblem("A-z0.9_~+/AAAAAAAAAAAA=="), null);
});

Deno.test({
  name: "serve: a real API refuses requests without the token, and an open API beyond loopback",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using nats = await startNats();
    const port = await freePort();
    // Refused before anything connects or listens: exit code 2 and how to fix it.
    const refused = await runOperatorCli(nats.url, ["serve", "--listen", `0.0.0.0:${port}`]);
    assertEquals(refused.code, EXIT.usage, refused.stderr);
    assertStringIncludes(
      refused.stderr,
      `Refusing to serve the HTTP API on 0.0.0.0:${port} without a token`,
    );
    assertStringIncludes(refused.stderr, "DROVER_API_TOKEN");

    // The token from the environment (the operator task must allow reading it), on every
    // interface; the NATS URL carries a password that must never reach the log.
    const natsUrl = nats.url.replace("nats://", "nats://drover:s3cret@");
    assert(natsUrl.includes("s3cret@"), natsUrl);
    const child = new Deno.Command(Deno.execPath(), {
      args: [...await operatorTaskArgs(), "serve", "--listen", `0.0.0.0:${port}`],
      env: { NATS_URL: natsUrl, DROVER_API_TOKEN: TOKEN, DROVER_LOG_LEVEL: "info" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = child.output();
    try {
      const api = `http://127.0.0.1:${port}`;
      await waitFor(async () => {
        try {
          const res = await fetch(`${api}/healthz`);
          await res.body?.cancel();
          return res.ok;
        } catch {
          return false;
        }
      }, { timeoutMs: 30_000, message: "serve healthy (/healthz needs no token)" });
      const call = async (authorization?: string) => {
        const res = await fetch(`${api}/api/deployments`, {
          headers: authorization === undefined ? {} : { authorization },
        });
        return { status: res.status, body: await res.json() };
      };
      const without = await call();
      assertEquals(without.status, 401);
      assertStringIncludes(without.body.error, "missing token");
      assertEquals((await call(`Bearer ${TOKEN}-wrong`)).status, 401);
      const granted = await call(`Bearer ${TOKEN}`);
      assertEquals(granted.status, 200);
      assertEquals(granted.body, []);
    } finally {
      child.kill("SIGTERM");
    }
    const { code, stderr } = await output;
    const logs = new TextDecoder().decode(stderr);
    assertEquals(code, 0, logs);
    assertStringIncludes(logs, "bearer token required");
    assertStringIncludes(logs, "nats://***@127.0.0.1:");
    assertEquals(logs.includes("s3cret"), false, logs);
    assertEquals(logs.includes(TOKEN), false, logs);
  },
});

Deno.test("http: /api/deployments/:name carries the rollout and history details", async () => {
  const withDetails = createApi({
    view: () => summarise([manifest], new Map(), new Map(), new Map(), Date.now()),
    unhealthy: () => null,
    deploymentDetails: (name) => ({ history: [{ revision: 1, summary: `created ${name}` }] }),
  });
  const body = await (await withDetails(get("/api/deployments/web"))).json();
  assertEquals(body.history, [{ revision: 1, summary: "created web" }]);
  assertEquals(body.name, "web");
  // The list stays small: details only on the deployment's own path.
  const list = await (await withDetails(get("/api/deployments"))).json();
  assertEquals(list[0].history, undefined);
});

/** A fleet of one device, `pi-1`, for the device routes. */
const oneDevice: FleetView = {
  devices: [{
    device_id: "pi-1",
    labels: {},
    registered: true,
    reported_labels: null,
    status: "ready",
    online: true,
    heartbeat_age_seconds: 1,
    last_seen: "2026-12-01T10:00:00.000Z",
    agent_version: "t",
    deployments: ["web"],
  }],
  deployments: [],
};

/**
 * A fake of the NATS device requests: records what the API asked and answers
 * with `answer`'s result (or throws what it throws), as a device would.
 */
function fakeDeviceRequests(answer: () => unknown) {
  const asked: { command: string; device: string; request: unknown }[] = [];
  const requests: DeviceRequests = {
    // deno-lint-ignore require-await
    events: async (device: string, request?: EventsRequest) => {
      asked.push({ command: "events", device, request });
      return answer() as never;
    },
    // deno-lint-ignore require-await
    logs: async (device: string, request: LogsRequest) => {
      asked.push({ command: "logs", device, request });
      return answer() as never;
    },
  };
  return { requests, asked };
}

function deviceApi(answer: () => unknown, token?: string) {
  const fake = fakeDeviceRequests(answer);
  const api = createApi(
    { view: () => oneDevice, unhealthy: () => null, deviceRequests: fake.requests },
    token === undefined ? {} : { token },
  );
  return { api, asked: fake.asked };
}

const EVENT = {
  seq: 3,
  time: "2026-12-01T10:00:01.000Z",
  kind: "container_missing",
  deployment: "web",
  service: "httpd",
  message: "container web_httpd is gone",
};

Deno.test("http: /api/devices/:id/events answers with the device's ring (async route)", async () => {
  const { api, asked } = deviceApi(() => ({ device: "pi-1", events: [EVENT], dropped: 0 }));
  const res = await api(get("/api/devices/pi-1/events?after_seq=2"));
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("cache-control"), "no-store");
  assertEquals((await res.json()).events, [EVENT]);
  assertEquals(asked, [{ command: "events", device: "pi-1", request: { after_seq: 2 } }]);
});

Deno.test("http: /api/devices/:id/logs passes the query as the CLI's request, cursor included", async () => {
  const chunk = {
    lines: [{ time: "2026-12-01T10:00:02Z", stream: "stderr", text: "<oops>" }],
    cursor: { time: "2026-12-01T10:00:02Z", skip: 1 },
    end: false,
    more: false,
  };
  const { api, asked } = deviceApi(() => chunk);
  const cursor = encodeURIComponent(JSON.stringify({ time: "2026-12-01T10:00:01Z", skip: 2 }));
  const res = await api(
    get(
      `/api/devices/pi-1/logs?deployment=web&service=httpd&cursor=${cursor}&follow=true&wait_ms=5000`,
    ),
  );
  assertEquals(res.status, 200);
  assertEquals(await res.json(), chunk);
  assertEquals(asked[0]?.request, {
    deployment: "web",
    service: "httpd",
    cursor: { time: "2026-12-01T10:00:01Z", skip: 2 },
    follow: true,
    wait_ms: 5000,
  });
  const tail = await api(get("/api/devices/pi-1/logs?deployment=web&service=httpd&tail=20"));
  await tail.body?.cancel();
  assertEquals(asked[1]?.request, {
    deployment: "web",
    service: "httpd",
    tail: 20,
    follow: false,
    wait_ms: 0,
  });
});

Deno.test("http: the logs query is checked, naming the parameter", () => {
  const now = Date.parse("2026-12-01T10:00:00Z");
  const parse = (q: string) => logsRequestFromQuery(new URL(`http://x/?${q}`), now);
  assertEquals(parse("deployment=web&service=a&since=10m").since, "2026-12-01T09:50:00.000Z");
  for (
    const [q, words] of [
      ["service=a", 'missing query parameter "deployment"'],
      ["deployment=web", 'missing query parameter "service"'],
      ["deployment=web&service=a&tail=x", 'invalid tail "x"'],
      ["deployment=web&service=a&wait_ms=60000", 'invalid wait_ms "60000"'],
      ["deployment=web&service=a&cursor=nope", "invalid cursor"],
      ["deployment=web&service=a&cursor=%7B%7D", "invalid cursor.time"],
      ["deployment=web&service=a&follow=yes", 'invalid follow "yes"'],
      ["deployment=web&service=a&since=soon", 'invalid since "soon"'],
      ["deployment=Web!&service=a", "invalid deployment"],
    ] as const
  ) {
    let message = "";
    try {
      parse(q);
    } catch (e) {
      message = (e as Error).message;
    }
    assertStringIncludes(message, words, q);
  }
});

Deno.test("http: device errors map to statuses in one place", async () => {
  const seen = {
    text: "it is offline, last seen 5m ago",
    last_seen: oneDevice.devices[0]?.last_seen ?? null,
    online: false,
  };
  const cases: [() => never, number, string][] = [
    [
      () => {
        throw new DeviceUnreachableError('Device "pi-1" did not answer events', "pi-1", seen);
      },
      504,
      "did not answer",
    ],
    [
      () => {
        throw new DeviceRefusedError('Device "pi-1": no deployment "db"', "not_found");
      },
      404,
      'no deployment "db"',
    ],
    [
      () => {
        throw new DeviceRefusedError('Device "pi-1": logs are off', "forbidden");
      },
      403,
      "logs are off",
    ],
    [
      () => {
        throw new DeviceRefusedError('Device "pi-1": podman is down', "unavailable");
      },
      503,
      "podman is down",
    ],
    [
      () => {
        throw new DeviceReplyError('Device "pi-1" answered events with an invalid reply');
      },
      502,
      "invalid reply",
    ],
    [
      () => {
        throw new DeviceBusyError('Too many requests to device "pi-1" in progress; retry');
      },
      429,
      "Too many requests",
    ],
    [
      () => {
        throw new Error("connection closed");
      },
      500,
      "internal error: connection closed",
    ],
  ];
  for (const [answer, status, words] of cases) {
    const res = await deviceApi(answer).api(get("/api/devices/pi-1/events"));
    const body = await res.json();
    assertEquals(res.status, status, words);
    assertStringIncludes(body.error, words);
    if (status === 504) {
      assertEquals([body.device, body.online, body.last_seen], ["pi-1", false, seen.last_seen]);
    }
  }
});

Deno.test("http: device routes check the id and the fleet before asking, and take the token", async () => {
  const { api, asked } = deviceApi(() => ({ device: "pi-1", events: [], dropped: 0 }), TOKEN);
  const denied = await api(get("/api/devices/pi-1/events"));
  assertEquals(denied.status, 401);
  await denied.body?.cancel();
  const deniedLogs = await api(get("/api/devices/pi-1/logs?deployment=web&service=httpd"));
  assertEquals(deniedLogs.status, 401);
  await deniedLogs.body?.cancel();
  const unknown = await api(withToken("/api/devices/pi-9/events", `Bearer ${TOKEN}`));
  assertEquals(unknown.status, 404);
  assertStringIncludes((await unknown.json()).error, '"pi-9" is neither registered nor reporting');
  const invalid = await api(withToken("/api/devices/PI_1/events", `Bearer ${TOKEN}`));
  assertEquals(invalid.status, 400);
  await invalid.body?.cancel();
  assertEquals(asked, [], "no device was asked");
  const ok = await api(withToken("/api/devices/pi-1/events", `Bearer ${TOKEN}`));
  assertEquals(ok.status, 200);
  await ok.body?.cancel();
  const none = await createApi({ view: () => oneDevice, unhealthy: () => null })(
    get("/api/devices/pi-1/events"),
  );
  assertEquals(none.status, 404);
  await none.body?.cancel();
});
