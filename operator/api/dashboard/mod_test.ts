import { assert, assertEquals, assertStringIncludes } from "../../../tests/support/assert.ts";
import type { FleetView } from "../../fleet/aggregate.ts";
import { cookieValue, Dashboard, safeNext, SESSION_COOKIE, Sessions } from "./mod.ts";
import { createApi } from "../http.ts";
import { FAVICON_ICO } from "./favicon.ts";
import { groupEvents } from "./static/render.js";

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

Deno.test("dashboard: a deployment's rollout is a view: stepper, devices, failures, times", async () => {
  const now = Date.now();
  const rollout = {
    deployment: "web",
    revision: 3,
    stable_revision: 2,
    state: "paused",
    batch: 2,
    batches: 4,
    batch_devices: ["d1", "d2"],
    paused_by: "failure",
    message: "batch 2 missed its threshold: 1 of 2 ready",
    targeted: 40,
    updated: 3,
    ready: 2,
    failed: 1,
    pending: 0,
    failures: [{ device: "d2", phase: "failed", message: "pull web:3: 401 Unauthorized" }],
    devices: Array.from({ length: 40 }, (_, i) => ({
      device_id: `d${i}`,
      updated: i < 3,
      phase: i === 2 ? "failed" : i < 3 ? "ready" : "waiting",
      message: i === 2 ? "pull web:3: 401 Unauthorized" : i < 3 ? "" : "keeps revision 2",
    })),
    started_at: new Date(now - 600_000).toISOString(),
    updated_at: new Date(now - 30_000).toISOString(),
  };
  const history = [
    {
      revision: 2,
      created_at: new Date(now - 86_400_000).toISOString(),
      summary: "created",
      marker: "stable",
      rollout: null,
    },
    {
      revision: 3,
      created_at: new Date(now - 600_000).toISOString(),
      summary: "image web:3",
      marker: "current",
      rollout: "paused",
    },
  ];
  const withRollout = {
    devices: [],
    deployments: [{
      name: "web",
      revision: 3,
      targeted: 40,
      ready: 2,
      failed: 1,
      pending: 37,
      offline: 0,
      devices: [{
        device_id: "d0",
        phase: "ready",
        online: true,
        wanted_revision: 3,
        applied_revision: 3,
        message: "",
      }],
      rollout,
      history,
    }],
  } as unknown as FleetView;
  const d = new Dashboard({ view: () => withRollout, device: () => undefined });
  const html = await (await answer(d, new Request("http://op/deployments/web"))).text();
  // State and batch as a stepper: batch 1 done, 2 paused (the current step), 3 and 4 to do.
  assertStringIncludes(html, '<ol class="stepper" aria-label="Batches">');
  assertStringIncludes(html, '<li class="step done"><span class="step-n">Batch 1</span>');
  assertStringIncludes(
    html,
    '<li class="step paused" aria-current="step"><span class="step-n">Batch 2',
  );
  assertStringIncludes(html, '<li class="step todo"><span class="step-n">Batch 4</span>');
  assertStringIncludes(html, "paused</span> by a failed batch");
  assertStringIncludes(html, '<progress id="rollout-progress" max="40" value="2">');
  // Failures with their messages, not JSON.
  assertStringIncludes(html, '<a href="/devices/d2">d2</a>');
  assertStringIncludes(html, "pull web:3: 401 Unauthorized");
  assert(!html.includes('{"device'), "no JSON text on the page");
  assert(!html.includes("device_id"), "no snake_case keys on the page");
  // The device table: batch, phase, the revision the device reports, message; failed first.
  assertStringIncludes(
    html,
    '<tr data-device="d2"><th scope="row"><a href="/devices/d2">d2</a></th><td>2 (current)</td>',
  );
  assertStringIncludes(
    html,
    '<tr data-device="d0"><th scope="row"><a href="/devices/d0">d0</a></th><td>1</td><td><span class="badge ok">ready</span></td><td>3</td>',
  );
  assert(html.indexOf('data-device="d2"') < html.indexOf('data-device="d0"'), "failed first");
  assertStringIncludes(html, "<td>later</td>");
  // Relative times with the exact time on hover.
  assertStringIncludes(
    html,
    `title="${rollout.started_at.replace("T", " ").replace(/\.[0-9]+Z$/, " UTC")}">10m</time> ago`,
  );
  // "Revision history" once, newest first.
  assertEquals(html.split("Revision history").length - 1, 1);
  assert(html.indexOf("image web:3") < html.indexOf("created"), "newest revision first");
});

Deno.test("dashboard: the fleet page says per deployment whether a rollout runs, paused or rolled back", async () => {
  const deployment = (name: string, rollout: unknown) => ({
    name,
    revision: 2,
    targeted: 0,
    ready: 0,
    failed: 0,
    pending: 0,
    offline: 0,
    devices: [],
    ...(rollout === undefined ? {} : { rollout }),
  });
  const fleet = {
    devices: [],
    deployments: [
      deployment("a", { state: "progressing", batch: 2, batches: 3, stable_revision: 1 }),
      deployment("b", { state: "paused", batch: 1, batches: 3, stable_revision: 1 }),
      deployment("c", { state: "rolled_back", batch: 1, batches: 3, stable_revision: 1 }),
      deployment("d", undefined),
    ],
  } as unknown as FleetView;
  const d = new Dashboard({ view: () => fleet, device: () => undefined });
  const html = await (await answer(d, new Request("http://op/"))).text();
  const cell = (name: string) => {
    const row = html.slice(html.indexOf(`href="/deployments/${name}"`));
    return row.slice(
      row.indexOf('class="rollout-cell"'),
      row.indexOf("</td>", row.indexOf('class="rollout-cell"')),
    );
  };
  assertStringIncludes(cell("a"), 'rolling out</span><span class="muted"> batch 2 of 3');
  assertStringIncludes(cell("b"), 'paused</span><span class="muted"> batch 1 of 3');
  assertStringIncludes(cell("c"), 'rolled back</span><span class="muted"> to revision 1');
  assertStringIncludes(cell("d"), "-");
});

Deno.test("groupEvents: like events are one group with a count, newest group first", () => {
  const died = (seq: number, time: string) => ({
    seq,
    time,
    kind: "container_died",
    deployment: "web",
    service: "main",
    message: `died ${seq}`,
  });
  const events = [
    died(1, "2026-05-04T10:00:00.000Z"),
    {
      seq: 2,
      time: "2026-05-04T10:00:01.000Z",
      kind: "image_pulled",
      deployment: "web",
      message: "x",
    },
    ...Array.from(
      { length: 83 },
      (_, i) =>
        died(3 + i, `2026-05-04T10:${String(1 + Math.floor(i / 2)).padStart(2, "0")}:07.000Z`),
    ),
  ];
  const groups = groupEvents(events);
  assertEquals(groups.length, 2);
  assertEquals(groups[0]?.count, 84);
  assertEquals(groups[0]?.first, "2026-05-04T10:00:00.000Z");
  assertEquals(groups[0]?.last, "2026-05-04T10:42:07.000Z");
  assertEquals(groups[0]?.event.message, "died 85");
  assertEquals(groups[1]?.count, 1);
});

Deno.test("/favicon.ico is an icon, served without a login", async () => {
  const d = new Dashboard({ view: () => view, device: () => undefined }, { token: TOKEN });
  const res = await answer(d, new Request("http://op/favicon.ico"));
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "image/x-icon");
  const bytes = new Uint8Array(await res.arrayBuffer());
  assertEquals([...bytes.slice(0, 4)], [0, 0, 1, 0], "an ICO header");
  assertEquals(bytes.length, FAVICON_ICO.length);
  // The pages still want the login: the icon is the only new open path.
  assertEquals((await answer(d, new Request("http://op/"))).status, 303);
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
