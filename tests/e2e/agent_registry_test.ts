/**
 * Pulling from a private registry: credentials and tls_verify come from the
 * config's [registries."host:port"]; a wrong password fails that deployment
 * with the registry's message and nothing else.
 */
import { pushImage, startRegistry } from "../support/mod.ts";
import { sleepDeployment, startAgentEnv, TEST_IMAGE } from "./_agent_harness.ts";
import { assert, assertEquals } from "../support/assert.ts";

const CREDS = { username: "drover", password: "s3cret-pw" };

Deno.test("agent: pulls with htpasswd auth; a wrong password fails clearly and alone", async () => {
  await using good = await startRegistry({ htpasswd: CREDS });
  await using bad = await startRegistry({ htpasswd: CREDS });
  await using env = await startAgentEnv({
    extraToml: `
[registries."${good.host}"]
username = "${CREDS.username}"
password = "${CREDS.password}"
tls_verify = false

[registries."${bad.host}"]
username = "${CREDS.username}"
password = "not-the-password"
tls_verify = false
`,
  });
  const goodImage = `${good.host}/drover/app:1`;
  const badImage = `${bad.host}/drover/app:1`;
  await pushImage(env.podman, TEST_IMAGE, goodImage, CREDS);
  await pushImage(env.podman, TEST_IMAGE, badImage, CREDS);
  // Only the local build exists; the registry references must be pulled.
  for (const ref of [goodImage, badImage]) {
    assert((await env.podman.cli(["image", "exists", ref])).code !== 0, `${ref} is not local`);
  }
  env.startAgent();

  const goodRev = await env.putDesired(
    "pulled",
    sleepDeployment("pulled", ["main"], "1", goodImage),
  );
  const badRev = await env.putDesired("denied", sleepDeployment("denied", ["main"], "1", badImage));

  const pulled = await env.waitForDeployment(
    "pulled",
    (d) => d.phase === "running" && d.revision === goodRev,
    "image pulled with credentials",
  );
  assertEquals(pulled.services.main?.image, goodImage);
  assertEquals((await env.podman.cli(["image", "exists", goodImage])).code, 0);

  const denied = await env.waitForDeployment(
    "denied",
    (d) => d.phase === "failed" && d.revision === badRev,
    "pull with the wrong password fails",
  );
  const message = denied.message ?? "";
  assert(message.includes(badImage), `message names the image: ${message}`);
  assert(/unauthori[sz]ed|authentication required|401/i.test(message), `auth error: ${message}`);
  assertEquals((await env.containersOf("denied")).length, 0);
  assertEquals((await env.containersOf("pulled")).length, 1);
});
