/**
 * `device list` shows the labels deployments target today (the registry's, changed by `device
 * label` after `device add`), and still lists what was issued when NATS is out of reach. Real
 * nats-server with the generated auth, the real operator CLI.
 */

import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import { runOperatorCli } from "../support/operator_process.ts";
import { startSecureNats } from "./_security_env.ts";

Deno.test("device list: current registry labels, the issued ones when NATS is unreachable", async () => {
  await using env = await startSecureNats({ devices: { "pi-1": { site: "lab" }, "pi-2": {} } });
  const dir = env.authDir.path;
  const label = await runOperatorCli(env.nats.url, [
    "device",
    "label",
    "pi-1",
    "site=home",
    "zone=a",
    "--dir",
    dir,
  ]);
  assertEquals(label.code, 0, label.stderr);
  const unregister = await runOperatorCli(env.nats.url, [
    "device",
    "unregister",
    "pi-2",
    "--dir",
    dir,
  ]);
  assertEquals(unregister.code, 0, unregister.stderr);

  const list = await runOperatorCli(env.nats.url, ["device", "list", "--dir", dir]);
  assertEquals(list.code, 0, list.stderr);
  const row = (id: string) => list.stdout.split("\n").find((l) => l.startsWith(`${id} `)) ?? "";
  assertStringIncludes(row("pi-1"), "site=home,zone=a");
  assertStringIncludes(row("pi-2"), "(not registered)");
  assertEquals(list.stderr, "");
  const json = await runOperatorCli(env.nats.url, ["device", "list", "--dir", dir, "-o", "json"]);
  assertEquals(json.code, 0, json.stderr);
  const devices = JSON.parse(json.stdout) as {
    id: string;
    labels: unknown;
    registryLabels: unknown;
  }[];
  assertEquals(devices.find((d) => d.id === "pi-1")?.registryLabels, { site: "home", zone: "a" });
  assertEquals(devices.find((d) => d.id === "pi-1")?.labels, { site: "lab" }, "as issued");

  const offline = await runOperatorCli("nats://127.0.0.1:1", ["device", "list", "--dir", dir]);
  assertEquals(offline.code, 0, offline.stderr);
  assertStringIncludes(
    offline.stdout.split("\n").find((l) => l.startsWith("pi-1 ")) ?? "",
    "site=lab",
  );
  assertStringIncludes(offline.stderr, "warning: the device registry could not be read");
});
