/**
 * `deno task hollow` as a user runs it against a secured server: each hollow
 * device connects with its own creds from `operator device add`, the fleet's
 * labels are registered with the operator's creds, the tool says when all are
 * connected and reporting, the operator sees them (registered, online), and
 * SIGINT stops them with a last `stopped` status.
 */
import { startSecureNats } from "./_security_env.ts";
import { startOperatorService } from "../support/operator_process.ts";
import { freePort } from "../support/ports.ts";
import { waitFor } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";

const REPO_ROOT = new URL("../../", import.meta.url).pathname;

interface ApiDevice {
  device_id: string;
  status: string;
  online: boolean;
  registered: boolean;
  labels: Record<string, string>;
}

Deno.test("hollow: devices with their own creds, labels registered, counted, stopped by SIGINT", async () => {
  await using env = await startSecureNats({ devices: { "hc-00000": {}, "hc-00001": {} } });
  const operatorCreds = env.path("operator.creds");
  await using operator = await startOperatorService(env.nats.url, await freePort(), [
    "--creds",
    operatorCreds,
  ]);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${REPO_ROOT}scripts/hollow.ts`,
      "--devices",
      "2",
      "--prefix",
      "hc",
      "--nats",
      env.nats.url,
      "--creds-dir",
      env.authDir.path,
      "--operator-creds",
      operatorCreds,
      "--label",
      "fleet=hollow",
    ],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) out += chunk;
  })();
  const errText = new Response(child.stderr).text();
  try {
    await waitFor(() => out.includes("hollow: 2/2 connected, 2 reporting"), {
      timeoutMs: 30_000,
      message: "hollow reports both devices connected and reporting",
    });
    assertStringIncludes(out, 'registered 2 device(s) with labels {"fleet":"hollow"}');
    assertStringIncludes(out, "FAKE in-memory container runtime");
    await waitFor(async () => {
      const res = await fetch(`${operator.apiUrl}/api/devices`);
      const list = await res.json() as ApiDevice[];
      return list.length === 2 &&
        list.every((d) => d.online && d.registered && d.labels.fleet === "hollow");
    }, {
      timeoutMs: 15_000,
      message: "the operator lists both, registered with the label, online",
    });
  } finally {
    child.kill("SIGINT");
  }
  const status = await child.status;
  await reading;
  const stderr = await errText;
  assert(status.success, `hollow exited ${status.code}: ${stderr}`);
  assertStringIncludes(out, "hollow: stopped 2 device(s)");
  const res = await fetch(`${operator.apiUrl}/api/devices`);
  const list = await res.json() as ApiDevice[];
  assertEquals(list.map((d) => d.status).sort(), ["stopped", "stopped"]);
});
