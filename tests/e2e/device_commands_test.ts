/**
 * Seeing into devices without opening a port: `operator logs` (tail, -f, -l),
 * `ping`, `events` (a manual `podman rm -f` and the agent's repair), a
 * missing deployment or service, an offline device answering promptly, the
 * same through the HTTP API (`/api/devices/ID/events|logs`, behind the API
 * token) and the dashboard's device page in Debian's chromium (its events
 * pane and a followed log pane, logged in with the token), and the metrics
 * of both sides checked by Debian's promtool and scraped by a real
 * Prometheus server. Real nats-server with Drover's account layout (the
 * commands cross from DROVER into DROVER_DEVICES through the reverse service
 * export), real podman, real agents, the real operator CLI and `serve`.
 */

import { buildBusyboxImage, freePort, startPodman, tempDir, waitFor } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { type AgentProcess, startAgent } from "../support/agent_process.ts";
import { collectOutput, operatorTaskArgs, runOperatorCli } from "../support/operator_process.ts";
import { ADMIN_USER, DEVICE_PASSWORD, startDroverNats } from "../support/drover_nats.ts";
import { launchBrowser } from "../support/browser.ts";

const IMAGE = "localhost/drover/busybox:cmd";
const ADMIN_ENV = { NATS_USER: ADMIN_USER.user, NATS_PASSWORD: ADMIN_USER.password };
const REPO_ROOT = new URL("../../", import.meta.url).pathname;
/** `serve`'s API token: the device routes and /metrics want it, the dashboard its login. */
const API_TOKEN = "device-commands-test-token-0123";
const BEARER = { authorization: `Bearer ${API_TOKEN}` };

/** A container that writes a known log: one stderr line, then five stdout lines. */
const MANIFEST = JSON.stringify({
  name: "talker",
  selector: { labels: { site: "lab" } },
  score: {
    type: "PodmanV0",
    services: [{
      name: "main",
      image: IMAGE,
      command: [
        "sh",
        "-c",
        "echo oops >&2; sleep 1; for i in 1 2 3 4 5; do echo line-$i; done; " +
        "trap 'exit 0' TERM; sleep 3600 & wait",
      ],
    }],
  },
});

async function promtoolCheck(url: string, headers: Record<string, string> = {}): Promise<void> {
  const text = await (await fetch(url, { headers })).text();
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const r = await child.output();
  const dec = new TextDecoder();
  assertEquals(
    r.code,
    0,
    `promtool check metrics ${url}:\n${dec.decode(r.stdout)}${dec.decode(r.stderr)}`,
  );
}

Deno.test({
  name: "device commands: logs tail/-f/-l, ping, events with repair, offline, metrics",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using nats = await startDroverNats(["pi-a", "pi-b"]);
    await using dir = await tempDir("device-commands-");
    await using podA = await startPodman();
    await using podB = await startPodman();
    await Promise.all([podA, podB].map((p) => buildBusyboxImage(p, IMAGE)));
    const agentMetricsPort = await freePort();
    const apiPort = await freePort();

    // operator serve with the DROVER account's identity (the one that may ask any device).
    const serve = new Deno.Command(Deno.execPath(), {
      args: [...await operatorTaskArgs(), "serve", "--listen", `127.0.0.1:${apiPort}`],
      env: { NATS_URL: nats.url, DROVER_API_TOKEN: API_TOKEN, ...ADMIN_ENV },
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const serveOutput = collectOutput(serve);
    await using _serve = {
      async [Symbol.asyncDispose]() {
        try {
          serve.kill("SIGTERM");
        } catch { /* gone */ }
        await serve.status;
        await serveOutput.done;
      },
    };
    const agents: AgentProcess[] = [];
    await using _agents = {
      async [Symbol.asyncDispose]() {
        await Promise.all(agents.map((a) => a.kill()));
      },
    };
    for (const [id, pod] of [["pi-a", podA], ["pi-b", podB]] as const) {
      agents.push(
        await startAgent({
          deviceId: id,
          natsUrl: nats.url,
          natsUser: id,
          natsPassword: DEVICE_PASSWORD,
          podmanSocket: pod.socket,
          dir: `${dir.path}/${id}`,
          heartbeatSeconds: 1,
          ...(id === "pi-a"
            ? { extraToml: `[metrics]\nlisten = "127.0.0.1:${agentMetricsPort}"\n` }
            : {}),
        }),
      );
    }
    const cli = (...args: string[]) => runOperatorCli(nats.url, args, ADMIN_ENV);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${apiPort}/healthz`)).ok, {
      timeoutMs: 60_000,
      message: "operator serve is ready",
    });
    for (const id of ["pi-a", "pi-b"]) {
      const label = await cli("device", "register", id, "site=lab");
      assertEquals(label.code, 0, label.stderr);
    }
    const manifestPath = `${dir.path}/talker.json`;
    await Deno.writeTextFile(manifestPath, MANIFEST);
    const applied = await cli("apply", "-f", manifestPath, "--wait", "--timeout", "120s");
    assertEquals(applied.code, 0, applied.stdout + applied.stderr);
    // The container writes its lines a second after it starts.
    await waitFor(async () => (await cli("logs", "pi-a", "talker")).stdout.includes("line-5"), {
      timeoutMs: 30_000,
      message: "the container wrote its lines",
    });

    // --tail: the last lines the container wrote; its stderr on stderr. SERVICE left out.
    const tail = await cli("logs", "pi-a", "talker", "--tail", "2");
    assertEquals(tail.code, 0, tail.stderr);
    assertEquals(tail.stdout, "line-4\nline-5\n");
    const all = await cli("logs", "pi-a", "talker/main");
    assertEquals(all.stdout, "line-1\nline-2\nline-3\nline-4\nline-5\n");
    assertStringIncludes(all.stderr, "oops");

    // -f: a line written after it started shows up; Ctrl-C ends it cleanly.
    /** `operator logs … -f` as a process the test stops (Ctrl-C) when it has seen enough. */
    const spawnCli = async (...args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: [...await operatorTaskArgs(), ...args],
        env: { NATS_URL: nats.url, INIT_CWD: REPO_ROOT, ...ADMIN_ENV },
        cwd: REPO_ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    const follow = await spawnCli("logs", "pi-a", "talker", "-f", "--tail", "1");
    const followOutput = collectOutput(follow);
    try {
      await waitFor(() => followOutput.text().includes("line-5"), {
        timeoutMs: 30_000,
        message: "logs -f prints the tail",
      });
      const exec = await podA.cli([
        "exec",
        "talker_main",
        "sh",
        "-c",
        "echo late-line > /proc/1/fd/1",
      ]);
      assertEquals(exec.code, 0, exec.stderr);
      await waitFor(() => followOutput.text().includes("late-line"), {
        timeoutMs: 20_000,
        message: `logs -f prints a line written after it started:\n${followOutput.text()}`,
      });
      assert(!followOutput.text().includes("line-4"), "only the tail, then new lines");
    } finally {
      follow.kill("SIGINT");
      await follow.status;
      await followOutput.done;
    }

    // logs -f on a container that exits says so and fails (a script following it notices).
    /** Applies deployment `name` on pi-a: one service running `script`. */
    const applyOnPiA = async (name: string, script: string, restart?: string) => {
      const path = `${dir.path}/${name}.json`;
      const service = { name: "main", image: IMAGE, command: ["sh", "-c", script] };
      await Deno.writeTextFile(
        path,
        JSON.stringify({
          name,
          selector: { devices: ["pi-a"] },
          score: { type: "PodmanV0", services: [{ ...service, ...(restart ? { restart } : {}) }] },
        }),
      );
      const applied = await cli("apply", "-f", path);
      assertEquals(applied.code, 0, applied.stderr);
    };
    await applyOnPiA("job", "echo bye; sleep 6; exit 3", "no");
    await waitFor(async () => (await cli("logs", "pi-a", "job")).stdout.includes("bye"), {
      timeoutMs: 60_000,
      message: "the job wrote its line",
    });
    const followedJob = await cli("logs", "pi-a", "job", "-f");
    assertEquals(followedJob.code, 1, followedJob.stdout + followedJob.stderr);
    assertStringIncludes(followedJob.stdout, "bye");
    assertStringIncludes(followedJob.stderr, "container exited with code 3; following stopped");
    assertEquals((await cli("delete", "job")).code, 0);

    // A crash-looping service is followed across its restarts (each run's line shows up).
    await applyOnPiA("flappy", "echo run-started; sleep 2; exit 3");
    await waitFor(
      async () => (await cli("logs", "pi-a", "flappy")).stdout.includes("run-started"),
      {
        timeoutMs: 60_000,
        message: "flappy started once",
      },
    );
    const flappy = await spawnCli("logs", "pi-a", "flappy", "-f", "--tail", "1");
    const flappyOutput = collectOutput(flappy);
    try {
      await waitFor(
        () => (flappyOutput.text().match(/run-started/g) ?? []).length >= 3,
        {
          timeoutMs: 60_000,
          message: `logs -f follows flappy across restarts:\n${flappyOutput.text()}`,
        },
      );
    } finally {
      flappy.kill("SIGINT");
      await flappy.status;
      await flappyOutput.done;
    }
    assertEquals((await cli("delete", "flappy")).code, 0);

    // -l: both devices at once, each line prefixed with its device.
    const merged = await cli("logs", "-l", "site=lab", "talker", "--tail", "1");
    assertEquals(merged.code, 0, merged.stderr);
    assertStringIncludes(merged.stdout, "pi-a | late-line\n");
    assertStringIncludes(merged.stdout, "pi-b | line-5\n");

    // A missing deployment or service is named.
    const noDeployment = await cli("logs", "pi-a", "nope");
    assertEquals(noDeployment.code, 1);
    assertStringIncludes(noDeployment.stderr, 'Deployment "nope" not found');
    const noService = await cli("logs", "pi-a", "talker/db");
    assertEquals(noService.code, 1);
    assertStringIncludes(noService.stderr, 'no service "db"');

    // A typo in a device id: refused at once with the likely intended one, nothing registered.
    const typo = await cli("device", "label", "pi-aa", "site=lab");
    assertEquals(typo.code, 1, typo.stdout + typo.stderr);
    assertStringIncludes(typo.stderr, 'No such device "pi-aa"');
    assertStringIncludes(typo.stderr, 'did you mean "pi-a"?');
    assertStringIncludes(typo.stderr, "device register pi-aa site=lab");
    const ids = JSON.parse((await cli("get", "devices", "-o", "json")).stdout)
      .map((d: { device_id: string }) => d.device_id);
    assertEquals(ids, ["pi-a", "pi-b"], "no phantom device");
    for (const args of [["ping", "pi-aa"], ["events", "pi-aa"], ["logs", "pi-aa", "talker"]]) {
      const unknown = await cli(...args);
      assertEquals(unknown.code, 1, `${args.join(" ")}: ${unknown.stdout}${unknown.stderr}`);
      assertStringIncludes(unknown.stderr, 'No such device "pi-aa"');
      assertStringIncludes(unknown.stderr, 'did you mean "pi-a"?');
      // Refused before asking: not the device timeout's "did not answer".
      assert(!unknown.stderr.includes("did not answer"), unknown.stderr);
    }
    // The control: relabelling a registered device works.
    const relabel = await cli("device", "label", "pi-a", "zone=1");
    assertEquals(relabel.code, 0, relabel.stderr);
    assertStringIncludes(relabel.stdout, 'device "pi-a" labelled: site=lab,zone=1');

    // ping: version, uptime, last reconcile.
    const ping = await cli("ping", "pi-a", "-o", "json");
    assertEquals(ping.code, 0, ping.stderr);
    const pong = JSON.parse(ping.stdout);
    assertEquals(pong.device, "pi-a");
    assert(pong.last_reconcile_at !== null && pong.round_trip_ms > 0, ping.stdout);

    // events: a container removed by hand, then the agent's repair.
    const removed = await podA.cli(["rm", "-f", "-t", "0", "talker_main"]);
    assertEquals(removed.code, 0, removed.stderr);
    type Ev = { kind: string; deployment?: string; seq: number };
    let events: Ev[] = [];
    await waitFor(async () => {
      const out = await cli("events", "pi-a", "-o", "json");
      events = out.code === 0 ? JSON.parse(out.stdout) : [];
      const missing = events.find((e) => e.kind === "container_missing");
      return missing !== undefined &&
        events.some((e) => e.kind === "container_created" && e.seq > missing.seq);
    }, { timeoutMs: 60_000, message: "events record the removal and the repair" });
    // Only this device's deployments (the job and flappy ones above ran here too).
    const here = [undefined, "talker", "job", "flappy"];
    assert(events.every((e) => here.includes(e.deployment)), JSON.stringify(events));
    const table = await cli("events", "pi-a");
    assertStringIncludes(table.stdout, "container_missing");

    // The HTTP API asks the device the same way, behind the token.
    const api = `http://127.0.0.1:${apiPort}`;
    const unauthorized = await fetch(`${api}/api/devices/pi-a/events`);
    assertEquals(unauthorized.status, 401);
    await unauthorized.body?.cancel();
    const apiEvents = await fetch(`${api}/api/devices/pi-a/events`, { headers: BEARER });
    const ring = await apiEvents.json();
    assertEquals(apiEvents.status, 200, JSON.stringify(ring));
    assertEquals(ring.device, "pi-a");
    assert(ring.events.some((e: Ev) => e.kind === "container_missing"), JSON.stringify(ring));
    // The repaired container writes its lines a second after it starts; then a tail and the
    // next pull with its cursor (nothing new: no line twice).
    type Chunk = { lines: { text: string }[]; cursor: unknown; end: boolean };
    const logsUrl = `${api}/api/devices/pi-a/logs?deployment=talker&service=main`;
    let chunk: Chunk = { lines: [], cursor: null, end: false };
    await waitFor(async () => {
      const res = await fetch(`${logsUrl}&tail=2`, { headers: BEARER });
      chunk = await res.json();
      return res.ok && chunk.lines.map((l) => l.text).join(",") === "line-4,line-5";
    }, {
      timeoutMs: 20_000,
      message: `the API tails the repaired container: ${JSON.stringify(chunk)}`,
    });
    assert(chunk.cursor !== null && chunk.end, JSON.stringify(chunk));
    const after = await (await fetch(
      `${logsUrl}&cursor=${encodeURIComponent(JSON.stringify(chunk.cursor))}`,
      { headers: BEARER },
    )).json();
    assertEquals(after.lines, []);

    // The dashboard's device page: log in, the events pane shows the removal, the log pane
    // follows the container (its stderr marked) and shows a line written while it is open.
    await using profile = await tempDir("device-commands-browser-");
    const browser = await launchBrowser(profile.path);
    await using _browser = { [Symbol.asyncDispose]: () => browser.close() };
    const page = await browser.newPage();
    await page.goto(`${api}/devices/pi-a`);
    await page.getByLabel("API token").fill(API_TOKEN);
    await page.keyboard.press("Enter");
    await page.waitForURL(`${api}/devices/pi-a`);
    await page.waitForSelector("body[data-live=open]");
    await page.locator("#device-events tr[data-kind=container_missing]").first().waitFor({
      timeout: 15_000,
    });
    assertEquals(await page.getByLabel("Deployment/service").inputValue(), "talker/main");
    await page.getByLabel("Follow").focus();
    await page.keyboard.press("Space"); // shows the last lines, then follows
    const logPane = page.locator("#log-lines");
    await waitFor(async () => ((await logPane.textContent()) ?? "").includes("line-5"), {
      timeoutMs: 15_000,
      message: "the log pane shows the container's lines",
    });
    assertEquals(
      await page.locator("#log-lines [data-stream=stderr] .log-text").allTextContents(),
      ["oops"],
    );
    await waitFor(
      async () => (await page.locator("#logs-status").textContent())?.startsWith("Following"),
      { timeoutMs: 10_000, message: "the pane follows" },
    );
    const late = await podA.cli([
      "exec",
      "talker_main",
      "sh",
      "-c",
      "echo '<b>dash</b>' > /proc/1/fd/1",
    ]);
    assertEquals(late.code, 0, late.stderr);
    await waitFor(async () => ((await logPane.textContent()) ?? "").includes("<b>dash</b>"), {
      timeoutMs: 15_000,
      message: "a line written while the pane follows shows up, as text",
    });
    assertEquals(await page.locator("#log-lines b").count(), 0, "device text is never markup");
    const shots = Deno.env.get("DROVER_SCREENSHOTS");
    if (shots !== undefined) {
      await page.screenshot({ path: `${shots}/device-panes.png`, fullPage: true });
    }

    // Metrics: both endpoints pass promtool; a real Prometheus scrapes the operator.
    await promtoolCheck(`http://127.0.0.1:${apiPort}/metrics`, BEARER);
    await promtoolCheck(`http://127.0.0.1:${agentMetricsPort}/metrics`);
    const agentText = await (await fetch(`http://127.0.0.1:${agentMetricsPort}/metrics`)).text();
    assertStringIncludes(agentText, 'drover_agent_containers{state="running"} 1');
    assertStringIncludes(agentText, 'drover_agent_reconcile_duration_seconds_count{outcome="ok"}');
    const promPort = await freePort();
    await Deno.writeTextFile(
      `${dir.path}/prometheus.yml`,
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: drover\n` +
        `    authorization:\n      credentials: ${API_TOKEN}\n` +
        `    static_configs:\n      - targets: ["127.0.0.1:${apiPort}"]\n`,
    );
    const prometheus = new Deno.Command("prometheus", {
      args: [
        `--config.file=${dir.path}/prometheus.yml`,
        `--storage.tsdb.path=${dir.path}/tsdb`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const promOutput = collectOutput(prometheus);
    try {
      const query = async (q: string) => {
        const res = await fetch(
          `http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`,
        );
        const body = await res.json();
        return body?.data?.result?.[0]?.value?.[1] as string | undefined;
      };
      await waitFor(async () => {
        try {
          return await query('sum(drover_devices{online="true"})') === "2" &&
            await query('drover_deployment_devices{deployment="talker",phase="ready"}') === "2";
        } catch {
          return false;
        }
      }, { timeoutMs: 60_000, message: "Prometheus sees 2 online devices and 2 ready" });
    } finally {
      prometheus.kill("SIGTERM");
      await prometheus.status;
      await promOutput.done;
    }

    // Offline: an error within a few seconds that says so and when it was last seen.
    assertEquals(await agents[1]?.stop(), 0);
    const started = performance.now();
    const offline = await cli("ping", "pi-b");
    const tookMs = performance.now() - started;
    assertEquals(offline.code, 1, offline.stdout);
    assertStringIncludes(offline.stderr, 'Device "pi-b" did not answer');
    assertStringIncludes(offline.stderr, "offline, last seen");
    assert(tookMs < 10_000, `answered in ${Math.round(tookMs)} ms`);
    const offlineLogs = await cli("logs", "pi-b", "talker");
    assertEquals(offlineLogs.code, 1);
    assertStringIncludes(offlineLogs.stderr, "last seen");
    // The API: 504 within a few seconds, saying so and when the device was last seen.
    const apiStarted = performance.now();
    const offlineApi = await fetch(`${api}/api/devices/pi-b/events`, { headers: BEARER });
    const apiTookMs = performance.now() - apiStarted;
    const offlineBody = await offlineApi.json();
    assertEquals(offlineApi.status, 504, JSON.stringify(offlineBody));
    assertStringIncludes(offlineBody.error, "offline, last seen");
    assertEquals([offlineBody.device, offlineBody.online], ["pi-b", false]);
    assert(typeof offlineBody.last_seen === "string", JSON.stringify(offlineBody));
    assert(apiTookMs < 10_000, `the API answered in ${Math.round(apiTookMs)} ms`);
    // And the device page says the same in its events pane.
    await page.goto(`${api}/devices/pi-b`);
    await page.locator("#events-status[data-state=error]").waitFor({ timeout: 15_000 });
    assertStringIncludes(
      (await page.locator("#events-status").textContent()) ?? "",
      "did not answer",
    );
  },
});
