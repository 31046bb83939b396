/**
 * Reconciler behaviour against InMemoryRuntime, a fake runtime that can be
 * made slow, failing or unavailable on demand. The same loop against a real
 * podman service is in reconciler_podman_test.ts.
 */

import {
  AgentPolicy,
  DesiredState,
  type DesiredStateInput,
  type RegistryConfig,
} from "@drover/contracts";
import { assert, assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { waitFor } from "../../tests/support/wait_for.ts";
import { ManualTimers } from "../../tests/support/manual_timers.ts";
import { InMemoryRuntime } from "../runtime/memory_runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import type { QueueTimers } from "./queue.ts";
import { Reconciler } from "./reconciler.ts";

const IMAGE = "127.0.0.1:5000/demo/web:1.0";

function entry(
  deployment: string,
  revision: number,
  services: DesiredStateInput["score"]["services"] = [{ name: "web", image: IMAGE }],
): DesiredEntry {
  const state = DesiredState.parse({ deployment, score: { type: "PodmanV0", services } });
  return { kind: "valid", deployment, revision, state };
}

interface Harness extends AsyncDisposable {
  runtime: InMemoryRuntime;
  reconciler: Reconciler;
  changes: () => number;
  running: Promise<void>;
}

function start(
  options: {
    runtime?: InMemoryRuntime;
    entries?: DesiredEntry[];
    authoritative?: boolean;
    policy?: Record<string, unknown>;
    registries?: Record<string, RegistryConfig>;
    resyncIntervalMs?: number;
    callTimeoutMs?: number;
    backoff?: { baseMs: number; capMs: number; jitter: number };
    retryTimers?: QueueTimers;
    now?: () => number;
    deviceId?: string;
  } = {},
): Harness {
  const runtime = options.runtime ?? new InMemoryRuntime({ images: [IMAGE] });
  let changes = 0;
  const reconciler = new Reconciler({
    deviceId: options.deviceId ?? "pi-1",
    runtime,
    policy: AgentPolicy.parse(options.policy ?? {}),
    registries: options.registries ?? {},
    ...(options.resyncIntervalMs !== undefined
      ? { resyncIntervalMs: options.resyncIntervalMs }
      : {}),
    ...(options.callTimeoutMs !== undefined ? { callTimeoutMs: options.callTimeoutMs } : {}),
    ...(options.retryTimers !== undefined ? { retryTimers: options.retryTimers } : {}),
    ...(options.now !== undefined ? { now: options.now } : {}),
    backoff: options.backoff ?? { baseMs: 10, capMs: 80, jitter: 0 },
    onChange: () => changes++,
  });
  if (options.entries) {
    reconciler.setSnapshot({
      entries: new Map(options.entries.map((e) => [e.deployment, e])),
      authoritative: options.authoritative ?? true,
    });
  }
  const ac = new AbortController();
  const running = reconciler.run(ac.signal);
  return {
    runtime,
    reconciler,
    changes: () => changes,
    running,
    async [Symbol.asyncDispose]() {
      ac.abort();
      await running;
    },
  };
}

const phase = (h: Harness, d: string) => h.reconciler.deploymentStatuses()[d]?.phase;
const until = (what: string, f: () => unknown) =>
  waitFor(() => f() || undefined, { timeoutMs: 10_000, intervalMs: 5, message: what });

Deno.test("reconciler deploys a desired deployment and reports it running", async () => {
  await using h = start({ entries: [entry("shop", 7)] });
  await h.reconciler.firstPass;
  const [c] = h.runtime.snapshot();
  assertEquals([c?.name, c?.state, c?.revision], ["shop_web", "running", 7]);
  const status = h.reconciler.deploymentStatuses().shop;
  assertEquals(status?.phase, "running");
  assertEquals(status?.revision, 7);
  assertEquals(status?.services.web, {
    container_id: c?.id,
    state: "running",
    image: IMAGE,
    restarts: 0,
  });
  assertEquals(h.reconciler.deviceStatus(), "ready");
  assert(h.changes() > 0, "onChange was called");
  // The tagged image was present: checked once, never pulled.
  assertEquals(h.runtime.calls.pullImage, 0);
});

Deno.test("reconciler is 'starting' until its first pass and ready with nothing to do", async () => {
  const runtime = new InMemoryRuntime();
  runtime.setLatency("listManaged", 50);
  await using h = start({ runtime, entries: [] });
  assertEquals(h.reconciler.deviceStatus(), "starting");
  await h.reconciler.firstPass;
  assertEquals(h.reconciler.deviceStatus(), "ready");
  assertEquals(h.reconciler.deploymentStatuses(), {});
});

Deno.test("50 rapid updates of one key end in the last one, without 50 replacements", async () => {
  await using h = start({ entries: [entry("shop", 1)] });
  await h.reconciler.firstPass;
  for (let i = 2; i <= 51; i++) {
    h.reconciler.setDesired(
      "shop",
      entry("shop", i, [{ name: "web", image: IMAGE, env: { N: String(i) } }]),
    );
  }
  await until("revision 51 running", () => {
    const s = h.reconciler.deploymentStatuses().shop;
    return s?.revision === 51 && s.phase === "running";
  });
  const containers = h.runtime.snapshot();
  assertEquals(containers.length, 1);
  assertEquals(containers[0]?.revision, 51);
  assert(h.runtime.calls.createContainer <= 4, `${h.runtime.calls.createContainer} creates`);
});

Deno.test("a slow pull of one deployment does not hold up another", async () => {
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  runtime.setPull("slow.example.com/big:1", { delayMs: 60_000 });
  await using h = start({
    runtime,
    entries: [entry("slow", 1, [{ name: "big", image: "slow.example.com/big:1" }])],
  });
  await until(
    "slow deployment pulling",
    () => h.reconciler.deploymentStatuses().slow?.services.big?.state === "pulling",
  );
  h.reconciler.setDesired("fast", entry("fast", 2));
  await until("fast deployment running", () => phase(h, "fast") === "running");
  assertEquals(phase(h, "slow"), "pending");
  assertEquals(h.reconciler.deviceStatus(), "degraded");
});

Deno.test("a failing pull fails the deployment with the registry's message and is retried", async () => {
  const runtime = new InMemoryRuntime();
  const image = "127.0.0.1:5000/private/app:2";
  runtime.setPull(image, { error: "unauthorized: authentication required" });
  await using h = start({
    runtime,
    entries: [entry("app", 3, [{ name: "app", image }])],
    registries: { "127.0.0.1:5000": { username: "u", password: "p", tls_verify: false } },
  });
  await until("failed", () => phase(h, "app") === "failed");
  const status = h.reconciler.deploymentStatuses().app;
  assertStringIncludes(status?.message!, "unauthorized: authentication required");
  assertEquals(status?.revision, 3);
  // Retried with backoff (10, 20, 40, 80, 80… ms here), not given up on.
  await until("three pull attempts", () => runtime.pulls.length >= 3);
  assertEquals(runtime.pulls[0], [image, { username: "u", password: "p", tlsVerify: false }]);
  runtime.setPull(image, undefined);
  await until("running after the registry recovers", () => phase(h, "app") === "running");
  assertEquals(h.reconciler.deploymentStatuses().app?.message, undefined);
});

Deno.test("an invalid entry fails only its deployment and touches none of its containers", async () => {
  const retryTimers = new ManualTimers();
  await using h = start({ entries: [entry("shop", 1), entry("blog", 2)], retryTimers });
  await h.reconciler.firstPass;
  const before = h.runtime.snapshot();
  const calls = { ...h.runtime.calls };
  h.reconciler.setDesired("shop", {
    kind: "invalid",
    deployment: "shop",
    revision: 3,
    error: 'score.services[0].image: invalid image "NOPE"',
  });
  await until("shop failed", () => phase(h, "shop") === "failed");
  const status = h.reconciler.deploymentStatuses().shop;
  assertEquals(status?.message, 'score.services[0].image: invalid image "NOPE"');
  assertEquals(status?.revision, 3);
  assertEquals(status?.services.web?.state, "running");
  assertEquals(phase(h, "blog"), "running");
  assertEquals(h.runtime.snapshot(), before);
  assertEquals(h.runtime.calls.createContainer, calls.createContainer);
  assertEquals(h.runtime.calls.removeContainer, calls.removeContainer);
  // Terminal: no retry is scheduled (a failing pass would have scheduled one at 10 ms).
  assertEquals(retryTimers.pending(), []);
});

Deno.test("a policy violation fails the deployment, names the rule and creates nothing", async () => {
  await using h = start({
    entries: [entry("evil", 1, [{ name: "x", image: "evil.example.com/x:1" }])],
    policy: { allowed_registries: ["127.0.0.1:5000"] },
  });
  await h.reconciler.firstPass;
  const status = h.reconciler.deploymentStatuses().evil;
  assertEquals(status?.phase, "failed");
  assertStringIncludes(status?.message!, "policy.allowed_registries");
  assertEquals(h.runtime.snapshot(), []);
  assertEquals(h.runtime.calls.pullImage, 0);
});

Deno.test("max_containers admits the first deployments and retries the rest when room frees up", async () => {
  await using h = start({
    entries: [entry("first", 1), entry("second", 2)],
    policy: { max_containers: 1 },
  });
  await h.reconciler.firstPass;
  assertEquals(phase(h, "first"), "running");
  assertEquals(phase(h, "second"), "failed");
  h.reconciler.setDesired("first", null);
  await until("second admitted", () => phase(h, "second") === "running");
  assertEquals(h.runtime.snapshot().map((c) => c.name), ["second_web"]);
});

Deno.test("a non-authoritative snapshot never removes; an authoritative one does", async () => {
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  {
    await using h = start({ runtime, entries: [entry("old", 1), entry("keep", 2)] });
    await h.reconciler.firstPass;
  }
  // Restart without NATS and without the cache: nothing known.
  await using h = start({ runtime, entries: [entry("keep", 2)], authoritative: false });
  await h.reconciler.firstPass;
  assertEquals(h.runtime.snapshot().map((c) => c.name).sort(), ["keep_web", "old_web"]);
  const old = h.reconciler.deploymentStatuses().old;
  assertEquals(old?.phase, "running");
  assertStringIncludes(old?.message!, "left untouched");
  // An explicit delete is removal even while the view is partial.
  h.reconciler.setDesired("keep", null);
  await until("keep removed", () => !h.runtime.snapshot().some((c) => c.deployment === "keep"));
  assertEquals(h.reconciler.deploymentStatuses().keep, undefined);
  assertEquals(h.runtime.snapshot().map((c) => c.name), ["old_web"]);
  // NATS is back: the KV snapshot is authoritative.
  h.reconciler.setSnapshot({ entries: new Map(), authoritative: true });
  await until("old removed", () => h.runtime.snapshot().length === 0);
  await until("no statuses", () => Object.keys(h.reconciler.deploymentStatuses()).length === 0);
});

Deno.test("drift by hand is undone: removed and stopped containers come back", async () => {
  await using h = start({ entries: [entry("shop", 1)] });
  await h.reconciler.firstPass;
  h.runtime.removeByHand("shop_web");
  await until("recreated", () => h.runtime.snapshot()[0]?.state === "running");
  h.runtime.stopByHand("shop_web");
  await until("restarted", () => h.runtime.snapshot()[0]?.state === "running");
  assertEquals(h.runtime.snapshot().length, 1);
  assertEquals(h.runtime.calls.startContainer, 3);
});

Deno.test("restarts reported by the runtime reach the status", async () => {
  await using h = start({ entries: [entry("shop", 1)] });
  await h.reconciler.firstPass;
  h.runtime.crashAndRestart("shop_web");
  await until(
    "restart counted",
    () => h.reconciler.deploymentStatuses().shop?.services.web?.restarts === 1,
  );
});

Deno.test("whatever a kill -9 left behind converges without duplicates", async () => {
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  const desired = entry("shop", 5, [{ name: "web", image: IMAGE }, { name: "db", image: IMAGE }]);
  {
    // What a first agent created, then died between create and start of "db".
    await using h = start({ runtime, entries: [desired] });
    await h.reconciler.firstPass;
  }
  runtime.stopByHand("shop_db");
  const db = runtime.snapshot().find((c) => c.name === "shop_db")!;
  await runtime.removeContainer(db.id);
  runtime.inject({
    name: "shop_db",
    image: IMAGE,
    env: {},
    ports: [],
    volumes: [],
    restart: "always",
    labels: db.labels,
  }, "created");
  // A stray copy of web under another name (e.g. from an older agent version).
  const web = runtime.snapshot().find((c) => c.name === "shop_web")!;
  runtime.inject({
    name: "shop_web-old",
    image: IMAGE,
    env: {},
    ports: [],
    volumes: [],
    restart: "always",
    labels: { ...web.labels, "drover.spec-hash": "stale" },
  });
  await using h = start({ runtime, entries: [desired] });
  await h.reconciler.firstPass;
  const names = h.runtime.snapshot().map((c) => `${c.name}:${c.state}`).sort();
  assertEquals(names, ["shop_db:running", "shop_web:running"]);
  assertEquals(h.reconciler.deploymentStatuses().shop?.phase, "running");
});

Deno.test("a name held by a container Drover does not manage fails clearly", async () => {
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  runtime.inject({
    name: "shop_web",
    image: IMAGE,
    env: {},
    ports: [],
    volumes: [],
    restart: "no",
    labels: { owner: "someone" },
  });
  await using h = start({ runtime, entries: [entry("shop", 1)] });
  await until("failed", () => phase(h, "shop") === "failed");
  assertStringIncludes(h.reconciler.deploymentStatuses().shop?.message!, "does not manage");
  assertEquals(runtime.snapshot().map((c) => c.labels.owner), ["someone"]);
});

Deno.test(":latest is pulled when creating, not on quiet passes", async () => {
  const qualified = "docker.io/library/busybox:latest";
  const runtime = new InMemoryRuntime({ images: [qualified] });
  await using h = start({
    runtime,
    entries: [entry("app", 1, [{ name: "a", image: "busybox" }])],
    resyncIntervalMs: 20,
  });
  await h.reconciler.firstPass;
  // The runtime is only ever given the fully qualified name.
  assertEquals(runtime.pulls.map(([i]) => i), [qualified]);
  await until("created from the qualified name", () => runtime.snapshot()[0]?.image === qualified);
  const lists = runtime.calls.listManaged;
  await until("a few resyncs", () => runtime.calls.listManaged >= lists + 4);
  assertEquals(runtime.pulls.length, 1);
  // Offline with a local copy: the failed always-pull does not stop the create.
  runtime.setPull(qualified, { error: "dial tcp: no route to host" });
  runtime.removeByHand("app_a");
  await until("recreated from the local copy", () => runtime.snapshot()[0]?.state === "running");
  assertEquals(runtime.pulls.length, 2);
});

Deno.test("an unavailable runtime keeps statuses, degrades the device and recovers", async () => {
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  await using h = start({ runtime, entries: [entry("shop", 1)] });
  await h.reconciler.firstPass;
  runtime.setAvailable(false);
  h.reconciler.setDesired("blog", entry("blog", 2));
  await until("degraded", () => h.reconciler.deviceStatus() === "degraded");
  assertEquals(phase(h, "shop"), "running");
  // The new deployment cannot progress, and says why instead of being absent.
  await until("blog pending", () => phase(h, "blog") === "pending");
  const blog = h.reconciler.deploymentStatuses().blog;
  assertEquals(blog?.revision, 2);
  assertStringIncludes(blog?.message ?? "", "container runtime unreachable");
  runtime.setAvailable(true);
  await until("blog running", () => phase(h, "blog") === "running");
  await until("ready", () => h.reconciler.deviceStatus() === "ready");
});

Deno.test("firstPass resolves even when the runtime is down from the start", async () => {
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  runtime.setAvailable(false);
  await using h = start({ runtime, entries: [entry("shop", 1)] });
  await h.reconciler.firstPass;
  assertEquals(h.reconciler.deviceStatus(), "degraded");
  runtime.setAvailable(true);
  await until("running once back", () => phase(h, "shop") === "running");
});

Deno.test("an update changing only the revision replaces nothing", async () => {
  await using h = start({ entries: [entry("shop", 1)] });
  await h.reconciler.firstPass;
  const [before] = h.runtime.snapshot();
  h.reconciler.setDesired("shop", entry("shop", 9));
  await until("revision 9 reported", () => h.reconciler.deploymentStatuses().shop?.revision === 9);
  assertEquals(h.reconciler.deploymentStatuses().shop?.phase, "running");
  assertEquals(h.runtime.snapshot()[0]?.id, before?.id);
});

Deno.test("round trips: one list per plan round, not per container; one image check per image", async () => {
  const services = ["a", "b", "c", "d", "e"].map((name) => ({ name, image: IMAGE }));
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  await using h = start({ runtime, entries: [entry("many", 1, services)] });
  await h.reconciler.firstPass;
  assertEquals(phase(h, "many"), "running");
  assertEquals(runtime.calls.createContainer, 5);
  assertEquals(runtime.calls.startContainer, 5);
  assertEquals(runtime.calls.hasImage, 1);
  // The first resync, then the pass: observe, act, observe again. (Events from
  // the creates may add one confirming pass.)
  assert(runtime.calls.listManaged <= 4, `${runtime.calls.listManaged} lists`);
});

Deno.test("a runtime that never answers counts as unavailable, not as a stuck deployment", async () => {
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  runtime.setLatency("listManaged", 60_000);
  await using h = start({ runtime, entries: [entry("shop", 1)], callTimeoutMs: 50 });
  await h.reconciler.firstPass;
  assertEquals(h.reconciler.deviceStatus(), "degraded");
  runtime.setLatency("listManaged", 0);
  await until("running once it answers", () => phase(h, "shop") === "running");
  assertEquals(h.reconciler.deviceStatus(), "ready");
});

/**
 * A deployment whose image pull fails ("manifest unknown"), retried with backoff from
 * `baseMs` (doubling up to a minute, no jitter) on a manual clock; returned once it failed.
 */
async function failingPull(baseMs: number) {
  const runtime = new InMemoryRuntime();
  const image = "127.0.0.1:5000/app:1";
  runtime.setPull(image, { error: "manifest unknown" });
  const retryTimers = new ManualTimers();
  const h = start({
    runtime,
    entries: [entry("app", 1, [{ name: "app", image }])],
    backoff: { baseMs, capMs: 60_000, jitter: 0 },
    retryTimers,
  });
  try {
    await until("failed", () => phase(h, "app") === "failed");
  } catch (e) {
    await h[Symbol.asyncDispose]();
    throw e;
  }
  return { runtime, image, retryTimers, h };
}

Deno.test("a failing deployment waits out its backoff, but a new value is tried at once", async () => {
  const { runtime, retryTimers, h: harness } = await failingPull(60_000);
  await using h = harness;
  // The one retry is a minute away, and the clock does not move until the test says so.
  assertEquals(retryTimers.pending(), [60_000]);
  assertEquals(runtime.pulls.length, 1);
  // The operator fixes the tag: no need to wait for the backoff.
  runtime.addImage(IMAGE);
  h.reconciler.setDesired("app", entry("app", 2, [{ name: "app", image: IMAGE }]));
  await until("running with the new value", () => phase(h, "app") === "running");
  assertEquals(h.reconciler.deploymentStatuses().app?.revision, 2);
});

Deno.test("the failing deployment's retry comes when its time comes, not before", async () => {
  const { runtime, retryTimers, h: harness } = await failingPull(1_000);
  await using _h = harness;
  assertEquals([retryTimers.pending(), runtime.pulls.length], [[1_000], 1]);
  await retryTimers.advance(999);
  assertEquals(runtime.pulls.length, 1);
  await retryTimers.advance(1);
  await until("second attempt", () => runtime.pulls.length === 2);
  await until("next retry doubled", () => retryTimers.pending()[0] === 2_000);
});

Deno.test("a success starts the backoff over: the next failure waits the base delay again", async () => {
  const { runtime, image, retryTimers, h: harness } = await failingPull(1_000);
  await using h = harness;
  await retryTimers.advance(1_000);
  await until("the retry after that doubled", () => retryTimers.pending()[0] === 2_000);
  runtime.setPull(image, undefined); // the registry is back
  await retryTimers.advance(2_000);
  await until("running", () => phase(h, "app") === "running");
  assertEquals(retryTimers.pending(), []);
  // The same value fails again (the image and the container gone, the registry down again).
  runtime.setPull(image, { error: "manifest unknown" });
  runtime.removeImage(image);
  runtime.removeByHand("app_app");
  await until("failed again", () => phase(h, "app") === "failed");
  assertEquals(retryTimers.pending(), [1_000], "not 4 000: the success reset the count");
});

Deno.test("a crash loop fails the deployment with exit code and restarts until it runs a while", async () => {
  let now = Date.now(); // the in-memory runtime stamps starts with the real clock
  await using h = start({ entries: [entry("shop", 1)], now: () => now });
  await h.reconciler.firstPass;
  h.runtime.crashAndRestart("shop_web", 3);
  await until(
    "one restart seen",
    () => h.reconciler.deploymentStatuses().shop?.services.web?.restarts === 1,
  );
  // One restart is not a loop yet.
  assertEquals(phase(h, "shop"), "running");
  h.runtime.crashAndRestart("shop_web", 3);
  await until("failed", () => phase(h, "shop") === "failed");
  const status = h.reconciler.deploymentStatuses().shop;
  assertStringIncludes(status?.message!, "exit code 3, 2 restarts");
  assertEquals(h.reconciler.deviceStatus(), "degraded");
  assertStringIncludes(h.reconciler.deviceMessage()!, 'shop failed: service "web" keeps exiting');
  // 30 s later without another restart (a new value makes it look again): running.
  now = Date.now() + 30_000;
  h.reconciler.setDesired("shop", entry("shop", 2));
  await until("running again", () => phase(h, "shop") === "running");
  assertEquals(h.reconciler.deviceMessage(), undefined);
});

Deno.test("containers are labelled with the device; another device's are never touched", async () => {
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  const theirs = (name: string, deployment: string, labels: Record<string, string>) =>
    runtime.inject({
      name,
      image: IMAGE,
      env: {},
      ports: [],
      volumes: [],
      restart: "always",
      labels: {
        "drover.managed": "true",
        "drover.deployment": deployment,
        "drover.service": "web",
        "drover.revision": "1",
        "drover.spec-hash": "other",
        ...labels,
      },
    });
  theirs("blog_web", "blog", { "drover.device": "pi-2" });
  // Made by an agent before device labels, for a deployment this device never had.
  theirs("wiki_web", "wiki", {});
  await using h = start({ runtime, entries: [entry("shop", 1)], deviceId: "pi-1" });
  await h.reconciler.firstPass;
  const byName = Object.fromEntries(runtime.snapshot().map((c) => [c.name, c]));
  assertEquals(byName.shop_web?.labels["drover.device"], "pi-1");
  assertEquals(byName.blog_web?.state, "running");
  assertEquals(byName.wiki_web?.state, "running");
  // Not ours: not reported, and an authoritative empty view removes only ours.
  assertEquals(Object.keys(h.reconciler.deploymentStatuses()), ["shop"]);
  h.reconciler.setSnapshot({ entries: new Map(), authoritative: true });
  await until("shop removed", () => !runtime.snapshot().some((c) => c.name === "shop_web"));
  assertEquals(runtime.snapshot().map((c) => c.name).sort(), ["blog_web", "wiki_web"]);
});

Deno.test("an unlabelled container of a desired deployment is adopted in place, then removable", async () => {
  const runtime = new InMemoryRuntime({ images: [IMAGE] });
  {
    // What an agent from before device labels left: shop_web without drover.device.
    await using h = start({ runtime, entries: [entry("shop", 1)] });
    await h.reconciler.firstPass;
  }
  const [old] = runtime.snapshot();
  assert(old !== undefined, "the first agent left no container");
  await runtime.removeContainer(old.id);
  const { "drover.device": _, ...unlabelled } = old.labels;
  const id = runtime.inject({
    name: "shop_web",
    image: IMAGE,
    env: {},
    ports: [],
    volumes: [],
    restart: "always",
    labels: unlabelled,
  });
  await using h = start({ runtime, entries: [entry("shop", 1)], deviceId: "pi-1" });
  await h.reconciler.firstPass;
  assertEquals(phase(h, "shop"), "running");
  assertEquals(runtime.snapshot().map((c) => c.id), [id], "adopted, not replaced");
  // It stays this device's: deleting the deployment removes it.
  h.reconciler.setDesired("shop", null);
  await until("removed", () => runtime.snapshot().length === 0);
});

Deno.test("a job runs first; the app waits, then starts; a failed job fails with code and output", async () => {
  const services: DesiredStateInput["score"]["services"] = [
    { name: "migrate", image: IMAGE, restart: "no" },
    {
      name: "web",
      image: IMAGE,
      depends_on: { migrate: { condition: "service_completed_successfully" } },
    },
  ];
  await using h = start({ entries: [entry("shop", 1, services)] });
  await h.reconciler.firstPass;
  assertEquals(h.runtime.snapshot().map((c) => c.name), ["shop_migrate"]);
  const waiting = h.reconciler.deploymentStatuses().shop;
  assertEquals(waiting?.phase, "pending");
  assertEquals(waiting?.message, "web waits for migrate (service_completed_successfully)");
  assertEquals(waiting?.services.web?.state, "missing");
  h.runtime.exitByItself("shop_migrate", 0, ["migrated"]);
  await until("web created after the job", () => phase(h, "shop") === "running");
  assertEquals(h.runtime.snapshot().map((c) => c.name).sort(), ["shop_migrate", "shop_web"]);
  assertEquals(h.reconciler.deploymentStatuses().shop?.services.migrate?.exit_code, 0);
  // A network for the deployment, named for the device; the job is not run again.
  assertEquals([...h.runtime.networks.keys()], ["drover-pi-1_shop"]);
  assertEquals(h.runtime.calls.createContainer, 2);

  // Revision 2: the job runs again (same spec) and fails; web keeps running, is not replaced.
  h.reconciler.setDesired("shop", entry("shop", 2, services));
  await until("job rerun", () => h.runtime.snapshot().some((c) => c.revision === 2));
  h.runtime.exitByItself("shop_migrate", 3, ["ERROR: relation users does not exist"]);
  await until("failed", () => phase(h, "shop") === "failed");
  const failed = h.reconciler.deploymentStatuses().shop;
  assertStringIncludes(failed?.message ?? "", 'job "migrate" exited with code 3');
  assertStringIncludes(failed?.message ?? "", "ERROR: relation users does not exist");
  assertEquals(failed?.services.migrate?.exit_code, 3);
  assertEquals(h.runtime.snapshot().find((c) => c.name === "shop_web")?.state, "running");
  const creates = h.runtime.calls.createContainer;
  await new Promise((resolve) => setTimeout(resolve, 200)); // retries only look again
  assertEquals(h.runtime.calls.createContainer, creates, "the failed job is not rerun");
});

Deno.test("a removed deployment's network goes after its containers", async () => {
  await using h = start({ entries: [entry("shop", 1)] });
  await h.reconciler.firstPass;
  assertEquals([...h.runtime.networks.keys()], ["drover-pi-1_shop"]);
  h.reconciler.setDesired("shop", null);
  await until("network removed", () => h.runtime.networks.size === 0);
  assertEquals(h.runtime.snapshot(), []);
});
