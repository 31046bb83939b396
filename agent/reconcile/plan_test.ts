import { DesiredState, type DesiredStateInput, LABELS } from "@drover/contracts";
import { assert, assertEquals, assertThrows } from "../../tests/support/assert.ts";
import type { ObservedContainer } from "../runtime/runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import {
  type Action,
  deploymentNetworkName,
  isAlwaysPull,
  plan,
  type PlanOptions,
  toContainerSpec,
} from "./plan.ts";
import { serviceHashes } from "./spec_hashes.ts";

// ---- helpers -------------------------------------------------------------

function entry(
  deployment: string,
  revision: number,
  services: DesiredStateInput["score"]["services"],
): DesiredEntry {
  const state = DesiredState.parse({ deployment, score: { type: "PodmanV0", services } });
  return { kind: "valid", deployment, revision, state };
}

function desiredOf(...entries: DesiredEntry[]): Map<string, DesiredEntry> {
  return new Map(entries.map((e) => [e.deployment, e]));
}

function opts(
  desired: Map<string, DesiredEntry>,
  extra: Partial<PlanOptions> = {},
): PlanOptions {
  return { removable: true, specHashes: serviceHashes(desired.values()), ...extra };
}

let nextId = 0;
/** The value of a label the planner must have set; a missing one fails the test. */
function label(labels: Readonly<Record<string, string>>, key: string): string {
  const value = labels[key];
  if (value === undefined) throw new Error(`the plan created a container without label ${key}`);
  return value;
}

/** The spec hash the planner computed for `key`; a missing one fails the test. */
function hashOf(hashes: ReadonlyMap<string, string> | undefined, key: string): string {
  const hash = hashes?.get(key);
  if (hash === undefined) throw new Error(`no spec hash for ${key}`);
  return hash;
}

function observed(
  deployment: string,
  service: string,
  fields: Partial<ObservedContainer> = {},
): ObservedContainer {
  const id = fields.id ?? `c${++nextId}`;
  return {
    id,
    name: `${deployment}_${service}`,
    deployment,
    service,
    revision: 1,
    specHash: "old",
    state: "running",
    image: "busybox:1",
    labels: {},
    ...fields,
  };
}

/** Applies actions to a simulated container list, as a runtime would. */
function apply(list: ObservedContainer[], actions: readonly Action[]): ObservedContainer[] {
  let out = [...list];
  for (const a of actions) {
    switch (a.action) {
      case "pull":
        break;
      case "create":
        assert(!out.some((c) => c.name === a.spec.name), `name ${a.spec.name} taken`);
        out.push({
          id: `c${++nextId}`,
          name: a.spec.name,
          deployment: label(a.spec.labels, LABELS.deployment),
          service: label(a.spec.labels, LABELS.service),
          revision: Number(a.spec.labels[LABELS.revision]),
          specHash: label(a.spec.labels, LABELS.specHash),
          state: "running",
          image: a.spec.image,
          labels: a.spec.labels,
        });
        break;
      case "start":
        out = out.map((c) => (c.id === a.containerId ? { ...c, state: "running" } : c));
        break;
      case "remove":
        out = out.filter((c) => c.id !== a.containerId);
        break;
    }
  }
  return out;
}

/** Plans and applies until nothing is left to do; returns the steps taken. */
function converge(
  desired: Map<string, DesiredEntry>,
  start: ObservedContainer[],
  options: PlanOptions,
): { final: ObservedContainer[]; steps: Action[][] } {
  let current = start;
  const steps: Action[][] = [];
  for (let i = 0; i < 5; i++) {
    const actions = plan(desired, current, options);
    if (actions.length === 0) return { final: current, steps };
    steps.push(actions);
    current = apply(current, actions);
  }
  throw new Error(`no convergence after 5 steps: ${JSON.stringify(steps.at(-1))}`);
}

const summary = (actions: readonly Action[]) =>
  actions.map((a) => `${a.action} ${a.deployment}/${a.service} (${a.reason})`);

const web = { name: "web", image: "127.0.0.1:5000/demo/web:1.0" };

// ---- tests -----------------------------------------------------------------

Deno.test("toContainerSpec names, labels and parses ports and volumes", () => {
  const e = entry("shop", 7, [{
    ...web,
    env: { GREETING: "hi" },
    ports: ["127.0.0.1:8080:80", "53:53/udp", "9000"],
    volumes: ["/srv/data:/data:ro", "cache:/cache"],
    labels: { team: "a" },
    command: ["httpd", "-f"],
    restart: "on-failure",
  }]);
  assert(e.kind === "valid");
  const [service] = e.state.score.services;
  assert(service !== undefined);
  const spec = toContainerSpec("shop", 7, service, "abc");
  assertEquals(spec, {
    name: "shop_web",
    image: web.image,
    command: ["httpd", "-f"],
    env: { GREETING: "hi" },
    ports: [
      { hostIp: "127.0.0.1", hostPort: 8080, containerPort: 80, protocol: "tcp" },
      { hostPort: 53, containerPort: 53, protocol: "udp" },
      { containerPort: 9000, protocol: "tcp" },
    ],
    volumes: [
      { type: "bind", source: "/srv/data", target: "/data", readOnly: true },
      { type: "volume", source: "cache", target: "/cache", readOnly: false },
    ],
    restart: "on-failure",
    labels: {
      team: "a",
      "drover.managed": "true",
      "drover.deployment": "shop",
      "drover.service": "web",
      "drover.revision": "7",
      "drover.kv-revision": "7",
      "drover.spec-hash": "abc",
    },
    stopTimeoutSeconds: 10,
    network: {
      mode: "bridge",
      name: "drover_shop",
      aliases: ["web"],
      labels: { "drover.managed": "true", "drover.deployment": "shop" },
    },
    volumeLabels: { "drover.managed": "true", "drover.deployment": "shop" },
    // Logs are capped without being asked.
    log: { driver: "k8s-file", maxSizeBytes: 10 * 1024 * 1024 },
  });
  // With a deployment revision, drover.revision is that one (what apply printed and status
  // shows); the KV revision keeps its own label.
  const labelled = toContainerSpec("shop", 7, service, "abc", undefined, [], 3).labels;
  assertEquals([labelled["drover.revision"], labelled["drover.kv-revision"]], ["3", "7"]);
});

Deno.test("toContainerSpec: the health check in ms, the stop timeout in seconds", () => {
  const e = entry("shop", 7, [{
    ...web,
    healthcheck: { test: ["CMD-SHELL", "wget -q -O- localhost"], interval: "1m30s", retries: 2 },
    stop_timeout: "2s",
  }]);
  assert(e.kind === "valid");
  const [service] = e.state.score.services;
  assert(service !== undefined);
  const spec = toContainerSpec("shop", 7, service, "abc");
  assertEquals(spec.healthcheck, {
    test: ["CMD-SHELL", "wget -q -O- localhost"],
    intervalMs: 90_000,
    timeoutMs: 30_000,
    retries: 2,
    startPeriodMs: 0,
  });
  assertEquals(spec.stopTimeoutSeconds, 2);
});

Deno.test("toContainerSpec refuses strings the schema would have refused", () => {
  assertThrows(
    () => toContainerSpec("a", 1, { ...web, ports: ["99999:1"], restart: "always" }, "h"),
    Error,
    "out of range",
  );
});

Deno.test("isAlwaysPull: latest and untagged yes, tags and digests no", () => {
  assertEquals(isAlwaysPull("busybox"), true);
  assertEquals(isAlwaysPull("busybox:latest"), true);
  assertEquals(isAlwaysPull("127.0.0.1:5000/a/b"), true);
  assertEquals(isAlwaysPull("127.0.0.1:5000/a/b:1.2"), false);
  assertEquals(isAlwaysPull(`busybox@sha256:${"a".repeat(64)}`), false);
  assertEquals(isAlwaysPull(`busybox:latest@sha256:${"a".repeat(64)}`), false);
});

Deno.test("plan creates what is missing, pulling first, and then has nothing to do", () => {
  const desired = desiredOf(entry("shop", 3, [web, { name: "db", image: "db:latest" }]));
  const o = opts(desired);
  const actions = plan(desired, [], o);
  assertEquals(summary(actions), [
    "pull shop/web (missing)",
    "create shop/web (missing)",
    "pull shop/db (missing)",
    "create shop/db (missing)",
  ]);
  const pulls = actions.filter((a) => a.action === "pull");
  assertEquals(pulls.map((p) => p.policy), ["if-missing", "always"]);
  const { final, steps } = converge(desired, [], o);
  assertEquals(steps.length, 1);
  assertEquals(final.map((c) => c.name).sort(), ["shop_db", "shop_web"]);
});

Deno.test("plan replaces a container whose spec hash differs: pull, remove, create", () => {
  const desired = desiredOf(entry("shop", 5, [web]));
  const o = opts(desired);
  const old = observed("shop", "web", { specHash: "stale", revision: 4 });
  const actions = plan(desired, [old], o);
  assertEquals(summary(actions), [
    "pull shop/web (spec-changed)",
    "remove shop/web (spec-changed)",
    "create shop/web (spec-changed)",
  ]);
  const { final } = converge(desired, [old], o);
  assertEquals(final.length, 1);
  assertEquals(final[0]?.revision, 5);
});

Deno.test("plan does not replace on a revision-only change", () => {
  const desired = desiredOf(entry("shop", 9, [web]));
  const o = opts(desired);
  const running = observed("shop", "web", {
    specHash: hashOf(o.specHashes, "shop_web"),
    revision: 2,
  });
  assertEquals(plan(desired, [running], o), []);
});

Deno.test("plan starts stopped containers according to the restart policy", () => {
  const desired = desiredOf(
    entry("app", 1, [
      { name: "always", image: "x:1" },
      { name: "unless", image: "x:1", restart: "unless-stopped" },
      { name: "never", image: "x:1", restart: "no" },
      { name: "onfail", image: "x:1", restart: "on-failure" },
      { name: "fresh", image: "x:1", restart: "no" },
    ]),
  );
  const o = opts(desired);
  const h = (s: string) => o.specHashes.get(`app_${s}`)!;
  const list = [
    observed("app", "always", { specHash: h("always"), state: "exited" }),
    observed("app", "unless", { specHash: h("unless"), state: "stopped" }),
    observed("app", "never", { specHash: h("never"), state: "exited" }),
    observed("app", "onfail", { specHash: h("onfail"), state: "exited" }),
    observed("app", "fresh", { specHash: h("fresh"), state: "created" }),
  ];
  assertEquals(summary(plan(desired, list, o)), [
    "start app/always (stopped)",
    "start app/unless (stopped)",
    "start app/fresh (stopped)",
  ]);
});

Deno.test("plan leaves transitional and paused containers alone", () => {
  const desired = desiredOf(entry("app", 1, [web]));
  const o = opts(desired);
  for (const state of ["stopping", "removing", "paused"]) {
    const c = observed("app", "web", { specHash: hashOf(o.specHashes, "app_web"), state });
    assertEquals(plan(desired, [c], o), [], state);
  }
});

Deno.test("plan removes deployments that are gone only when removal is allowed", () => {
  const desired = desiredOf(entry("keep", 1, [web]));
  const base = opts(desired);
  const list = [
    observed("keep", "web", { specHash: hashOf(base.specHashes, "keep_web") }),
    observed("gone", "a"),
    observed("gone", "b", { state: "exited" }),
    observed("other", "a"),
  ];
  assertEquals(summary(plan(desired, list, base)), [
    "remove gone/a (deployment-removed)",
    "remove gone/b (deployment-removed)",
    "remove other/a (deployment-removed)",
  ]);
  assertEquals(plan(desired, list, { ...base, removable: false }), []);
  assertEquals(summary(plan(desired, list, { ...base, removable: new Set(["other"]) })), [
    "remove other/a (deployment-removed)",
  ]);
});

Deno.test("plan removes duplicates and keeps the container that already fits", () => {
  const desired = desiredOf(entry("shop", 2, [web]));
  const o = opts(desired);
  const hash = o.specHashes.get("shop_web")!;
  const good = observed("shop", "web", { id: "b-good", specHash: hash });
  const list = [
    observed("shop", "web", { id: "a-old", specHash: "old" }),
    good,
    observed("shop", "web", { id: "c-stopped", specHash: hash, state: "exited" }),
  ];
  const actions = plan(desired, list, o);
  assertEquals(summary(actions), [
    "remove shop/web (duplicate)",
    "remove shop/web (duplicate)",
  ]);
  const { final } = converge(desired, list, o);
  assertEquals(final.map((c) => c.id), ["b-good"]);
});

Deno.test("plan removes services that left the deployment before creating new ones", () => {
  const desired = desiredOf(entry("shop", 4, [{ name: "www", image: "x:2", ports: ["8080:80"] }]));
  const o = opts(desired);
  const list = [observed("shop", "web", { specHash: "whatever" })];
  assertEquals(summary(plan(desired, list, o)), [
    "remove shop/web (service-removed)",
    "pull shop/www (missing)",
    "create shop/www (missing)",
  ]);
});

Deno.test("plan touches nothing of an invalid or policy-blocked deployment", () => {
  const bad: DesiredEntry = { kind: "invalid", deployment: "bad", revision: 3, error: "nope" };
  const blocked = entry("blocked", 4, [web]);
  const desired = desiredOf(bad, blocked);
  const o = opts(desired, { blocked: new Set(["blocked"]) });
  const list = [
    observed("bad", "web", { state: "exited" }),
    observed("blocked", "web", { specHash: "old" }),
  ];
  assertEquals(plan(desired, list, o), []);
});

Deno.test("plan converges from arbitrary starting states in at most two steps", () => {
  const desired = desiredOf(
    entry("a", 10, [web, { name: "db", image: "db:1", restart: "no" }]),
    entry("b", 11, [{ name: "x", image: "x:latest" }]),
  );
  const o = opts(desired);
  const states = ["running", "exited", "created", "stopped"];
  const services = ["web", "db", "x", "old"];
  const deployments = ["a", "b", "z"];
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 300; round++) {
    const start: ObservedContainer[] = [];
    for (let i = rand(6); i > 0; i--) {
      // rand(n) is below n, and each list is at least that long.
      const deployment = deployments[rand(3)]!;
      const service = services[rand(4)]!;
      const real = o.specHashes.get(`${deployment}_${service}`);
      start.push(
        observed(deployment, service, {
          specHash: real && rand(2) ? real : "stale",
          state: states[rand(4)]!,
        }),
      );
    }
    const { final, steps } = converge(desired, start, o);
    assert(steps.length <= 2, `round ${round}: ${steps.length} steps`);
    // One container per desired service, nothing else, every always-service running.
    assertEquals(final.map((c) => c.name).sort(), ["a_db", "a_web", "b_x"]);
    for (const c of final) {
      assertEquals(c.specHash, o.specHashes.get(c.name));
      if (c.service !== "db") assertEquals(c.state, "running");
    }
  }
});

// ---- workloads: resources, network, ordering, jobs --------------------------

Deno.test("toContainerSpec: resources, process options, devices and log rotation", () => {
  const e = entry("shop", 7, [{
    ...web,
    mem_limit: "64m",
    cpus: "0.5",
    pids_limit: 50,
    user: "1000:1000",
    working_dir: "/app",
    read_only: true,
    tmpfs: "/tmp:size=1m",
    cap_add: ["net_admin"],
    cap_drop: ["all"],
    devices: ["/dev/null:/dev/sensor:rw"],
    logging: { options: { "max-size": "1m", "max-file": "3" } },
  }]);
  assert(e.kind === "valid");
  const [service] = e.state.score.services;
  assert(service !== undefined);
  const spec = toContainerSpec("shop", 7, service, "abc", "pi-1");
  assertEquals(spec.memoryBytes, 64 * 1024 * 1024);
  assertEquals(spec.cpus, 0.5);
  assertEquals(spec.pidsLimit, 50);
  assertEquals(spec.user, "1000:1000");
  assertEquals(spec.workingDir, "/app");
  assertEquals(spec.readOnly, true);
  assertEquals(spec.tmpfs, [{ target: "/tmp", options: ["size=1m"] }]);
  assertEquals(spec.capAdd, ["CAP_NET_ADMIN"]);
  assertEquals(spec.capDrop, ["ALL"]);
  assertEquals(spec.devices, [{ host: "/dev/null", container: "/dev/sensor", permissions: "rw" }]);
  assertEquals(spec.log, { driver: "k8s-file", maxSizeBytes: 1024 * 1024 });
  assertEquals(spec.network, {
    mode: "bridge",
    name: "drover-pi-1_shop",
    aliases: ["web"],
    labels: { "drover.managed": "true", "drover.deployment": "shop", "drover.device": "pi-1" },
  });
  const host = entry("shop", 7, [{ ...web, network_mode: "host", logging: { driver: "none" } }]);
  assert(host.kind === "valid");
  const hostSpec = toContainerSpec("shop", 7, host.state.score.services[0]!, "abc", "pi-1");
  assertEquals(hostSpec.network, { mode: "host" });
  assertEquals(hostSpec.log, { driver: "none" });
});

Deno.test("deploymentNetworkName: device and deployment, unambiguous, hashed when too long", () => {
  assertEquals(deploymentNetworkName("pi-1", "shop"), "drover-pi-1_shop");
  // "a-b" + "c" and "a" + "b-c" must not meet in one name.
  assert(deploymentNetworkName("a-b", "c") !== deploymentNetworkName("a", "b-c"));
  const long = deploymentNetworkName("d".repeat(63), "x".repeat(63));
  const other = deploymentNetworkName("d".repeat(63), `${"x".repeat(62)}y`);
  assertEquals(long.length, 63);
  assert(long.startsWith("drover-ddd"));
  assert(long !== other, "names that differ only at the end still differ");
  assertEquals(long, deploymentNetworkName("d".repeat(63), "x".repeat(63)), "stable");
});

Deno.test("spec hashes ignore depends_on; every other new field changes only its service", () => {
  const a = entry("shop", 1, [web, { name: "db", image: "busybox:1" }]);
  const b = entry("shop", 2, [{ ...web, depends_on: ["db"] }, { name: "db", image: "busybox:1" }]);
  const c = entry("shop", 3, [{ ...web, mem_limit: "64m" }, { name: "db", image: "busybox:1" }]);
  const [ha, hb, hc] = [a, b, c].map((e) => serviceHashes([e]));
  assertEquals(hb, ha);
  assert(hashOf(hc, "shop_web") !== hashOf(ha, "shop_web"));
  assertEquals(hashOf(hc, "shop_db"), hashOf(ha, "shop_db"));
});

const migrate = { name: "migrate", image: "busybox:1", restart: "no" as const };
const app = {
  ...web,
  depends_on: { migrate: { condition: "service_completed_successfully" as const } },
};

Deno.test("a service waits for its dependencies; a job runs first and once per revision", () => {
  const desired = desiredOf(entry("shop", 1, [app, migrate]));
  const o = opts(desired);
  // Only the job is created while it has not completed.
  assertEquals(summary(plan(desired, [], o)), [
    "pull shop/migrate (missing)",
    "create shop/migrate (missing)",
  ]);
  const hash = hashOf(o.specHashes, "shop_migrate");
  const running = observed("shop", "migrate", { specHash: hash, state: "running" });
  assertEquals(plan(desired, [running], o), []);
  const failed = { ...running, state: "exited", exitCode: 3, startedAtMs: 1 };
  assertEquals(plan(desired, [failed], o), [], "a failed job is not rerun, the app waits");
  const done = { ...running, state: "exited", exitCode: 0, startedAtMs: 1 };
  assertEquals(summary(plan(desired, [done], o)), [
    "pull shop/web (missing)",
    "create shop/web (missing)",
  ]);
  // A new revision reruns the job even though its spec is the same; the app keeps running.
  const next = desiredOf(entry("shop", 2, [app, migrate]));
  const appRunning = observed("shop", "web", {
    specHash: hashOf(o.specHashes, "shop_web"),
    state: "running",
  });
  assertEquals(summary(plan(next, [done, appRunning], opts(next))), [
    "pull shop/migrate (new-revision)",
    "remove shop/migrate (new-revision)",
    "create shop/migrate (new-revision)",
  ]);
});

Deno.test("service_healthy waits for a passing health check; service_started for a start", () => {
  const db = { name: "db", image: "busybox:1", healthcheck: { test: ["CMD", "true"] } };
  const healthy = entry("shop", 1, [
    { ...web, depends_on: { db: { condition: "service_healthy" } } },
    db,
  ]);
  const desired = desiredOf(healthy);
  const o = opts(desired);
  const dbHash = hashOf(o.specHashes, "shop_db");
  const starting = observed("shop", "db", { specHash: dbHash, health: "starting" });
  assertEquals(plan(desired, [starting], o), []);
  assertEquals(summary(plan(desired, [{ ...starting, health: "healthy" }], o)), [
    "pull shop/web (missing)",
    "create shop/web (missing)",
  ]);
  const started = desiredOf(entry("shop", 1, [{ ...web, depends_on: ["db"] }, db]));
  const so = opts(started);
  assertEquals(summary(plan(started, [], so)), [
    "pull shop/db (missing)",
    "create shop/db (missing)",
  ]);
  const created = observed("shop", "db", { specHash: dbHash, state: "created" });
  assertEquals(summary(plan(started, [created], so)), ["start shop/db (stopped)"]);
  assertEquals(summary(plan(started, [{ ...created, state: "running" }], so)), [
    "pull shop/web (missing)",
    "create shop/web (missing)",
  ]);
});

Deno.test("a removed deployment's network goes after its containers, only when removable", () => {
  const c = observed("gone", "web");
  const networks = new Map([["gone", ["drover-pi-1_gone"]]]);
  assertEquals(
    summary(plan(new Map(), [c], { removable: true, specHashes: new Map(), networks })),
    ["remove gone/web (deployment-removed)", "remove-network gone/ (deployment-removed)"],
  );
  // A network left alone by a crash is removed on its own.
  assertEquals(
    summary(plan(new Map(), [], { removable: true, specHashes: new Map(), networks })),
    ["remove-network gone/ (deployment-removed)"],
  );
  assertEquals(plan(new Map(), [c], { removable: false, specHashes: new Map(), networks }), []);
});
