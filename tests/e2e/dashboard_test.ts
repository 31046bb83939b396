/**
 * The fleet dashboard in a real browser (Debian's chromium, driven by
 * playwright-core; never a downloaded browser) against a real `operator
 * serve` and nats-server. The devices are stand-ins: the test writes their
 * registry entries and agent statuses into KV itself, as agents would (other
 * e2e tests run real agents), so it can stop one device's heartbeats at will
 * and add 5 000 devices in a second.
 *
 * Screenshots go to $DROVER_SCREENSHOTS when set (kept), else into the test's temp dir (removed).
 */

import type { Page } from "playwright-core";
import type { KvEntry } from "@nats-io/kv";
import {
  type AgentStatus,
  BUCKET_AGENT_STATUS,
  BUCKET_DESIRED_STATE,
  BUCKET_DEVICES,
  type DeploymentStatus,
  deviceCommandSubject,
  type EventsReply,
} from "@drover/contracts";
import { forEachBounded } from "../../operator/nats/kv.ts";
import { freePort, startNats, tempDir, waitFor } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { runOperatorCli, startOperatorService, testKv } from "../support/operator_process.ts";
import { launchBrowser } from "../support/browser.ts";

/** A stand-in agent's status (what `agent-status/<id>` would hold). */
function standInStatus(
  id: string,
  heartbeatSeconds: number,
  deployments: Record<string, DeploymentStatus> = {},
  degraded?: string,
): AgentStatus {
  return {
    device_id: id,
    status: degraded === undefined ? "ready" : "degraded",
    ...(degraded === undefined ? {} : { message: degraded }),
    timestamp: new Date().toISOString(),
    agent_version: "stand-in-1",
    labels: {},
    heartbeat_seconds: heartbeatSeconds,
    deployments,
  };
}

/** What a stand-in reports for the desired state `entry`: running it, or not (with `message`). */
function standInDeployment(
  entry: KvEntry,
  phase: "running" | "failed" | "pending",
  message?: string,
): DeploymentStatus {
  const revision = entry.json<{ deployment_revision?: number }>().deployment_revision;
  return {
    revision: entry.revision,
    ...(revision !== undefined ? { deployment_revision: revision } : {}),
    phase,
    ...(message !== undefined ? { message } : {}),
    services: {
      main: {
        state: phase === "running" ? "running" : "missing",
        image: "localhost/drover-busybox:1",
      },
    },
  };
}

/** A stand-in device's registry entry (what `operator device label` writes). */
function registration(labels: Record<string, string>): string {
  return JSON.stringify({ labels, updated_at: new Date().toISOString() });
}

/** Text of the stat `id` on the fleet page (e.g. `count-online`). */
async function stat(page: Page, id: string): Promise<string> {
  return (await page.locator(`#${id} dd`).textContent())?.trim() ?? "";
}

/** Device ids in the devices table, in order. */
async function tableIds(page: Page, table = "#devices"): Promise<string[]> {
  return await page.locator(`${table} tbody tr[data-device]`).evaluateAll((rows) =>
    rows.map((r) => r.getAttribute("data-device") ?? "")
  );
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000) {
  await waitFor(check, { timeoutMs, message: what, intervalMs: 100 });
}

const MANIFEST = `name: web
selector:
  labels:
    site: lab
score:
  type: PodmanV0
  services:
    - name: main
      image: localhost/drover-busybox:1
      command: ["sleep", "3600"]
`;

/** A staged rollout over the two site=lab devices: one per batch, paused on a failure. */
const STAGED = MANIFEST.replace("name: web", "name: api").replace(
  "score:",
  "rollout:\n  batches:\n    - limit: 1\n  batch_timeout: 10m\n  on_failure: pause\nscore:",
);

Deno.test("dashboard: live fleet, deployment and device pages in chromium", async (t) => {
  await using nats = await startNats();
  await using dir = await tempDir("dashboard-");
  // Kept only where asked (DROVER_SCREENSHOTS=DIR): a test run leaves no temp dir behind.
  const keep = Deno.env.get("DROVER_SCREENSHOTS");
  const shots = keep ?? `${dir.path}/screenshots`;
  await Deno.mkdir(shots, { recursive: true });
  const port = await freePort();
  await using operator = await startOperatorService(nats.url, port);
  await using kv = await testKv(nats.url);
  const statuses = await kv.open(BUCKET_AGENT_STATUS);
  const registry = await kv.open(BUCKET_DEVICES);
  const desired = await kv.open(BUCKET_DESIRED_STATE);

  // Three stand-in devices; two in site=lab get the deployment.
  await registry.put("pi-a", registration({ site: "lab", arch: "arm64" }));
  await registry.put("pi-b", registration({ site: "lab", arch: "amd64" }));
  await registry.put("pi-c", registration({ site: "home" }));
  await Deno.writeTextFile(`${dir.path}/web.yaml`, MANIFEST);
  const applied = await runOperatorCli(nats.url, ["apply", "-f", `${dir.path}/web.yaml`]);
  assertEquals(applied.code, 0, applied.stderr);

  // What each stand-in reports, by the desired state the operator wrote for it.
  let apiFirst: string | undefined;
  const reportOf = async (id: string): Promise<AgentStatus> => {
    if (id === "pi-c") return standInStatus(id, 1, {}, "container runtime unreachable: test");
    const entry = await desired.get(`${id}.web`);
    assert(entry !== null && entry.operation === "PUT", `desired state of ${id}`);
    const deployments: Record<string, DeploymentStatus> = {
      web: id === "pi-a"
        ? standInDeployment(entry, "running")
        : standInDeployment(entry, "failed", "pull localhost/drover-busybox:1: 401 Unauthorized"),
    };
    // The staged deployment: the first device given it runs it, the next is still pulling.
    const api = await desired.get(`${id}.api`);
    if (api !== null && api.operation === "PUT") {
      apiFirst ??= id;
      deployments.api = apiFirst === id
        ? standInDeployment(api, "running")
        : standInDeployment(api, "pending", "pulling localhost/drover-busybox:1");
    }
    return standInStatus(id, 1, deployments);
  };
  await until(
    "operator writes desired state for pi-a and pi-b",
    async () =>
      (await desired.get("pi-a.web"))?.operation === "PUT" &&
      (await desired.get("pi-b.web"))?.operation === "PUT",
  );
  // Heartbeats every 400 ms (heartbeat_seconds 1: offline after 3 s without one).
  const beating = new Set(["pi-a", "pi-b", "pi-c"]);
  const heartbeat = async () => {
    for (const id of beating) await statuses.put(id, JSON.stringify(await reportOf(id)));
  };
  await heartbeat();
  const beats = setInterval(() => heartbeat().catch(() => {}), 400);

  await using profile = await tempDir("dashboard-profile-");
  const browser = await launchBrowser(profile.path);
  try {
    const page = await browser.newPage();
    const base = operator.apiUrl;

    await t.step("the fleet page lists the devices with the right counts", async () => {
      await page.goto(`${base}/`);
      // The server's HTML already holds the table; the stream then takes over.
      await page.waitForSelector("body[data-live=open][data-renders]");
      assertEquals(await tableIds(page), ["pi-a", "pi-b", "pi-c"]);
      assertEquals(await stat(page, "count-devices"), "3");
      assertEquals(await stat(page, "count-online"), "3");
      assertEquals(await stat(page, "count-degraded"), "1");
      assertEquals(await stat(page, "count-deployments"), "1");
      assertEquals(await stat(page, "count-deployments-failed"), "1");
      assertStringIncludes(
        (await page.locator('#devices tr[data-device="pi-c"]').textContent()) ?? "",
        "container runtime unreachable: test",
      );
      await page.screenshot({ path: `${shots}/fleet.png`, fullPage: true });
    });

    await t.step("filtering by label and by text narrows the table", async () => {
      // Keyboard only: the search box and label field are labelled controls.
      await page.getByLabel("Labels").fill("site=lab");
      await until("label filter applied", async () => (await tableIds(page)).length === 2);
      assertEquals(await tableIds(page), ["pi-a", "pi-b"]);
      assert(page.url().includes("label=site%3Dlab"), `the URL keeps the filter: ${page.url()}`);
      await page.getByLabel("Search").focus();
      await page.keyboard.type("amd64");
      await until("text filter applied", async () => (await tableIds(page)).length === 1);
      assertEquals(await tableIds(page), ["pi-b"]);
      await page.getByLabel("Labels").fill("");
      await page.getByLabel("Search").fill("");
      await until("filters cleared", async () => (await tableIds(page)).length === 3);
    });

    await t.step("a device that stops heart-beating turns offline without a reload", async () => {
      await page.evaluate(() => (globalThis as { sameDocument?: boolean }).sameDocument = true);
      beating.delete("pi-a");
      const cell = page.locator('#devices tr[data-device="pi-a"] td:nth-child(3)');
      await until("pi-a shows offline", async () => (await cell.textContent()) === "offline");
      assertEquals(await stat(page, "count-offline"), "1");
      await page.locator("h1").click(); // no focus ring in the screenshot
      await page.screenshot({ path: `${shots}/fleet-offline.png`, fullPage: true });
      assert(
        await page.evaluate(() => (globalThis as { sameDocument?: boolean }).sameDocument === true),
        "the page was not reloaded",
      );
      beating.add("pi-a");
      await until("pi-a back online", async () => (await cell.textContent()) === "online");
    });

    await t.step("a deployment's page shows its devices by phase with messages", async () => {
      await page.locator('#deployments a[href="/deployments/web"]').click();
      await page.waitForURL(`${base}/deployments/web`);
      await page.waitForSelector("body[data-live=open][data-renders]");
      assertEquals(await tableIds(page, "#deployment-devices"), ["pi-b", "pi-a"]);
      const failed = await page.locator('#deployment-devices tr[data-device="pi-b"]').textContent();
      assertStringIncludes(failed ?? "", "failed");
      assertStringIncludes(failed ?? "", "pull localhost/drover-busybox:1: 401 Unauthorized");
      assertEquals((await page.locator("#dep-ready dd").textContent())?.trim(), "1");
      assert(await page.locator("#rollout").isVisible(), "the rollout area is there");
      await page.screenshot({ path: `${shots}/deployment.png`, fullPage: true });
    });

    await t.step(
      "a staged rollout mid-way: the fleet says so, the page is a rollout view",
      async () => {
        await Deno.writeTextFile(`${dir.path}/api.yaml`, STAGED);
        const staged = await runOperatorCli(nats.url, ["apply", "-f", `${dir.path}/api.yaml`]);
        assertEquals(staged.code, 0, staged.stderr);
        await page.goto(`${base}/`);
        await page.waitForSelector("body[data-live=open][data-renders]");
        const cell = page.locator('#deployments tr:has(a[href="/deployments/api"]) .rollout-cell');
        await until(
          "the fleet page shows api rolling out in batch 2",
          async () => ((await cell.textContent()) ?? "").includes("rolling out batch 2 of 2"),
          20_000,
        );
        await page.locator('#deployments a[href="/deployments/api"]').click();
        await page.waitForURL(`${base}/deployments/api`);
        await page.waitForSelector("body[data-live=open][data-renders]");
        await page.waitForSelector("#rollout .stepper .step.current");
        assertEquals(
          await page.locator("#rollout .stepper .step").evaluateAll((steps) =>
            steps.map((s) => s.className)
          ),
          ["step done", "step current"],
        );
        const headline = (await page.locator("#rollout-headline").textContent()) ?? "";
        assert(/^rolling out · revision \d+, batch 2 of 2/.test(headline), headline);
        const rows = await tableIds(page, "#rollout-devices");
        assertEquals(rows.length, 2);
        const second = page.locator(`#rollout-devices tr[data-device="${rows[0]}"]`);
        assertStringIncludes((await second.textContent()) ?? "", "2 (current)");
        // The row says "pending" until the device's status saying so reaches the page.
        await until(
          "the batch's device row shows the image it pulls",
          async () =>
            ((await second.textContent()) ?? "").includes("pulling localhost/drover-busybox:1"),
          20_000,
        );
        // Relative times, with the exact time on hover; no raw JSON or snake_case keys.
        const started = page.locator("#rollout time").first();
        assert(
          /^\d+s$/.test((await started.textContent()) ?? ""),
          await started.textContent() ?? "",
        );
        assert(/ UTC$/.test((await started.getAttribute("title")) ?? ""), "exact time on hover");
        const text = (await page.locator("#live").textContent()) ?? "";
        assert(!text.includes("device_id") && !text.includes('{"'), text);
        assertEquals(await page.getByRole("heading", { name: "Revision history" }).count(), 1);
        await page.locator("h1").click(); // no focus ring in the screenshot (docs/dashboard.png)
        await page.screenshot({ path: `${shots}/deployment-rollout.png`, fullPage: true });
      },
    );

    await t.step("an offline device's page ages and greys out what it last reported", async () => {
      await page.goto(`${base}/devices/pi-a`);
      await page.waitForSelector("body[data-live=open][data-renders]");
      assertEquals(await page.locator("#stale-note").count(), 0, "online: nothing is stale");
      assertStringIncludes((await page.locator("#device-status").textContent()) ?? "", "as of");
      beating.delete("pi-a");
      await page.locator("#stale-note").waitFor({ timeout: 15_000 });
      const row = page.locator("#services tbody tr.stale").first();
      const opacity = await row.locator("td").first().evaluate((td) =>
        (globalThis as unknown as { getComputedStyle(e: unknown): { opacity: string } })
          .getComputedStyle(td).opacity
      );
      assert(Number(opacity) < 1, `greyed out: opacity ${opacity}`);
      assertStringIncludes((await row.textContent()) ?? "", "ago");
      assertStringIncludes((await page.locator("#device-status").textContent()) ?? "", "ago");
      beating.add("pi-a");
      await page.locator("#stale-note").waitFor({ state: "detached", timeout: 15_000 });
    });

    await t.step("a crash loop's events are one row, and the logs stay in reach", async () => {
      // pi-a answers `events` as an agent in a crash loop would: 84 container_died events.
      const died = (i: number) => ({
        seq: i + 1,
        time: new Date(Date.parse("2026-05-04T10:00:07Z") + i * 30_000).toISOString(),
        kind: "container_died" as const,
        deployment: "web",
        service: "main",
        exit_code: 3,
        message: "container exited",
      });
      const reply: EventsReply = {
        device: "pi-a",
        events: [
          {
            seq: 100,
            time: "2026-05-04T09:59:00.000Z",
            kind: "image_pulled",
            deployment: "web",
            service: "main",
            message: "pulled",
          },
          ...Array.from({ length: 84 }, (_, i) => died(i)),
        ],
        dropped: 0,
      };
      const responder = kv.nc.subscribe(deviceCommandSubject("pi-a", "events"), {
        callback: (_err, msg) => void msg.respond(JSON.stringify(reply)),
      });
      try {
        await page.goto(`${base}/devices/pi-a`);
        await page.waitForSelector("#device-events tbody tr[data-count]");
        const rows = page.locator("#device-events tbody tr");
        assertEquals(await rows.count(), 2);
        const first = (await rows.first().textContent()) ?? "";
        assertStringIncludes(first, "container_died ×84");
        assertStringIncludes(first, "last 2026-05-04 10:41:37Z");
        // The log pane is right below, not 84 rows further down.
        const logsTop = await page.locator("#logs").evaluate((el) =>
          el.getBoundingClientRect().top
        );
        const eventsTop = await page.locator("#events").evaluate((el) =>
          el.getBoundingClientRect().top
        );
        assert(logsTop - eventsTop < 900, `logs ${logsTop - eventsTop}px below the events`);
        await page.locator("h1").click();
        await page.screenshot({ path: `${shots}/device-events.png`, fullPage: true });
      } finally {
        responder.unsubscribe();
      }
    });

    await t.step("a device's page shows its services", async () => {
      await page.goto(`${base}/devices/pi-a`);
      await page.waitForSelector("body[data-live=open][data-renders]");
      const row =
        (await page.locator('#services tbody tr:has(a[href="/deployments/web"])').textContent()) ??
          "";
      for (const text of ["web", "main", "running", "localhost/drover-busybox:1"]) {
        assertStringIncludes(row, text);
      }
      assert(await page.locator("[data-hook=device-logs]").count() === 1, "the logs pane");
      await page.setViewportSize({ width: 380, height: 800 });
      await page.screenshot({ path: `${shots}/device-narrow.png`, fullPage: true });
      await page.setViewportSize({ width: 1280, height: 800 });
    });

    await t.step("5 000 stand-in devices: loads a page of rows and stays responsive", async () => {
      const ids = Array.from({ length: 5000 }, (_, i) => `stand-in-${String(i).padStart(4, "0")}`);
      const failures = await forEachBounded(ids, 128, async (id) => {
        await registry.put(id, registration({ site: `s${Number(id.slice(-4)) % 10}` }));
        await statuses.put(id, JSON.stringify(standInStatus(id, 3600)));
      });
      assertEquals(failures.length, 0);
      const big = await browser.newPage();
      await big.goto(`${base}/`);
      await until(
        "the fleet page counts 5 003 devices",
        async () => (await stat(big, "count-devices")) === "5003",
        20_000,
      );
      await big.waitForSelector("body[data-live=open][data-renders]");
      assertEquals((await tableIds(big)).length, 50, "one page of rows, not 5 000");
      // Keyboard: the pager's "Next" link, then a filter that leaves 500 devices.
      await big.locator('[data-key="page-next"]').focus();
      await big.keyboard.press("Enter");
      await until("page 2", async () => (await tableIds(big))[0] === "stand-in-0047");
      await big.getByLabel("Labels").fill("site=s3");
      await until(
        "filtered to site=s3",
        async () => ((await big.locator("#shown").textContent()) ?? "").includes("of 500 "),
      );
      assertEquals((await tableIds(big))[0], "stand-in-0003");
      await big.screenshot({ path: `${shots}/fleet-5000.png` });
      await big.close();
    });
    await t.step("with an API token: a login form, then the live page on its cookie", async () => {
      const token = "dashboard-test-token-0123456789";
      await using guarded = await startOperatorService(nats.url, await freePort(), [
        "--api-token",
        token,
      ]);
      const api = await fetch(`${guarded.apiUrl}/api/devices`);
      await api.body?.cancel();
      assertEquals(api.status, 401, "the API still wants its header");
      await page.goto(`${guarded.apiUrl}/deployments/web`);
      assert(page.url().startsWith(`${guarded.apiUrl}/ui/login`), `login first: ${page.url()}`);
      await page.getByLabel("API token").fill("wrong-token-wrong-token");
      await page.keyboard.press("Enter");
      await page.getByText("Wrong token.").waitFor();
      await page.getByLabel("API token").fill(token);
      await page.keyboard.press("Enter");
      await page.waitForURL(`${guarded.apiUrl}/deployments/web`);
      // The event stream (an EventSource: no headers) is let in by the cookie alone.
      await page.waitForSelector("body[data-live=open][data-renders]");
      assertEquals(await tableIds(page, "#deployment-devices"), ["pi-b", "pi-a"]);
      const cookies = await page.context().cookies(guarded.apiUrl);
      assert(cookies.every((c) => c.httpOnly && !c.value.includes(token)), "HttpOnly, no token");
    });
    await page.close();
  } finally {
    clearInterval(beats);
    await browser.close();
    if (keep !== undefined) console.log(`dashboard screenshots: ${shots}`);
  }
});
