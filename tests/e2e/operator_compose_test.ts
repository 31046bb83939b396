/**
 * From a docker-compose file to a running deployment and back, through the real CLI: `convert`
 * (with a `.env` beside the file), `apply --wait` with `operator serve` and a real agent on
 * podman, `delete` keeping the named volume and saying so, a re-created deployment finding the
 * volume's data again, and `delete --purge-volumes` removing it on the device.
 */

import { parse } from "yaml";
import { DeploymentManifest } from "@drover/contracts";
import { freePort, startNats, startPodman, tempDir, waitFor } from "../support/mod.ts";
import { buildBusyboxImage } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { runOperatorCli, startOperatorService } from "../support/operator_process.ts";
import { startAgent } from "../support/agent_process.ts";
import { waitForPage } from "./_agent_harness.ts";

const IMAGE = "localhost/drover/busybox:e2e";
const compose = new URL("../../examples/compose/shop/docker-compose.yml", import.meta.url);

Deno.test({
  name: "operator convert → apply → running; delete keeps the volume, --purge-volumes removes it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using nats = await startNats();
    await using dir = await tempDir("operator-compose-");
    await using podman = await startPodman();
    await buildBusyboxImage(podman, IMAGE);
    const webPort = await freePort();
    // A device id of its own: podman test instances share netavark's run directory (aardvark-dns
    // configs are per network name), so no other test may have a network of the same name.
    await using _agent = await startAgent({
      deviceId: "pi-compose",
      labels: { site: "lab" },
      natsUrl: nats.url,
      podmanSocket: podman.socket,
      dir: `${dir.path}/pi-compose`,
      heartbeatSeconds: 1,
    });
    const operator = await startOperatorService(nats.url, await freePort());
    await using _operator = { [Symbol.asyncDispose]: async () => void await operator.stop() };
    // `deno task operator` runs in the project root; INIT_CWD is where the user typed it.
    const cli = (...args: string[]) => runOperatorCli(nats.url, args, { INIT_CWD: dir.path });
    assertEquals((await cli("device", "label", "pi-compose", "site=lab")).code, 0);

    // The compose file with a .env beside it, as a user has them.
    await Deno.mkdir(`${dir.path}/shop`);
    await Deno.copyFile(compose, `${dir.path}/shop/docker-compose.yml`);
    await Deno.writeTextFile(
      `${dir.path}/shop/.env`,
      `IMAGE=${IMAGE}\nWEB_PORT=${webPort}\nSCHEMA_VERSION=v7\n`,
    );
    const converted = await cli(
      "convert",
      "-f",
      "shop/docker-compose.yml",
      "--selector",
      "site=lab",
    );
    assertEquals(converted.code, 0, converted.stderr);
    assertEquals(converted.stderr.includes("warning:"), false, converted.stderr);
    const manifest = DeploymentManifest.parse(parse(converted.stdout));
    assertEquals(manifest.name, "shop");
    await Deno.writeTextFile(`${dir.path}/shop.yaml`, converted.stdout);

    const applied = await cli("apply", "-f", "shop.yaml", "--wait", "--timeout", "120s");
    assertEquals(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);
    await waitForPage(webPort, "v7");

    // Data of the first life of the deployment, to find again after delete and re-create.
    const marked = await podman.cli([
      "exec",
      "shop_db",
      "sh",
      "-c",
      "echo kept > /var/lib/db/marker",
    ]);
    assertEquals(marked.code, 0, marked.stderr);

    const volumeExists = async () => (await podman.cli(["volume", "exists", "dbdata"])).code === 0;
    const deleted = await cli("delete", "shop");
    assertEquals(deleted.code, 0, deleted.stderr);
    assertStringIncludes(deleted.stdout, "named volumes kept on the devices: dbdata");
    await waitFor(async () => {
      const ps = await podman.cli(["ps", "-a", "-q", "--filter", "label=drover.deployment=shop"]);
      return ps.stdout.trim() === "" ? true : undefined;
    }, { timeoutMs: 60_000, message: "shop's containers removed" });
    assert(await volumeExists(), "delete keeps the named volume");

    // Re-created with another schema version: the job writes it into the same volume.
    await Deno.writeTextFile(
      `${dir.path}/shop/.env`,
      `IMAGE=${IMAGE}\nWEB_PORT=${webPort}\nSCHEMA_VERSION=v8\n`,
    );
    const again = await cli("convert", "-f", "shop/docker-compose.yml", "--selector", "site=lab");
    await Deno.writeTextFile(`${dir.path}/shop.yaml`, again.stdout);
    assertEquals((await cli("apply", "-f", "shop.yaml", "--wait", "--timeout", "120s")).code, 0);
    await waitForPage(webPort, "v8");
    const inVolume = await podman.cli(["exec", "shop_db", "cat", "/var/lib/db/marker"]);
    assertEquals(
      inVolume.stdout.trim(),
      "kept",
      "the re-created deployment found the volume's data",
    );

    const purged = await cli("delete", "shop", "--purge-volumes", "--timeout", "90s");
    assertEquals(purged.code, 0, `${purged.stdout}\n${purged.stderr}`);
    assertStringIncludes(purged.stdout, "pi-compose: removed dbdata");
    assertEquals(await volumeExists(), false, "--purge-volumes removed the volume");
  },
});
