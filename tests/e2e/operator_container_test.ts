/**
 * `operator/Containerfile` for real: built with podman from a local stand-in
 * for the official Deno base image (no registry is reachable here), run with
 * host networking against the test nats-server, and used — `serve` in one
 * container, `apply --wait` and `get` in others — to deploy to a real agent.
 * `serve` listens on 0.0.0.0 as the image does by default, so it needs the
 * API token, given as the README says: a podman secret exposed as
 * DROVER_API_TOKEN.
 */

import {
  buildBusyboxImage,
  fetchPublishedPort,
  freePort,
  startNats,
  startPodman,
  tempDir,
  waitFor,
} from "../support/mod.ts";
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import { buildOperatorImage } from "../support/deno_base_image.ts";
import { startAgent } from "../support/agent_process.ts";

const OPERATOR_IMAGE = "localhost/drover/operator:test";
const WORKLOAD_IMAGE = "localhost/drover/busybox:ctr";
const API_TOKEN = "ctr-test-token-0123456789abcdef";

Deno.test({
  name: "operator container: build, serve, apply --wait through it reaches a real agent",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using nats = await startNats();
    // One podman service holds both the operator container and the agent's workloads: the
    // agent only ever touches containers labelled drover.managed=true.
    await using podman = await startPodman();
    await using dir = await tempDir("operator-ctr-");
    await buildBusyboxImage(podman, WORKLOAD_IMAGE);

    const build = await buildOperatorImage(podman, dir.path, OPERATOR_IMAGE);
    assertEquals(build.code, 0, build.stderr);

    // The image's default command (serve on 0.0.0.0:8080) without a token stops at once,
    // saying why; --timeout only bounds a regression that would serve anyway.
    const open = await podman.cli([
      "run",
      "--rm",
      "--timeout",
      "60",
      "--network",
      "host",
      "--env",
      `NATS_URL=${nats.url}`,
      OPERATOR_IMAGE,
    ]);
    assertEquals(open.code, 2, open.stdout + open.stderr);
    assertStringIncludes(
      open.stderr,
      "Refusing to serve the HTTP API on 0.0.0.0:8080 without a token",
    );
    assertStringIncludes(open.stderr, "DROVER_API_TOKEN");

    await Deno.writeTextFile(`${dir.path}/api-token`, API_TOKEN);
    const secret = await podman.cli([
      "secret",
      "create",
      "drover-api-token",
      `${dir.path}/api-token`,
    ]);
    assertEquals(secret.code, 0, secret.stderr);

    const port = await freePort();
    const serve = await podman.cli([
      "run",
      "--detach",
      "--name",
      "drover-operator",
      "--network",
      "host",
      // As the Quadlet unit runs it: read-only root, no capabilities.
      "--read-only",
      "--cap-drop",
      "ALL",
      "--security-opt",
      "no-new-privileges",
      "--env",
      `NATS_URL=${nats.url}`,
      "--secret",
      "drover-api-token,type=env,target=DROVER_API_TOKEN",
      OPERATOR_IMAGE,
      "serve",
      "--listen",
      `0.0.0.0:${port}`,
    ]);
    assertEquals(serve.code, 0, serve.stderr);
    const logs = async () => (await podman.cli(["logs", "drover-operator"])).stderr;
    await waitFor(async () => {
      const res = await fetchPublishedPort(port, "/healthz");
      await res.body?.cancel();
      return res.ok;
    }, { timeoutMs: 30_000, message: "operator container healthy" });

    await using agent = await startAgent({
      deviceId: "ctr-pi",
      labels: { role: "edge" },
      natsUrl: nats.url,
      podmanSocket: podman.socket,
      dir: `${dir.path}/agent`,
      heartbeatSeconds: 1,
      env: { DROVER_LOG_LEVEL: "info" },
    });

    // The CLI from the same image, the manifest mounted read-only.
    const cliInContainer = (...args: string[]) =>
      podman.cli([
        "run",
        "--rm",
        "--network",
        "host",
        "--env",
        `NATS_URL=${nats.url}`,
        "--volume",
        `${dir.path}/edge.yaml:/manifests/edge.yaml:ro`,
        OPERATOR_IMAGE,
        ...args,
      ]);
    await Deno.writeTextFile(
      `${dir.path}/edge.yaml`,
      `name: edge
selector:
  labels:
    role: edge
score:
  type: PodmanV0
  services:
    - name: web
      image: ${WORKLOAD_IMAGE}
      command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
`,
    );
    // Label selectors match the operator's device registry: register the device's role.
    const label = await cliInContainer("device", "register", "ctr-pi", "role=edge");
    assertEquals(label.code, 0, label.stdout + label.stderr);
    const apply = await cliInContainer(
      "apply",
      "-f",
      "/manifests/edge.yaml",
      "--wait",
      "--timeout",
      "90s",
    );
    assertEquals(
      apply.code,
      0,
      apply.stdout + apply.stderr + (await logs()) + (await agent.logs()),
    );
    assertStringIncludes(apply.stdout, 'deployment "edge" created');
    assertStringIncludes(apply.stdout, "edge: 1/1 ready");

    const ps = await podman.cli([
      "ps",
      "--format",
      "{{.Names}}",
      "--filter",
      "label=drover.managed=true",
    ]);
    assertEquals(ps.stdout.trim(), "edge_web");

    const get = await cliInContainer("get", "deployments", "-o", "json");
    assertEquals(get.code, 0, get.stderr);
    const [edge] = JSON.parse(get.stdout);
    assertEquals([edge.name, edge.targeted, edge.ready], ["edge", 1, 1]);
    const apiUrl = `http://127.0.0.1:${port}/api/deployments/edge`;
    const refused = await fetch(apiUrl);
    assertEquals(refused.status, 401);
    await refused.body?.cancel();
    const res = await fetch(apiUrl, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    assertEquals(res.status, 200);
    assertEquals((await res.json()).ready, 1);

    // SIGTERM (podman stop) ends serve cleanly with exit code 0.
    const stop = await podman.cli(["stop", "--time", "10", "drover-operator"]);
    assertEquals(stop.code, 0, stop.stderr);
    const inspect = await podman.cli([
      "inspect",
      "--format",
      "{{.State.ExitCode}}",
      "drover-operator",
    ]);
    assertEquals(inspect.stdout.trim(), "0", await logs());
    await podman.cli(["rm", "--force", "drover-operator"]);
    await agent.stop();
  },
});
