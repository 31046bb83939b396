/**
 * Device-side policy end to end: the real agent with a `[policy]` section
 * refuses desired states that break it — whatever the operator sends — with
 * `failed` and a message naming the rule, creates nothing of them, and keeps
 * running what the policy allows. Also the ways around the rules: short image
 * names that podman would resolve to another registry, and bind sources that
 * are symlinks below an allowed path.
 */
import type { DesiredStateInput } from "@drover/contracts";
import { assertEquals, assertExists, assertStringIncludes } from "../support/assert.ts";
import { podmanPaths, tempDir } from "../support/mod.ts";
import {
  freePort,
  podmanDeployment,
  sleepDeployment,
  startAgentEnv,
  TEST_IMAGE,
  waitFor,
  waitForPage,
  webDeployment,
} from "./_agent_harness.ts";

Deno.test("security: [policy] refuses registries, bind mounts, ports and too many containers", async () => {
  const allowedPort = await freePort();
  const otherPort = await freePort();
  await using env = await startAgentEnv({
    heartbeatSeconds: 1,
    extraToml: [
      "[policy]",
      'allowed_registries = ["localhost"]',
      'allowed_host_paths = ["/srv/drover-data"]',
      `allowed_host_ports = [${allowedPort}]`,
      "max_containers = 3",
      "",
    ].join("\n"),
  });
  env.startAgent();

  // Allowed: local image, allowed port.
  const webRev = await env.putDesired("web", webDeployment("web", allowedPort, "allowed"));
  await waitForPage(allowedPort, "allowed");
  await env.waitForDeployment("web", (d) => d.phase === "running" && d.revision === webRev, "web");
  const webId = (await env.containersOf("web"))[0]?.Id;

  const refused = async (name: string, value: DesiredStateInput, rule: string) => {
    const rev = await env.putDesired(name, value);
    const status = await env.waitForDeployment(
      name,
      (d) => d.revision === rev && d.phase === "failed",
      `${name} refused by ${rule}`,
    );
    assertStringIncludes(status.message ?? "", rule);
    assertEquals(await env.containersOf(name), [], `nothing of ${name} was created`);
  };

  const foreign = sleepDeployment("foreign");
  const foreignService = foreign.score.services[0];
  assertExists(foreignService, "foreign has a service");
  foreignService.image = "quay.io/evil/miner:1";
  await refused("foreign", foreign, "policy.allowed_registries");

  const hostMount = sleepDeployment("mount");
  const hostMountService = hostMount.score.services[0];
  assertExists(hostMountService, "hostMount has a service");
  hostMountService.volumes = ["data:/data", "/etc:/host-etc:ro"];
  await refused("mount", hostMount, "policy.allowed_host_paths");

  await refused("port", webDeployment("port", otherPort, "no"), "policy.allowed_host_ports");

  // web uses 1 container; 3 more would exceed max_containers = 3.
  await refused("many", sleepDeployment("many", ["a", "b", "c"]), "policy.max_containers");

  // What the policy allows still works beside the refusals: a named volume
  // (always allowed), within the container budget.
  const fine = sleepDeployment("fine", ["a", "b"]);
  const fineService = fine.score.services[0];
  assertExists(fineService, "fine has a service");
  fineService.volumes = ["data:/data"];
  const fineRev = await env.putDesired("fine", fine);
  await env.waitForDeployment(
    "fine",
    (d) => d.phase === "running" && d.revision === fineRev,
    "fine running",
  );
  assertEquals((await env.containersOf("fine")).length, 2);
  assertEquals((await env.containersOf("web")).map((c) => c.Id), [webId], "web untouched");
});

/** A deployment whose one service runs `sh -c script` (a sleep keeps it up). */
function shellDeployment(
  deployment: string,
  image: string,
  script: string,
  volumes: string[] = [],
): DesiredStateInput {
  return podmanDeployment(deployment, [{
    name: "main",
    image,
    command: ["sh", "-c", `trap 'exit 0' TERM; ${script} sleep 3600 & wait`],
    ...(volumes.length > 0 ? { volumes } : {}),
  }]);
}

Deno.test("security: short image names cannot leave the allowed registry", async () => {
  await using env = await startAgentEnv({
    heartbeatSeconds: 1,
    extraToml: '[policy]\nallowed_registries = ["docker.io"]\n',
  });
  const podman = env.podman;
  const cli = async (args: string[]) => {
    const result = await podman.cli(args);
    if (result.code !== 0) throw new Error(`podman ${args.join(" ")}: ${result.stderr}`);
  };
  // The attacks, made real on this podman: a registries.conf alias sends `fedora` elsewhere, and
  // a local image whose name ends in /busybox:1 comes from another registry.
  await Deno.writeTextFile(
    podmanPaths(podman.dir).registriesConf,
    '\n[aliases]\n"fedora" = "localhost/evil/fedora"\n',
    { append: true },
  );
  await podman.restart();
  await cli(["tag", TEST_IMAGE, "localhost/evil/fedora:39", "evil.example.com/busybox:1"]);
  // podman itself resolves both short names to those images: what the old agent handed it.
  assertEquals((await podman.cli(["image", "exists", "fedora:39"])).code, 0, "alias resolves");
  assertEquals((await podman.cli(["image", "exists", "busybox:1"])).code, 0, "suffix matches");
  const agent = env.startAgent();

  // (a) fedora:39 is docker.io/library/fedora:39 — not reachable here, so the pull fails.
  const fedoraRev = await env.putDesired(
    "fedora",
    sleepDeployment("fedora", ["main"], "1", "fedora:39"),
  );
  const fedora = await env.waitForDeployment(
    "fedora",
    (d) => d.revision === fedoraRev && d.phase === "failed",
    "fedora:39 fails to pull from docker.io",
  );
  assertStringIncludes(fedora.message ?? "", "docker.io/library/fedora:39");
  assertEquals(await env.containersOf("fedora"), [], "nothing of fedora was created");

  // (b) busybox:1 is docker.io/library/busybox:1, never the local evil.example.com/busybox:1.
  const busyboxRev = await env.putDesired("busybox", shellDeployment("busybox", "busybox:1", ""));
  const busybox = await env.waitForDeployment(
    "busybox",
    (d) => d.revision === busyboxRev && d.phase === "failed",
    "busybox:1 fails to pull from docker.io",
  );
  assertStringIncludes(busybox.message ?? "", "docker.io/library/busybox:1");
  assertEquals(await env.containersOf("busybox"), [], "nothing of busybox was created");

  // Every image name the agent put into a log line is fully qualified: podman was never
  // handed the short names (its pull, lookup and create requests take the same string).
  const logs = await agent.logs();
  assertEquals(logs.match(/(?<![\w./-])(fedora|busybox):1?\d*\b/g) ?? [], [], "short names");

  // Positive control: once docker.io/library/busybox:1 is present, busybox:1 runs from it.
  await cli(["tag", TEST_IMAGE, "docker.io/library/busybox:1"]);
  const againRev = await env.putDesired(
    "busybox",
    shellDeployment("busybox", "busybox:1", ": again;"),
  );
  await env.waitForDeployment(
    "busybox",
    (d) => d.revision === againRev && d.phase === "running",
    "busybox:1 running from docker.io",
  );
  assertEquals((await env.containersOf("busybox")).map((c) => c.Image), [
    "docker.io/library/busybox:1",
  ]);
  for (const c of await env.containers()) {
    assertEquals(c.Image.startsWith("docker.io/"), true, `${c.Names[0]} runs ${c.Image}`);
  }
});

Deno.test("security: a bind source that is a symlink below an allowed path is refused", async () => {
  await using allowed = await tempDir("drover-allowed-");
  const dir = allowed.path;
  await Deno.mkdir(`${dir}/real`);
  // What a service with a read-write bind of DIR could plant: DIR/x -> /.
  await Deno.symlink("/", `${dir}/x`);
  await using env = await startAgentEnv({
    heartbeatSeconds: 1,
    extraToml: `[policy]\nallowed_host_paths = [${JSON.stringify(dir)}]\n`,
  });
  env.startAgent();

  const refused = async (name: string, source: string, text: string) => {
    const rev = await env.putDesired(
      name,
      shellDeployment(name, TEST_IMAGE, "", [`${source}:/host`]),
    );
    const status = await env.waitForDeployment(
      name,
      (d) => d.revision === rev && d.phase === "failed",
      `${name} refused`,
    );
    assertStringIncludes(status.message ?? "", "policy.allowed_host_paths");
    assertStringIncludes(status.message ?? "", text);
    assertEquals(await env.containersOf(name), [], `nothing of ${name} was created`);
  };
  await refused("root", `${dir}/x`, "symlink");
  await refused("etc", `${dir}/x/etc`, "symlink");
  await refused("missing", `${dir}/nope`, "does not exist");

  // Positive control: a real directory under DIR is bind-mounted, read-write.
  const rev = await env.putDesired(
    "data",
    shellDeployment("data", TEST_IMAGE, "echo written > /host/proof;", [`${dir}/real:/host`]),
  );
  await env.waitForDeployment("data", (d) => d.revision === rev && d.phase === "running", "data");
  await waitFor(async () => {
    try {
      return (await Deno.readTextFile(`${dir}/real/proof`)).trim() === "written" || undefined;
    } catch {
      return undefined;
    }
  }, { timeoutMs: 30_000, message: "the container wrote through its bind mount" });
});
