/**
 * What a device reports reaches the operator's terminal only escaped: a real
 * `serve` writes the desired state, the test stands in for a hostile agent
 * whose status message and deployment names carry terminal control sequences,
 * and the real CLI prints them (tables, `-o json`, `apply --wait` failures).
 */

import { type AgentStatus, BUCKET_AGENT_STATUS, BUCKET_DESIRED_STATE } from "@drover/contracts";
import { freePort, startNats, tempDir, waitFor } from "../support/mod.ts";
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import { runOperatorCli, startOperatorService, testKv } from "../support/operator_process.ts";

/** What a terminal would act on instead of printing (the JSON output's own newlines aside). */
// deno-lint-ignore no-control-regex -- finding control characters is the point
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

const MESSAGE = "pull failed\x1b[2J\r\nnext line\x1b]0;owned\x07\x9b2J";

Deno.test("device-provided text is printed escaped by every human output", async () => {
  await using nats = await startNats();
  await using dir = await tempDir("operator-terminal-");
  await using _operator = await startOperatorService(nats.url, await freePort());
  await using t = await testKv(nats.url);
  const status = await t.open(BUCKET_AGENT_STATUS);
  const desired = await t.open(BUCKET_DESIRED_STATE);

  await Deno.writeTextFile(
    `${dir.path}/web.yaml`,
    `name: web
selector: { devices: [pi-x] }
score:
  type: PodmanV0
  services: [{ name: main, image: localhost/drover/busybox:latest }]
`,
  );
  const apply = await runOperatorCli(nats.url, ["apply", "-f", `${dir.path}/web.yaml`]);
  assertEquals(apply.code, 0, apply.stderr);
  const revision = await waitFor(async () => (await desired.get("pi-x.web"))?.revision, {
    timeoutMs: 15_000,
    message: "serve wrote desired-state/pi-x.web",
  });

  const report: AgentStatus = {
    device_id: "pi-x",
    status: "degraded",
    timestamp: new Date().toISOString(),
    agent_version: "test\x1b[31m",
    labels: { site: "lab" }, // label values are validated: no control characters get through
    heartbeat_seconds: 10,
    deployments: {
      web: { revision, phase: "failed", message: MESSAGE, services: {} },
      "evil\x1b[2J\ndeploy": { revision, phase: "running", services: {} },
    },
  };
  await status.put("pi-x", JSON.stringify(report));

  const clean = (what: string, out: string) =>
    assertEquals(RAW_CONTROL.test(out), false, `${what}: ${JSON.stringify(out)}`);
  const shown = "pull failed\\u001b[2J\\r\\nnext line\\u001b]0;owned\\u0007\\u009b2J";

  const table = await waitFor(async () => {
    const r = await runOperatorCli(nats.url, ["status", "web"]);
    return r.stdout.includes("failed") ? r : undefined;
  }, { timeoutMs: 15_000, message: "status web shows the failure" });
  clean("status web", table.stdout);
  assertStringIncludes(table.stdout, shown);
  // Summary, blank line, header, one row: the message's newline added no row.
  assertEquals(table.stdout.trimEnd().split("\n").length, 4, table.stdout);

  const json = await runOperatorCli(nats.url, ["status", "web", "-o", "json"]);
  clean("status web -o json", json.stdout);
  assertEquals(JSON.parse(json.stdout).devices[0].message, MESSAGE);

  const devices = await runOperatorCli(nats.url, ["get", "devices"]);
  assertEquals(devices.code, 0, devices.stderr);
  clean("get devices", devices.stdout);
  assertStringIncludes(devices.stdout, "evil\\u001b[2J\\ndeploy");
  clean(
    "get devices -o json",
    (await runOperatorCli(nats.url, ["get", "devices", "-o", "json"])).stdout,
  );

  // apply --wait lists the failing device's message in its error.
  const wait = await runOperatorCli(nats.url, [
    "apply",
    "-f",
    `${dir.path}/web.yaml`,
    "--wait",
    "--timeout",
    "20s",
  ]);
  assertEquals(wait.code, 1, wait.stdout + wait.stderr);
  clean("apply --wait", wait.stdout + wait.stderr);
  assertStringIncludes(wait.stderr, `pi-x: failed: ${shown}`);
});
