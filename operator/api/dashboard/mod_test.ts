import { assert, assertEquals, assertStringIncludes } from "../../../tests/support/assert.ts";
import type { FleetView } from "../../fleet/aggregate.ts";
import { cookieValue, Dashboard, safeNext, SESSION_COOKIE, Sessions } from "./mod.ts";
import { createApi } from "../http.ts";

const TOKEN = "0123456789abcdef0123";

const view: FleetView = {
  devices: [{
    device_id: "pi-a",
    labels: { site: "lab" },
    registered: true,
    reported_labels: null,
    status: "degraded",
    online: true,
    heartbeat_age_seconds: 1,
    last_seen: new Date().toISOString(),
    agent_version: "t",
    deployments: [],
    reason: "<script>alert(1)</script>",
  }],
  deployments: [],
};

function dashboard(token?: string, sessions?: Sessions) {
  return new Dashboard(
    { view: () => view, device: () => undefined },
    token ? { token, ...(sessions ? { sessions } : {}) } : {},
  );
}

/** Logs in with `token`; returns the session cookie (`name=value`). */
async function loginCookie(d: Dashboard, token: string): Promise<string> {
  const res = await answer(
    d,
    new Request("http://op/ui/login", { method: "POST", body: new URLSearchParams({ token }) }),
  );
  assertEquals(res.status, 303);
  const session = cookieValue(
    (res.headers.get("set-cookie") ?? "").split(";")[0] ?? null,
    SESSION_COOKIE,
  );
  assert(session !== null && session !== "");
  return `${SESSION_COOKIE}=${session}`;
}

async function answer(d: Dashboard, request: Request): Promise<Response> {
  const res = d.handle(request);
  assert(res !== undefined, `the dashboard answers ${request.url}`);
  return await res;
}

Deno.test("dashboard: pages render the fleet, escaping what devices report", async () => {
  const res = await answer(dashboard(), new Request("http://op/"));
  assertEquals(res.status, 200);
  assertStringIncludes(res.headers.get("content-security-policy") ?? "", "script-src 'self'");
  const html = await res.text();
  assertStringIncludes(html, 'data-device="pi-a"');
  assertStringIncludes(html, "&lt;script&gt;alert(1)&lt;/script&gt;");
  assert(!html.includes("<script>alert"), "device text is never markup");
});

Deno.test("dashboard: other paths are the API's; the dashboard is read-only", async () => {
  const d = dashboard();
  assertEquals(d.handle(new Request("http://op/api/devices")), undefined);
  assertEquals(d.handle(new Request("http://op/healthz")), undefined);
  assertEquals((await answer(d, new Request("http://op/", { method: "POST" }))).status, 405);
  const js = await answer(d, new Request("http://op/ui/app.js"));
  assertEquals(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  assertStringIncludes(await js.text(), "EventSource");
});

Deno.test("dashboard with a token: login form, HttpOnly session cookie, header also works", async () => {
  const d = dashboard(TOKEN);
  const page = await answer(d, new Request("http://op/devices/pi-a?x=1"));
  assertEquals(page.status, 303);
  assertEquals(page.headers.get("location"), "/ui/login?next=%2Fdevices%2Fpi-a%3Fx%3D1");
  assertEquals((await answer(d, new Request("http://op/ui/events"))).status, 401);
  // Assets name nothing: open, so the login page has its style.
  assertEquals((await answer(d, new Request("http://op/ui/style.css"))).status, 200);

  const login = (token: string) =>
    answer(
      d,
      new Request("http://op/ui/login", {
        method: "POST",
        body: new URLSearchParams({ token, next: "/devices/pi-a" }),
      }),
    );
  assertEquals((await login("wrong-token-wrong-token")).status, 401);
  const ok = await login(TOKEN);
  assertEquals(ok.status, 303);
  assertEquals(ok.headers.get("location"), "/devices/pi-a");
  const setCookie = ok.headers.get("set-cookie") ?? "";
  assertStringIncludes(setCookie, "HttpOnly");
  assertStringIncludes(setCookie, "SameSite=Strict");
  assert(!setCookie.includes(TOKEN), "the cookie never carries the token");
  const session = cookieValue(setCookie.split(";")[0] ?? null, SESSION_COOKIE);
  assert(session !== null);

  const withCookie = new Request("http://op/", {
    headers: { cookie: `other=1; ${SESSION_COOKIE}=${session}` },
  });
  assertEquals((await answer(d, withCookie)).status, 200);
  const bad = new Request("http://op/", { headers: { cookie: `${SESSION_COOKIE}=${TOKEN}` } });
  assertEquals((await answer(d, bad)).status, 303);
  const bearer = new Request("http://op/", { headers: { authorization: `Bearer ${TOKEN}` } });
  assertEquals((await answer(d, bearer)).status, 200);
  const events = await answer(d, new Request("http://op/ui/events", withCookie));
  assertEquals(events.headers.get("content-type"), "text/event-stream; charset=utf-8");
  await events.body?.cancel();
  d.close();
});

Deno.test("dashboard sessions: each login its own, ended by logout (every copy) and by expiry", async () => {
  let now = 0;
  const d = dashboard(TOKEN, new Sessions(() => now, 60));
  const page = (cookie: string) => answer(d, new Request("http://op/", { headers: { cookie } }));
  const first = await loginCookie(d, TOKEN);
  const second = await loginCookie(d, TOKEN);
  assert(first !== second, "two logins, two sessions");
  assertEquals((await page(first)).status, 200);
  // Logout ends the session itself: the same cookie, kept elsewhere, opens nothing.
  const out = await answer(
    d,
    new Request("http://op/ui/logout", { method: "POST", headers: { cookie: first } }),
  );
  assertEquals(out.status, 303);
  assertStringIncludes(out.headers.get("set-cookie") ?? "", "Max-Age=0");
  assertEquals((await page(first)).status, 303, "ended by logout");
  assertEquals((await page(second)).status, 200, "positive control: the other login lives on");
  now += 59_000;
  assertEquals((await page(second)).status, 200);
  now += 1_000;
  assertEquals((await page(second)).status, 303, "ended by expiry");
  d.close();
});

Deno.test("safeNext: a login only ever redirects to a path on this server", () => {
  assertEquals(safeNext("/deployments/web"), "/deployments/web");
  assertEquals(safeNext("//evil.example/"), "/");
  assertEquals(safeNext("/\\evil.example/"), "/");
  assertEquals(safeNext("https://evil.example/"), "/");
  assertEquals(safeNext(null), "/");
});

Deno.test("dashboard: a deployment's rollout and history show once the view carries them", async () => {
  const rollout = {
    batch: 2,
    batches: 4,
    state: "paused",
    paused_by: "failure",
    message: "batch 2 failed",
    targeted: 40,
    ready: 10,
    updated: 20,
    devices: Array.from({ length: 40 }, (_, i) => ({ device_id: `d${i}` })),
  };
  const history = [{ revision: 3, change: "image web:2" }, { revision: 2, change: "created" }];
  const withRollout = {
    devices: [],
    deployments: [{
      name: "web",
      revision: 3,
      targeted: 0,
      ready: 0,
      failed: 0,
      pending: 0,
      offline: 0,
      devices: [],
      rollout,
      history,
    }],
  } as unknown as FleetView;
  const d = new Dashboard({ view: () => withRollout, device: () => undefined });
  const html = await (await answer(d, new Request("http://op/deployments/web"))).text();
  assertStringIncludes(html, "Batch 2 of 4");
  assertStringIncludes(html, "paused by failure");
  assertStringIncludes(html, '<progress id="rollout-progress" max="40" value="10">');
  assertStringIncludes(html, "40 items");
  assertStringIncludes(html, "image web:2");
});

Deno.test("dashboard: the device page's panes read the API's device routes on the session only", async () => {
  // The real API in front of a fake device-request function: what the proxy forwards is routed,
  // authorized and mapped exactly as /api/* is.
  const asked: string[] = [];
  const api = createApi({
    view: () => view,
    unhealthy: () => null,
    deviceRequests: {
      // deno-lint-ignore require-await
      events: async (device) => {
        asked.push(`events ${device}`);
        return { device, events: [], dropped: 0 };
      },
      // deno-lint-ignore require-await
      logs: async (device, request) => {
        asked.push(`logs ${device} ${request.deployment}/${request.service} ${request.tail}`);
        return { lines: [], cursor: null, end: true, more: false };
      },
    },
  }, { token: TOKEN });
  const d = new Dashboard({
    view: () => view,
    device: () =>
      ({
        status: {
          device_id: "pi-a",
          status: "ready",
          timestamp: new Date().toISOString(),
          labels: {},
          deployments: {
            web: {
              revision: 1,
              phase: "running",
              services: { main: { state: "running", image: "x" } },
            },
          },
        },
      }) as never,
  }, { token: TOKEN, api });
  const cookie = await loginCookie(d, TOKEN);
  const read = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    answer(d, new Request(`http://op${path}`, { headers, method }));

  const denied = await read("/ui/devices/pi-a/events");
  assertEquals(denied.status, 401);
  assertStringIncludes((await denied.json()).error, "log in");
  const events = await read("/ui/devices/pi-a/events", { cookie });
  assertEquals(events.status, 200);
  assertEquals((await events.json()).device, "pi-a");
  const logs = await read("/ui/devices/pi-a/logs?deployment=web&service=main&tail=5", { cookie });
  assertEquals(logs.status, 200);
  await logs.body?.cancel();
  assertEquals(asked, ["events pi-a", "logs pi-a web/main 5"]);
  // The API's own errors come through as they are (here: the query names what is missing).
  const missing = await read("/ui/devices/pi-a/logs?deployment=web", { cookie });
  assertEquals(missing.status, 400);
  assertStringIncludes((await missing.json()).error, '"service"');
  assertEquals((await read("/ui/devices/pi-a/events", { cookie }, "POST")).status, 405);
  // Only those two reads: the cookie opens no other API path, and /api keeps wanting the header.
  assertEquals(d.handle(new Request("http://op/ui/devices/pi-a/ping")), undefined);
  const apiWithCookie = await api(
    new Request("http://op/api/devices/pi-a/events", { headers: { cookie } }),
  );
  assertEquals(apiWithCookie.status, 401);
  await apiWithCookie.body?.cancel();

  // The page holds both panes outside #live, with the device's services to choose from.
  const html = await (await read("/devices/pi-a", { cookie })).text();
  assertStringIncludes(html, 'data-hook="device-events"');
  assertStringIncludes(html, '<option value="web/main">web/main</option>');
  assert(
    html.indexOf('data-hook="device-logs"') > html.indexOf('<div id="live">'),
    "the panes follow #live",
  );
  const js = await read("/ui/device.js");
  assertEquals(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  assertStringIncludes(await js.text(), "textContent");
  d.close();
});
