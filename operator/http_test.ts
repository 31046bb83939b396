import { DeploymentManifest } from "@drover/contracts";
import {
  assert,
  assertEquals,
  assertStringIncludes,
  assertThrows,
} from "../tests/support/assert.ts";
import { freePort, startNats, waitFor } from "../tests/support/mod.ts";
import { summarise } from "./aggregate.ts";
import { CliError, EXIT } from "./cli.ts";
import { apiTokenProblem, checkApiExposure, createApi, isLoopbackHost } from "./http.ts";
import { operatorTaskArgs, runOperatorCli } from "../tests/support/operator_process.ts";

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

Deno.test("http: /api/* answers 503 while the service is starting", async () => {
  const starting = createApi({ view: () => undefined, unhealthy: () => "starting" });
  const res = starting(get("/api/devices"));
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
    const missing = guarded(withToken(path));
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
      const res = guarded(withToken(path, wrong));
      assertEquals(res.status, 401, `${path} with ${wrong}`);
      assertStringIncludes(res.headers.get("www-authenticate") ?? "", 'error="invalid_token"');
      await res.body?.cancel();
    }
  }
  const ok = guarded(withToken("/api/deployments/web", `Bearer ${TOKEN}`));
  const okBody = await ok.json();
  assertEquals(ok.status, 200, JSON.stringify(okBody));
  assertEquals(okBody.name, "web");
  // The scheme is case-insensitive (RFC 9110); HEAD is guarded like GET.
  const lower = guarded(withToken("/api/devices", `bearer ${TOKEN}`));
  assertEquals(lower.status, 200);
  await lower.body?.cancel();
  const head = guarded(withToken("/api/devices", undefined, "HEAD"));
  assertEquals(head.status, 401);
  await head.body?.cancel();
  // Behind the token, routing answers as before.
  const nowhere = guarded(withToken("/nowhere", `Bearer ${TOKEN}`));
  assertEquals(nowhere.status, 404);
  await nowhere.body?.cancel();
  // Liveness probes carry no credentials.
  const health = guarded(withToken("/healthz"));
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

  const open = assertThrows(() => checkApiExposure(everywhere, undefined, ""), CliError);
  assertEquals(open.exitCode, EXIT.usage);
  assertStringIncludes(open.message, "on 0.0.0.0:8080 without a token");
  assertStringIncludes(open.details.join("\n"), "DROVER_API_TOKEN");
  assertStringIncludes(open.details.join("\n"), "--listen 127.0.0.1:8080");
  const v6 = assertThrows(
    () => checkApiExposure({ hostname: "::", port: 1 }, undefined, undefined),
    CliError,
  );
  assertStringIncludes(v6.message, "on [::]:1 without");

  // A weak token is refused wherever it listens, naming where it came from.
  const short = assertThrows(() => checkApiExposure(loopback, "short", undefined), CliError);
  assertEquals(short.exitCode, EXIT.usage);
  assertStringIncludes(short.message, "Invalid --api-token: it has 5 character(s)");
  const spaced = assertThrows(
    () => checkApiExposure(loopback, undefined, "a token with spaces in it"),
    CliError,
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
  const body = await withDetails(get("/api/deployments/web")).json();
  assertEquals(body.history, [{ revision: 1, summary: "created web" }]);
  assertEquals(body.name, "web");
  // The list stays small: details only on the deployment's own path.
  const list = await withDetails(get("/api/deployments")).json();
  assertEquals(list[0].history, undefined);
});
