/**
 * The reconciler driving a real podman service through PodmanRuntime: create,
 * update, drift by hand (stopped, removed), removal, a crash loop. The resync
 * interval is long, so drift is undone through podman's event stream, not by
 * the safety-net timer.
 */

import { configure, getTextFormatter, reset } from "@logtape/logtape";
import { AgentPolicy, DesiredState } from "@drover/contracts";
import { assert, assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import {
  buildBusyboxImage,
  fetchPublishedPort,
  freePort,
  type PodmanService,
  startPodman,
  waitFor,
} from "../../tests/support/mod.ts";
import { PodmanRuntime } from "../runtime/podman_runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import { Reconciler } from "./reconciler.ts";

const TAG = "localhost/drover/busybox:reconcile-test";
const TIMEOUT_MS = 30_000;

function entry(revision: number, greeting: string, port: number, image: string): DesiredEntry {
  const state = DesiredState.parse({
    deployment: "site",
    score: {
      type: "PodmanV0",
      services: [
        {
          name: "web",
          image,
          command: [
            "sh",
            "-c",
            'echo "$GREETING" > /tmp/index.html && exec httpd -f -p 80 -h /tmp',
          ],
          env: { GREETING: greeting },
          ports: [`127.0.0.1:${port}:80`],
        },
        { name: "side", image, command: ["sleep", "3600"] },
      ],
    },
  });
  return { kind: "valid", deployment: "site", revision, state };
}

interface Row {
  id: string;
  name: string;
  state: string;
  revision: string;
  device: string;
}

async function containers(podman: PodmanService): Promise<Row[]> {
  const out = await podman.cli([
    "ps",
    "-a",
    "--filter",
    "label=drover.managed=true",
    "--format",
    "json",
  ]);
  assertEquals(out.code, 0, out.stderr);
  const list = JSON.parse(out.stdout || "[]") as Array<{
    Id: string;
    Names: string[];
    State: string;
    Labels: Record<string, string> | null;
  }>;
  return list.map((c) => ({
    id: c.Id,
    name: c.Names[0] ?? "",
    state: c.State,
    revision: c.Labels?.["drover.revision"] ?? "",
    device: c.Labels?.["drover.device"] ?? "",
  })).sort((a, b) => (a.name < b.name ? -1 : 1));
}

async function startedAt(podman: PodmanService, name: string): Promise<string> {
  const out = await podman.cli(["inspect", "--format", "{{.State.StartedAt.UnixNano}}", name]);
  assertEquals(out.code, 0, out.stderr);
  return out.stdout.trim().padStart(24, "0");
}

async function page(port: number): Promise<string | undefined> {
  try {
    const res = await fetchPublishedPort(port, "/index.html");
    return res.ok ? await res.text() : (await res.body?.cancel(), undefined);
  } catch {
    return undefined;
  }
}

/** Collects the reconciler's log lines, to print when the test fails. */
async function captureLogs(): Promise<string[]> {
  const lines: string[] = [];
  const format = getTextFormatter();
  await configure({
    reset: true,
    sinks: { memory: (record) => void lines.push(format(record).trimEnd()) },
    loggers: [
      { category: ["drover"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["memory"] },
    ],
  });
  return lines;
}

interface Setup extends AsyncDisposable {
  logs: string[];
  podman: PodmanService;
  image: string;
  port: number;
  reconciler: Reconciler;
}

/** A podman service, the test image and a running reconciler with `site` at revision 1. */
async function deployed(): Promise<Setup> {
  const logs = await captureLogs();
  const podman = await startPodman();
  const image = await buildBusyboxImage(podman, TAG);
  const runtime = new PodmanRuntime({ socketPath: podman.socket, stopTimeoutSeconds: 0 });
  const port = await freePort();
  const reconciler = new Reconciler({
    deviceId: "pi-1",
    runtime,
    policy: AgentPolicy.parse({}),
    registries: {},
    resyncIntervalMs: 10 * 60_000,
  });
  reconciler.setSnapshot({
    entries: new Map([["site", entry(1, "first", port, image)]]),
    authoritative: true,
  });
  const ac = new AbortController();
  const running = reconciler.run(ac.signal);
  const setup: Setup = {
    logs,
    podman,
    image,
    port,
    reconciler,
    async [Symbol.asyncDispose]() {
      ac.abort();
      await running;
      runtime[Symbol.dispose]();
      await podman[Symbol.asyncDispose]();
      await reset();
    },
  };
  try {
    await reconciler.firstPass;
    await waitFor(() => page(port), { timeoutMs: TIMEOUT_MS, message: "first page" });
  } catch (err) {
    console.error(`reconciler log:\n${logs.join("\n")}`);
    await setup[Symbol.asyncDispose]();
    throw err;
  }
  return setup;
}

/** Runs `body`, printing the reconciler's log if it fails. */
async function withLogsOnFailure(body: (s: Setup) => Promise<void>): Promise<void> {
  await using s = await deployed();
  try {
    await body(s);
  } catch (err) {
    console.error(`reconciler log:\n${s.logs.join("\n")}`);
    throw err;
  }
}

Deno.test("reconciler on real podman: create", async () => {
  await withLogsOnFailure(async ({ podman, port, reconciler }) => {
    assertEquals(await page(port), "first\n");
    // Up, but not for the default min_ready (10 s) yet: pending, saying so; then running.
    const early = reconciler.deploymentStatuses().site;
    assertEquals(early?.phase, "pending");
    assertStringIncludes(early?.message ?? "", "ready after 10 s");
    await waitFor(() => reconciler.deploymentStatuses().site?.phase === "running", {
      timeoutMs: TIMEOUT_MS,
      message: "running once it has run its min_ready",
    });
    const status = reconciler.deploymentStatuses().site;
    assertEquals([status?.revision, status?.phase], [1, "running"]);
    assertEquals(status?.services.web?.state, "running");
    assertEquals(reconciler.deviceStatus(), "ready");
    assertEquals(reconciler.deviceMessage(), undefined);
    const list = await containers(podman);
    assertEquals(list.map((c) => `${c.name} ${c.state} ${c.revision} ${c.device}`), [
      "site_side running 1 pi-1",
      "site_web running 1 pi-1",
    ]);
  });
});

Deno.test("reconciler on real podman: update replaces exactly the changed service", async () => {
  await withLogsOnFailure(async ({ podman, image, port, reconciler }) => {
    const before = await containers(podman);
    reconciler.setDesired("site", entry(2, "second", port, image));
    await waitFor(async () => (await page(port)) === "second\n", {
      timeoutMs: TIMEOUT_MS,
      message: "updated page",
    });
    await waitFor(() => reconciler.deploymentStatuses().site?.phase === "running", {
      timeoutMs: TIMEOUT_MS,
      message: "revision 2 running",
    });
    const after = await containers(podman);
    assertEquals(after.length, 2);
    assertEquals(after[0]?.id, before[0]?.id, "side untouched");
    assert(after[1]?.id !== before[1]?.id, "web replaced");
    assertEquals(after[1]?.revision, "2");
    assertEquals(reconciler.deploymentStatuses().site?.revision, 2);
  });
});

Deno.test("reconciler on real podman: drift by hand — removed and stopped containers come back", async () => {
  await withLogsOnFailure(async ({ podman, port }) => {
    const [, web] = await containers(podman);
    // `podman rm -f` by hand is undone.
    const rm = await podman.cli(["rm", "-f", "-t", "0", "site_web"]);
    assertEquals(rm.code, 0, rm.stderr);
    const recreated = await waitFor(async () => {
      const c = (await containers(podman)).find((c) => c.name === "site_web");
      return c && c.id !== web?.id && c.state === "running" ? c : undefined;
    }, { timeoutMs: TIMEOUT_MS, message: "web recreated after rm -f" });
    assertEquals(
      await waitFor(() => page(port), { timeoutMs: TIMEOUT_MS, message: "page after rm" }),
      "first\n",
    );

    // `podman stop` by hand is undone (the same container is started again).
    const startedBefore = await startedAt(podman, "site_web");
    const stop = await podman.cli(["stop", "-t", "0", "site_web"]);
    // The agent may start the container again before the CLI's own clean-up
    // ran; podman then reports "refusing to clean up" although the stop happened.
    assert(
      stop.code === 0 || stop.stderr.includes("refusing to clean up"),
      `podman stop: ${stop.stderr}`,
    );
    await waitFor(async () => {
      const c = (await containers(podman)).find((c) => c.name === "site_web");
      return c?.id === recreated.id && c.state === "running" &&
        (await startedAt(podman, "site_web")) > startedBefore;
    }, { timeoutMs: TIMEOUT_MS, message: "web started again after stop" });
    assertEquals((await containers(podman)).length, 2);
  });
});

Deno.test("reconciler on real podman: deleting the key removes the deployment", async () => {
  await withLogsOnFailure(async ({ podman, reconciler }) => {
    reconciler.setDesired("site", null);
    await waitFor(async () => (await containers(podman)).length === 0, {
      timeoutMs: TIMEOUT_MS,
      message: "containers removed",
    });
    await waitFor(() => Object.keys(reconciler.deploymentStatuses()).length === 0, {
      timeoutMs: TIMEOUT_MS,
      message: "status gone",
    });
    assertEquals(reconciler.deviceStatus(), "ready");
  });
});
