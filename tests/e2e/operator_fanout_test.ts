/**
 * The operator service against a real nats-server, with no agents: device
 * statuses are written by the test itself (standing in for agents, which
 * other e2e tests run for real) and device labels are registered in the
 * operator's device registry, so the fan-out rules can be checked key by key
 * and revision by revision.
 */

import type { KV } from "@nats-io/kv";
import {
  type AgentStatus,
  BUCKET_AGENT_STATUS,
  BUCKET_DEPLOYMENTS,
  BUCKET_DESIRED_STATE,
  BUCKET_DEVICES,
} from "@drover/contracts";
import { freePort, startNats, tempDir, waitFor } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import {
  liveRevisions,
  runOperatorCli,
  startOperatorService,
  testKv,
} from "../support/operator_process.ts";
import { registerDevice } from "../../operator/fleet/registry.ts";

/** Writes the status an agent with these labels would publish (test stand-in for an agent). */
async function writeStatus(kv: KV, device: string, labels: Record<string, string>) {
  const status: AgentStatus = {
    device_id: device,
    status: "ready",
    timestamp: new Date().toISOString(),
    agent_version: "test",
    labels,
    heartbeat_seconds: 10,
    deployments: {},
  };
  await kv.put(device, JSON.stringify(status));
}

function manifest(name: string, selector: unknown, image = "localhost/drover/busybox:latest") {
  return `name: ${name}
selector: ${JSON.stringify(selector)}
score:
  type: PodmanV0
  services:
    - name: main
      image: ${image}
      command: ["sleep", "3600"]
`;
}

async function keysOf(kv: KV): Promise<string[]> {
  return [...(await liveRevisions(kv)).keys()].sort();
}

Deno.test("operator fans deployments out by labels and device lists, and tracks changes", async () => {
  await using nats = await startNats();
  await using dir = await tempDir("operator-fanout-");
  const port = await freePort();

  // Status written before the buckets exist would fail; the operator creates them.
  await using operator = await startOperatorService(nats.url, port);
  await using t = await testKv(nats.url);
  const status = await t.open(BUCKET_AGENT_STATUS);
  const desired = await t.open(BUCKET_DESIRED_STATE);
  const registry = await t.open(BUCKET_DEVICES);

  // Targeting labels come from the registry; the statuses report the same labels (shown only).
  const device = async (id: string, labels: Record<string, string>) => {
    await registerDevice(registry, id, labels);
    await writeStatus(status, id, labels);
  };
  await device("pi-a", { site: "lab", arch: "arm64" });
  await device("pi-b", { site: "lab", arch: "amd64" });
  await device("pi-c", { site: "home" });

  const write = async (file: string, text: string) => {
    await Deno.writeTextFile(`${dir.path}/${file}`, text);
    return `${dir.path}/${file}`;
  };

  // Label selection: two of three devices match.
  const labApply = await runOperatorCli(nats.url, [
    "apply",
    "-f",
    await write("lab.yaml", manifest("lab", { labels: { site: "lab" } })),
  ]);
  assertEquals(labApply.code, 0, labApply.stderr);
  assertStringIncludes(labApply.stdout, 'deployment "lab" created');
  // Explicit device list, including a device that never reported.
  const pinned = await runOperatorCli(nats.url, [
    "apply",
    "-f",
    await write(
      "pinned.json",
      JSON.stringify({
        name: "pinned",
        selector: { devices: ["pi-c", "pi-z"] },
        score: { type: "PodmanV0", services: [{ name: "main", image: "busybox" }] },
      }),
    ),
  ]);
  assertEquals(pinned.code, 0, pinned.stderr);

  const expected = ["pi-a.lab", "pi-b.lab", "pi-c.pinned", "pi-z.pinned"];
  await waitFor(async () => (await keysOf(desired)).join() === expected.join(), {
    timeoutMs: 20_000,
    message: `desired-state keys become ${expected.join()}`,
  });
  const value = JSON.parse((await desired.get("pi-a.lab"))!.string());
  assertEquals(value.deployment, "lab");
  assertEquals(value.score.services[0].restart, "always");

  // Re-applying the same manifest changes nothing: no new revisions anywhere.
  const before = await liveRevisions(desired);
  const again = await runOperatorCli(nats.url, ["apply", "-f", `${dir.path}/lab.yaml`]);
  assertEquals(again.code, 0, again.stderr);
  assertStringIncludes(again.stdout, "unchanged");

  // A heartbeat with the same labels does not rewrite anything either.
  await writeStatus(status, "pi-a", { site: "lab", arch: "arm64" });

  // Relabelled (in the registry) device joins; another leaves.
  await device("pi-c", { site: "lab" });
  await device("pi-b", { site: "home", arch: "amd64" });
  const relabelled = ["pi-a.lab", "pi-c.lab", "pi-c.pinned", "pi-z.pinned"];
  await waitFor(async () => (await keysOf(desired)).join() === relabelled.join(), {
    timeoutMs: 20_000,
    message: "relabelled pi-c joins lab and pi-b leaves it",
  });
  const after = await liveRevisions(desired);
  for (const key of ["pi-a.lab", "pi-c.pinned", "pi-z.pinned"]) {
    assertEquals(after.get(key), before.get(key), `${key} must not be rewritten`);
  }

  // An invalid manifest is refused with exit 3 and nothing is stored.
  const deployments = await t.open(BUCKET_DEPLOYMENTS);
  const deploymentsBefore = await liveRevisions(deployments);
  const bad = await runOperatorCli(nats.url, [
    "apply",
    "-f",
    await write("bad.yaml", manifest("lab", { labels: { site: "lab" } }, "Not An Image")),
  ]);
  assertEquals(bad.code, 3, bad.stderr);
  assertStringIncludes(bad.stderr, "bad.yaml");
  assertStringIncludes(bad.stderr, "score.services[0].image");
  assertEquals(await liveRevisions(deployments), deploymentsBefore);

  // An update rewrites exactly the targeted keys of that deployment.
  const updated = await runOperatorCli(nats.url, [
    "apply",
    "-f",
    await write("lab2.yaml", manifest("lab", { labels: { site: "lab" } }, "busybox:2")),
  ]);
  assertStringIncludes(updated.stdout, 'deployment "lab" configured');
  await waitFor(async () => {
    const v = await desired.get("pi-c.lab");
    return v?.string().includes("busybox:2") ?? false;
  }, { timeoutMs: 20_000, message: "update reaches pi-c.lab" });
  await waitFor(async () => (await desired.get("pi-a.lab"))?.string().includes("busybox:2"), {
    timeoutMs: 20_000,
    message: "update reaches pi-a.lab",
  });
  const afterUpdate = await liveRevisions(desired);
  assertEquals(afterUpdate.get("pi-c.pinned"), after.get("pi-c.pinned"));

  // Restart: the new instance rewrites nothing and loses nothing.
  assertEquals(await operator.stop(), 0, operator.logs());
  await using second = await startOperatorService(nats.url, await freePort());
  // Give it a change to react to, then compare: only that change may move revisions.
  await writeStatus(status, "pi-q", { site: "nowhere" });
  await waitFor(async () => {
    const res = await fetch(`${second.apiUrl}/api/devices`);
    const devices = await res.json();
    return devices.some((d: { device_id: string }) => d.device_id === "pi-q");
  }, { timeoutMs: 20_000, message: "restarted operator sees pi-q" });
  assertEquals(await liveRevisions(desired), afterUpdate, "restart must not rewrite any key");

  // Delete reaches every device of the deployment.
  const deleted = await runOperatorCli(nats.url, ["delete", "lab"]);
  assertEquals(deleted.code, 0, deleted.stderr);
  await waitFor(async () => (await keysOf(desired)).join() === "pi-c.pinned,pi-z.pinned", {
    timeoutMs: 20_000,
    message: "lab keys deleted on every device",
  });
  const again404 = await runOperatorCli(nats.url, ["delete", "lab"]);
  assertEquals(again404.code, 1);
  assertStringIncludes(again404.stderr, "does not exist");

  // nats-server restarts under the running service: its watches resume and later changes apply.
  await nats.restart();
  const late = await runOperatorCli(nats.url, [
    "apply",
    "-f",
    await write("late.yaml", manifest("late", { devices: ["pi-a"] })),
  ]);
  assertEquals(late.code, 0, late.stderr);
  await waitFor(async () => (await keysOf(desired)).includes("pi-a.late"), {
    timeoutMs: 30_000,
    message: "a deployment applied after a nats-server restart reaches desired state",
  });
  assertEquals((await runOperatorCli(nats.url, ["delete", "late"])).code, 0);
  await waitFor(async () => !(await keysOf(desired)).includes("pi-a.late"), {
    timeoutMs: 30_000,
    message: "late deleted",
  });

  // The HTTP API and the CLI agree on the view.
  const api = await (await fetch(`${second.apiUrl}/api/deployments/pinned`)).json();
  const cli = await runOperatorCli(nats.url, ["get", "deployments", "-o", "json"]);
  assertEquals(cli.code, 0, cli.stderr);
  const fromCli = JSON.parse(cli.stdout);
  assertEquals(fromCli.map((d: { name: string }) => d.name), ["pinned"]);
  assertEquals(fromCli[0].targeted, api.targeted);
  assertEquals(fromCli[0].targeted, 2);
  // No agent runs here: nobody is ready, both are pending.
  assertEquals([fromCli[0].ready, fromCli[0].pending], [0, 2]);
  assert(!/\[(ERR|FTL)\]/.test(second.logs()), second.logs());
});

Deno.test("operator targets by registry labels only: reported labels are ignored, device label moves devices", async () => {
  await using nats = await startNats();
  await using dir = await tempDir("operator-registry-");
  await using operator = await startOperatorService(nats.url, await freePort());
  await using t = await testKv(nats.url);
  const status = await t.open(BUCKET_AGENT_STATUS);
  const desired = await t.open(BUCKET_DESIRED_STATE);
  const cli = (...args: string[]) => runOperatorCli(nats.url, args);

  // pi-liar reports site=lab but is registered site=x; pi-rogue reports site=lab and is not
  // registered at all; pi-new is registered site=lab and has never reported.
  await writeStatus(status, "pi-liar", { site: "lab" });
  await writeStatus(status, "pi-rogue", { site: "lab" });
  const registered = await cli("device", "register", "pi-liar", "site=x");
  assertEquals(registered.code, 0, registered.stderr);
  assertStringIncludes(registered.stdout, 'device "pi-liar" registered: site=x');
  assertEquals((await cli("device", "register", "pi-new", "site=lab")).code, 0);

  const labYaml = `${dir.path}/lab.yaml`;
  await Deno.writeTextFile(labYaml, manifest("lab", { labels: { site: "lab" } }));
  assertEquals((await cli("apply", "-f", labYaml)).code, 0);
  await waitFor(async () => (await keysOf(desired)).join() === "pi-new.lab", {
    timeoutMs: 20_000,
    message: "only the registered pi-new gets lab",
  });
  // A device changing the labels it reports, after the pass, still changes nothing.
  await writeStatus(status, "pi-liar", { site: "lab", extra: "1" });

  // get devices: registry labels in LABELS, reported ones in -o json, never-seen devices listed.
  const json = await cli("get", "devices", "-o", "json");
  assertEquals(json.code, 0, json.stderr);
  const devices: {
    device_id: string;
    labels: Record<string, string>;
    reported_labels: Record<string, string> | null;
    registered: boolean;
    status: string;
  }[] = JSON.parse(json.stdout);
  assertEquals(
    devices.map((d) => [d.device_id, d.labels, d.reported_labels, d.registered, d.status]),
    [
      ["pi-liar", { site: "x" }, { site: "lab", extra: "1" }, true, "ready"],
      ["pi-new", { site: "lab" }, null, true, "unknown"],
      ["pi-rogue", {}, { site: "lab" }, false, "ready"],
    ],
  );
  const table = await cli("get", "devices");
  // DEVICE STATUS ONLINE LAST-SEEN AGENT LABELS …: the LABELS column is the registry's.
  assert(/^pi-liar\s+ready\s+\S+\s+\S+\s+\S+\s+site=x\s/m.test(table.stdout), table.stdout);
  assert(
    /^pi-new\s+unknown\s+offline\s+never\s+-\s+site=lab\s+lab\s+has never reported status$/m
      .test(table.stdout),
    table.stdout,
  );
  const api = await (await fetch(`${operator.apiUrl}/api/devices`)).json();
  assertEquals(api.map((d: { labels: unknown }) => d.labels), devices.map((d) => d.labels));

  // device label moves pi-liar in (and keeps other labels), then out again with KEY-.
  const moveIn = await cli("device", "label", "pi-liar", "site=lab", "zone=a");
  assertEquals(moveIn.code, 0, moveIn.stderr);
  assertStringIncludes(moveIn.stdout, 'device "pi-liar" labelled: site=lab,zone=a');
  await waitFor(async () => (await keysOf(desired)).join() === "pi-liar.lab,pi-new.lab", {
    timeoutMs: 20_000,
    message: "pi-liar joins lab once registered site=lab",
  });
  const moveOut = await cli("device", "label", "pi-liar", "site-");
  assertEquals(moveOut.code, 0, moveOut.stderr);
  await waitFor(async () => (await keysOf(desired)).join() === "pi-new.lab", {
    timeoutMs: 20_000,
    message: "pi-liar leaves lab once its site label is removed",
  });
  // Unregistering drops pi-new; an explicit device list still reaches the unregistered rogue.
  assertEquals((await cli("device", "unregister", "pi-new")).code, 0);
  const pinnedYaml = `${dir.path}/pinned.yaml`;
  await Deno.writeTextFile(pinnedYaml, manifest("pinned", { devices: ["pi-rogue"] }));
  assertEquals((await cli("apply", "-f", pinnedYaml)).code, 0);
  await waitFor(async () => (await keysOf(desired)).join() === "pi-rogue.pinned", {
    timeoutMs: 20_000,
    message: "pi-new leaves lab when unregistered; pinned reaches pi-rogue by name",
  });

  // Bad label arguments change nothing and exit 3.
  const bad = await cli("device", "label", "pi-liar", "site=a b");
  assertEquals(bad.code, 3, bad.stderr);
  assert(!/\[(ERR|FTL)\]/.test(operator.logs()), operator.logs());
});
