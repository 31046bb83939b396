/**
 * Real edge workloads end to end, on real podman (4.3, and 5.4 in the trixie pass) with a real
 * agent: compose files from examples/compose converted by `operator convert`'s converter and
 * run — a web service that fetches its database over HTTP by service name, after a migration
 * job wrote into a named volume; resources, process options and log caps visible in podman's
 * inspect; a failing job failing the deployment with its exit code and output; a device refused
 * unless `[policy] allowed_devices` names it; the network gone and the volume kept after a
 * delete; and an agent restart that changes nothing.
 */
import { parse } from "yaml";
import { LABELS } from "@drover/contracts";
import { assert, assertEquals, assertExists, assertStringIncludes } from "../support/assert.ts";
import { convertCompose } from "../../operator/manifests/compose.ts";
import {
  freePort,
  podmanDeployment,
  startAgentEnv,
  TEST_IMAGE,
  waitFor,
  waitForPage,
} from "./_agent_harness.ts";

const examples = new URL("../../examples/compose/", import.meta.url);

/** The score `operator convert` makes of an example compose file, with `variables` set. */
async function convertedScore(example: string, variables: Record<string, string>) {
  const text = await Deno.readTextFile(new URL(`${example}/docker-compose.yml`, examples));
  const result = convertCompose(parse(text, { merge: true }), {
    file: `${example}/docker-compose.yml`,
    fallbackName: example,
    selector: { site: "lab" },
    variable: (name) => variables[name],
  });
  assertExists(result.manifest, `convert ${example}: ${result.warnings.join("; ")}`);
  return { score: result.manifest.score, warnings: result.warnings };
}

Deno.test("workloads: DNS by service name, a job before the app, limits in inspect, networks and volumes", async () => {
  const webPort = await freePort();
  // A device id of its own: podman test instances share netavark's run directory (aardvark-dns
  // configs are per network name), so no other test may have a network of the same name.
  await using env = await startAgentEnv({
    deviceId: "pi-workloads",
    heartbeatSeconds: 1,
    extraToml: ["[policy]", 'allowed_devices = ["/dev/null"]', ""].join("\n"),
  });
  const inspect = async (name: string, format: string) => {
    const r = await env.podman.cli(["inspect", name, "--format", format]);
    assertEquals(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  const exists = async (kind: "network" | "volume", name: string) =>
    (await env.podman.cli([kind, "exists", name])).code === 0;
  let agent = env.startAgent();

  // web + db + migration job, converted from compose. The page web serves is what it fetched
  // from http://db:5432/schema: the job's output, through the named volume, over DNS.
  const shop = await convertedScore("shop", { IMAGE: TEST_IMAGE, WEB_PORT: String(webPort) });
  assertEquals(shop.warnings, []);
  const shopRev = await env.putDesired("shop", { deployment: "shop", score: shop.score });
  await waitForPage(webPort, "v1", 40_000);
  const running = await env.waitForDeployment(
    "shop",
    (d) => d.revision === shopRev && d.phase === "running",
    "shop running",
    60_000,
  );
  assertEquals(running.services.migrate?.state, "exited");
  assertEquals(running.services.migrate?.exit_code, 0, "the job's exit code is reported");

  // Limits as podman applied them.
  assertEquals(await inspect("shop_web", "{{.HostConfig.Memory}}"), String(32 * 1024 * 1024));
  assertEquals(await inspect("shop_web", "{{.HostConfig.PidsLimit}}"), "64");
  assertEquals(await inspect("shop_web", "{{.HostConfig.ReadonlyRootfs}}"), "true");
  assertEquals(await inspect("shop_web", "{{.HostConfig.LogConfig.Type}}"), "k8s-file");
  // 1 MiB as asked for web; the 10 MiB default for db, which asked for nothing.
  assertEquals(await inspect("shop_web", "{{.HostConfig.LogConfig.Size}}"), "1.049MB");
  assertEquals(await inspect("shop_db", "{{.HostConfig.LogConfig.Size}}"), "10.49MB");
  assertEquals(await inspect("shop_db", "{{.HostConfig.Memory}}"), String(64 * 1024 * 1024));
  // The deployment's own network, with the service name as alias; the volume is Drover's.
  assert(await exists("network", "drover-pi-workloads_shop"), "the deployment's network exists");
  assertStringIncludes(
    await inspect("shop_db", "{{json .NetworkSettings.Networks}}"),
    '"Aliases":["db"',
  );
  assertEquals(
    await inspect("dbdata", `{{index .Labels "${LABELS.managed}"}}`),
    "true",
  );

  // A process option visible in inspect, and a device: /dev/null as /dev/sensor, allowed.
  const sensor = await convertedScore("sensor", {
    IMAGE: TEST_IMAGE,
    SENSOR_DEVICE: "/dev/null",
  });
  const sensorRev = await env.putDesired("sensor", { deployment: "sensor", score: sensor.score });
  await env.waitForDeployment(
    "sensor",
    (d) => d.revision === sensorRev && d.phase === "running",
    "sensor running with an allowed device",
  );
  assertEquals(await inspect("sensor_reader", "{{.Config.User}}"), "0:20");
  const device = await env.podman.cli(["exec", "sensor_reader", "ls", "-l", "/dev/sensor"]);
  assertEquals(device.code, 0, device.stderr);
  assertStringIncludes(device.stdout, "1,   3", "the host's /dev/null (char 1,3) is /dev/sensor");

  // Refused: a device the policy does not name; nothing of it is created.
  const zeroRev = await env.putDesired(
    "zero",
    podmanDeployment("zero", [{
      name: "reader",
      image: TEST_IMAGE,
      command: ["sleep", "3600"],
      devices: ["/dev/zero:/dev/sensor"],
    }]),
  );
  const refused = await env.waitForDeployment(
    "zero",
    (d) => d.revision === zeroRev && d.phase === "failed",
    "zero refused",
  );
  assertStringIncludes(refused.message ?? "", "policy.allowed_devices");
  assertStringIncludes(refused.message ?? "", '"/dev/zero"');
  assertEquals(await env.containersOf("zero"), []);

  // A failing job fails the deployment with its exit code and output; the app never starts,
  // and the job is not run again.
  const failRev = await env.putDesired(
    "broken",
    podmanDeployment("broken", [
      {
        name: "migrate",
        image: TEST_IMAGE,
        command: ["sh", "-c", "echo 'relation users does not exist'; exit 3"],
        restart: "no",
      },
      {
        name: "app",
        image: TEST_IMAGE,
        command: ["sleep", "3600"],
        depends_on: { migrate: { condition: "service_completed_successfully" } },
      },
    ]),
  );
  const broken = await env.waitForDeployment(
    "broken",
    (d) => d.revision === failRev && d.phase === "failed",
    "broken failed",
  );
  assertStringIncludes(broken.message ?? "", 'job "migrate" exited with code 3');
  assertStringIncludes(broken.message ?? "", "relation users does not exist");
  assertEquals(broken.services.migrate?.exit_code, 3);
  const brokenContainers = await env.containersOf("broken");
  assertEquals(brokenContainers.map((c) => c.Labels?.[LABELS.service]), ["migrate"]);

  // An agent restart with all of this in place changes nothing.
  const before = (await env.containers()).map((c) => `${c.Names[0]} ${c.Id}`).sort();
  await agent.stop();
  agent = env.startAgent();
  await env.waitForDeployment(
    "shop",
    (d) => d.revision === shopRev && d.phase === "running",
    "shop still running after the restart",
  );
  await env.waitForDeployment("broken", (d) => d.phase === "failed", "broken still failed");
  // Time for a wrongly planned replacement to show.
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  const after = (await env.containers()).map((c) => `${c.Names[0]} ${c.Id}`).sort();
  assertEquals(after, before, "no container was replaced, rerun or added");
  await waitForPage(webPort, "v1");

  // Drift repair: the network removed by hand (with its container) comes back with it.
  const sensorBefore = await inspect("sensor_reader", "{{.Id}}");
  const removed = await env.podman.cli(["network", "rm", "-f", "drover-pi-workloads_sensor"]);
  assertEquals(removed.code, 0, removed.stderr);
  await waitFor(async () => {
    const id = (await env.podman.cli(["inspect", "sensor_reader", "--format", "{{.Id}}"])).stdout;
    return id.trim() !== "" && id.trim() !== sensorBefore ? true : undefined;
  }, { timeoutMs: 60_000, message: "sensor_reader re-created after its network was removed" });
  assert(await exists("network", "drover-pi-workloads_sensor"), "the network is back");
  await env.waitForDeployment("sensor", (d) => d.phase === "running", "sensor running again");

  // Delete: containers and network go, the named volume (and its data) stays.
  await env.deleteDesired("shop");
  await waitFor(async () => (await env.containersOf("shop")).length === 0 ? true : undefined, {
    timeoutMs: 60_000,
    message: "shop's containers removed",
  });
  await waitFor(
    async () => (await exists("network", "drover-pi-workloads_shop")) ? undefined : true,
    {
      timeoutMs: 30_000,
      message: "shop's network removed",
    },
  );
  assert(await exists("volume", "dbdata"), "the named volume is kept");
  assert(
    await exists("network", "drover-pi-workloads_sensor"),
    "another deployment's network stays",
  );
});
