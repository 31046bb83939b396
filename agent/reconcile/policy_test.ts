import { AgentPolicy, DesiredState, type DesiredStateInput } from "@drover/contracts";
import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import type { DesiredEntry } from "./desired.ts";
import {
  checkPolicy as checkPolicyTyped,
  type HostPathFact,
  hostPathsToResolve,
  isUnderPath,
  policyViolations,
} from "./policy.ts";
import { resolveHostPaths } from "./host_paths.ts";

const state = (services: DesiredStateInput["score"]["services"]) =>
  DesiredState.parse({ deployment: "app", score: { type: "PodmanV0", services } });
const policy = (p: Record<string, unknown>) => AgentPolicy.parse(p);
/** The messages only; the typed rule is checked in its own test below. */
const checkPolicy = (...args: Parameters<typeof checkPolicyTyped>) =>
  checkPolicyTyped(...args).map((v) => v.message);

Deno.test("violations are typed values: the rule is data, the message names it too", () => {
  const p = policy({ allowed_registries: ["localhost"], max_containers: 1 });
  const v = checkPolicyTyped(
    state([{ name: "a", image: "evil.example.com/x:1" }, { name: "b", image: "localhost/x:1" }]),
    p,
  );
  assertEquals(v.map((x) => x.rule), ["allowed_registries", "max_containers"]);
  for (const x of v) assertStringIncludes(x.message, `policy.${x.rule}: `);
});

Deno.test("the default policy accepts any registry, port and named volume, no bind mount", () => {
  const p = policy({});
  const ok = state([{
    name: "web",
    image: "evil.example.com/x:1",
    ports: ["80", "1:1"],
    volumes: ["data:/data"],
  }]);
  assertEquals(checkPolicy(ok, p), []);
  const bind = state([{ name: "web", image: "x:1", volumes: ["/etc:/host-etc:ro"] }]);
  const [v] = checkPolicy(bind, p);
  assertStringIncludes(v, "policy.allowed_host_paths");
  assertStringIncludes(v, '"/etc"');
});

Deno.test("allowed_registries checks the registry of the fully qualified name", () => {
  // A short name is docker.io's, as podman is then asked for docker.io/library/NAME; the
  // allow-list never sees a registry that aliases or local images would pick instead.
  const docker = policy({ allowed_registries: ["docker.io"] });
  assertEquals(
    checkPolicy(
      state([
        { name: "a", image: "fedora:39" },
        { name: "b", image: "busybox" },
        { name: "c", image: "index.docker.io/someone/app:1" },
      ]),
      docker,
    ),
    [],
  );
  const [v] = checkPolicy(state([{ name: "a", image: "evil.example.com/busybox:1" }]), docker);
  assertStringIncludes(v, '"evil.example.com"');
  const local = policy({ allowed_registries: ["localhost"] });
  const [short] = checkPolicy(state([{ name: "a", image: "busybox:1" }]), local);
  assertStringIncludes(
    short,
    '"busybox:1" (docker.io/library/busybox:1) from registry "docker.io"',
  );
});

Deno.test("allowed_registries compares the image's registry host", () => {
  const p = policy({ allowed_registries: ["127.0.0.1:5000", "Registry.Example.com"] });
  assertEquals(
    checkPolicy(
      state([
        { name: "a", image: "127.0.0.1:5000/demo/web:1" },
        { name: "b", image: "registry.example.com/x" },
      ]),
      p,
    ),
    [],
  );
  const v = checkPolicy(
    state([
      { name: "a", image: "busybox:1" },
      { name: "b", image: "127.0.0.1:5001/demo/web:1" },
    ]),
    p,
  );
  assertEquals(v.length, 2);
  assertStringIncludes(v[0], 'policy.allowed_registries: service "a"');
  assertStringIncludes(v[0], '"docker.io"');
  assertStringIncludes(v[1], '"127.0.0.1:5001"');
});

Deno.test("isUnderPath compares whole path segments", () => {
  assertEquals(isUnderPath("/srv/data", "/srv/data"), true);
  assertEquals(isUnderPath("/srv/data/x/y", "/srv/data/"), true);
  assertEquals(isUnderPath("/srv//data/./x", "/srv/data"), true);
  assertEquals(isUnderPath("/srv/database", "/srv/data"), false);
  assertEquals(isUnderPath("/srv", "/srv/data"), false);
  assertEquals(isUnderPath("/anything", "/"), true);
  assertEquals(isUnderPath("/srv/data/../../etc", "/srv/data"), false);
  assertEquals(isUnderPath("relative", "/"), false);
});

/** Facts as `resolveHostPaths` gives them: every path resolves to itself unless listed. */
function facts(paths: Record<string, HostPathFact | string>, also: string[] = []) {
  const out = new Map<string, HostPathFact>(
    also.map((p) => [p, { kind: "resolved", realPath: p }]),
  );
  for (const [path, fact] of Object.entries(paths)) {
    out.set(path, typeof fact === "string" ? { kind: "resolved", realPath: fact } : fact);
  }
  return out;
}

Deno.test("allowed_host_paths admits bind mounts below a prefix only", () => {
  const p = policy({ allowed_host_paths: ["/srv/drover"] });
  assertEquals(
    checkPolicy(
      state([{ name: "a", image: "x:1", volumes: ["/srv/drover/a:/a", "v:/v"] }]),
      p,
      0,
      facts({}, ["/srv/drover", "/srv/drover/a"]),
    ),
    [],
  );
  const v = checkPolicy(state([{ name: "a", image: "x:1", volumes: ["/srv/droverx:/a"] }]), p);
  assertEquals(v.length, 1);
  assertStringIncludes(v[0], '"/srv/droverx"');
});

Deno.test("allowed_host_ports takes ports and ranges and wants an explicit host port", () => {
  const p = policy({ allowed_host_ports: [8080, "9000-9010"] });
  assertEquals(
    checkPolicy(state([{ name: "a", image: "x:1", ports: ["8080:80", "9010:1/udp"] }]), p),
    [],
  );
  const v = checkPolicy(
    state([{ name: "a", image: "x:1", ports: ["127.0.0.1:22:22", "9011:1", "80"] }]),
    p,
  );
  assertEquals(v.length, 3);
  assertStringIncludes(v[0], "policy.allowed_host_ports");
  assertStringIncludes(v[0], "host port 22");
  assertStringIncludes(v[1], "host port 9011");
  assertStringIncludes(v[2], "without a host port");
});

Deno.test("max_containers counts containers across deployments, first written first served", () => {
  const p = policy({ max_containers: 3 });
  const e = (deployment: string, revision: number, n: number): DesiredEntry => ({
    kind: "valid",
    deployment,
    revision,
    state: DesiredState.parse({
      deployment,
      score: {
        type: "PodmanV0",
        services: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, image: "x:1" })),
      },
    }),
  });
  const invalid: DesiredEntry = { kind: "invalid", deployment: "bad", revision: 0, error: "x" };
  const result = policyViolations([e("late", 9, 2), e("early", 2, 2), e("one", 5, 1), invalid], p);
  assertEquals([...result.keys()], ["late"]);
  assertEquals(result.get("late")![0]?.rule, "max_containers");
  assertStringIncludes(result.get("late")![0]?.message, "3 allowed");
  const big = e("big", 1, 4);
  if (big.kind !== "valid") throw new Error("unreachable");
  assertEquals(checkPolicy(big.state, p).length, 1);
  assertEquals(checkPolicy(big.state, policy({ max_containers: 4 })), []);
});

Deno.test("allowed_host_paths: a bind source must resolve to its prefix's real path plus the rest", () => {
  const p = policy({ allowed_host_paths: ["/srv/data"] });
  const bind = (source: string) => state([{ name: "a", image: "x:1", volumes: [`${source}:/a`] }]);
  const only = (v: string[]) => {
    assertEquals(v.length, 1, v.join("\n"));
    assertStringIncludes(v[0], 'policy.allowed_host_paths: service "a" bind-mounts host path');
    return v[0];
  };
  // /srv/data/x -> / planted by a service with a read-write bind of /srv/data.
  const planted = only(checkPolicy(
    bind("/srv/data/x"),
    p,
    0,
    facts({ "/srv/data/x": "/" }, [
      "/srv/data",
    ]),
  ));
  assertStringIncludes(planted, "symlink");
  assertStringIncludes(planted, 'resolves to "/"');
  // A symlink further up below the prefix, even one pointing back inside it.
  only(checkPolicy(
    bind("/srv/data/a/b"),
    p,
    0,
    facts({ "/srv/data/a/b": "/srv/data/c/b" }, [
      "/srv/data",
    ]),
  ));
  // The prefix itself may be a symlink (the device owner's choice): below it, no symlink.
  const moved = facts({ "/srv/data": "/mnt/disk/data", "/srv/data/x": "/mnt/disk/data/x" });
  assertEquals(checkPolicy(bind("/srv/data/x"), p, 0, moved), []);
  assertEquals(
    checkPolicy(
      bind("/srv//data/./x"),
      p,
      0,
      facts({
        "/srv//data/./x": "/srv/data/x",
      }, ["/srv/data"]),
    ),
    [],
  );
  only(checkPolicy(
    bind("/srv/data/x"),
    p,
    0,
    facts({ "/srv/data": "/mnt/disk/data" }, [
      "/srv/data/x",
    ]),
  ));
  // Missing, unreadable, not permitted, or not checked at all: refused, saying which.
  assertStringIncludes(
    only(checkPolicy(bind("/srv/data/new"), p, 0, facts({ "/srv/data/new": { kind: "missing" } }))),
    "does not exist on this device",
  );
  assertStringIncludes(
    only(
      checkPolicy(bind("/srv/data/x"), p, 0, facts({ "/srv/data/x": { kind: "no-permission" } })),
    ),
    "--allow-read=/srv/data",
  );
  assertStringIncludes(
    only(checkPolicy(
      bind("/srv/data/x"),
      p,
      0,
      facts({
        "/srv/data/x": { kind: "unreadable", error: "Too many levels of symbolic links" },
      }),
    )),
    "Too many levels of symbolic links",
  );
  assertStringIncludes(only(checkPolicy(bind("/srv/data/x"), p)), "not checked");
  assertStringIncludes(
    only(checkPolicy(
      bind("/srv/data/x"),
      p,
      0,
      facts({ "/srv/data": { kind: "missing" } }, [
        "/srv/data/x",
      ]),
    )),
    'allowed path "/srv/data" cannot be resolved',
  );
});

Deno.test("hostPathsToResolve lists bind sources under allowed prefixes and those prefixes", () => {
  const e = (volumes: string[]): DesiredEntry => ({
    kind: "valid",
    deployment: "app",
    revision: 1,
    state: state([{ name: "a", image: "x:1", volumes }]),
  });
  const p = policy({ allowed_host_paths: ["/srv/data", "/srv"] });
  assertEquals(
    [...hostPathsToResolve([e(["/srv/data/x:/a", "/etc:/e", "v:/v"])], p)].sort(),
    ["/srv", "/srv/data", "/srv/data/x"],
  );
  assertEquals(hostPathsToResolve([e(["/srv/data/x:/a"])], policy({})).size, 0);
});

Deno.test("resolveHostPaths turns every failure into a fact, a missing permission included", {
  permissions: { read: false },
}, async () => {
  const got = await resolveHostPaths(["/etc"]);
  assertEquals(got.get("/etc"), { kind: "no-permission" });
});

Deno.test("resolveHostPaths resolves symlinks and reports missing paths", async () => {
  const dir = await Deno.makeTempDir({ prefix: "drover-host-paths-" });
  try {
    const real = await Deno.realPath(dir);
    await Deno.mkdir(`${dir}/real`);
    await Deno.symlink("/", `${dir}/x`);
    await Deno.symlink(`${dir}/x/etc`, `${dir}/etc`);
    await Deno.symlink(`${dir}/loop`, `${dir}/loop`);
    const got = await resolveHostPaths([`${dir}/real`, `${dir}/x`, `${dir}/etc`, `${dir}/nope`]);
    assertEquals(got.get(`${dir}/real`), { kind: "resolved", realPath: `${real}/real` });
    assertEquals(got.get(`${dir}/x`), { kind: "resolved", realPath: "/" });
    assertEquals(got.get(`${dir}/etc`), { kind: "resolved", realPath: "/etc" });
    assertEquals(got.get(`${dir}/nope`), { kind: "missing" });
    const loop = (await resolveHostPaths([`${dir}/loop`])).get(`${dir}/loop`);
    assertEquals(loop?.kind, "unreadable");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("allowed_devices: none by default; paths and globs admit exactly what they name", () => {
  const sensor = state([{ name: "reader", image: "x:1", devices: ["/dev/ttyUSB0:/dev/serial"] }]);
  const [refused] = checkPolicyTyped(sensor, policy({}));
  assertEquals(refused?.rule, "allowed_devices");
  assertStringIncludes(refused?.message ?? "", 'maps host device "/dev/ttyUSB0"');
  assertStringIncludes(refused?.message ?? "", "(allowed: none)");
  // Positive controls: the exact path, and a glob.
  assertEquals(checkPolicy(sensor, policy({ allowed_devices: ["/dev/ttyUSB0"] })), []);
  assertEquals(checkPolicy(sensor, policy({ allowed_devices: ["/dev/ttyUSB*"] })), []);
  // A glob does not cross "/" and does not match a longer name's prefix only.
  assertEquals(checkPolicy(sensor, policy({ allowed_devices: ["/dev/*"] })), []);
  const deep = state([{ name: "r", image: "x:1", devices: ["/dev/bus/usb/001/002"] }]);
  assertEquals(checkPolicy(deep, policy({ allowed_devices: ["/dev/*"] })).length, 1);
  assertEquals(checkPolicy(sensor, policy({ allowed_devices: ["/dev/ttyUSB"] })).length, 1);
  assertEquals(checkPolicy(sensor, policy({ allowed_devices: ["/dev/tty?SB0"] })), []);
});

Deno.test("allowed_capabilities: cap_add refused unless listed, in any spelling; cap_drop free", () => {
  const admin = state([{ name: "net", image: "x:1", cap_add: ["net_admin"], cap_drop: ["ALL"] }]);
  const [refused] = checkPolicyTyped(admin, policy({}));
  assertEquals(refused?.rule, "allowed_capabilities");
  assertStringIncludes(refused?.message ?? "", "adds capability CAP_NET_ADMIN");
  assertEquals(checkPolicy(admin, policy({ allowed_capabilities: ["CAP_NET_ADMIN"] })), []);
  assertEquals(checkPolicy(admin, policy({ allowed_capabilities: ["NET_ADMIN"] })), []);
  const dropOnly = state([{ name: "net", image: "x:1", cap_drop: ["ALL"] }]);
  assertEquals(checkPolicy(dropOnly, policy({})), []);
});

Deno.test("allow_host_network: the host network only where the device says so", () => {
  const host = state([{ name: "mdns", image: "x:1", network_mode: "host" }]);
  const [refused] = checkPolicyTyped(host, policy({}));
  assertEquals(refused?.rule, "allow_host_network");
  assertStringIncludes(refused?.message ?? "", 'service "mdns" asks for the host network');
  assertEquals(checkPolicy(host, policy({ allow_host_network: false })).length, 1);
  assertEquals(checkPolicy(host, policy({ allow_host_network: true })), []);
});

Deno.test("max_mem_limit and require_mem_limit: a device can insist every container is capped", () => {
  const uncapped = state([{ name: "web", image: "x:1" }]);
  const big = state([{ name: "web", image: "x:1", mem_limit: "1g" }]);
  const small = state([{ name: "web", image: "x:1", mem_limit: "64m" }]);
  assertEquals(checkPolicy(uncapped, policy({})), [], "no memory rule by default");
  const [required] = checkPolicyTyped(uncapped, policy({ require_mem_limit: true }));
  assertEquals(required?.rule, "require_mem_limit");
  assertStringIncludes(required?.message ?? "", 'service "web" has no mem_limit');
  assertEquals(checkPolicy(small, policy({ require_mem_limit: true })), []);
  const [tooBig] = checkPolicyTyped(big, policy({ max_mem_limit: "256m" }));
  assertEquals(tooBig?.rule, "max_mem_limit");
  assertStringIncludes(tooBig?.message ?? "", "mem_limit 1GiB, more than the 256MiB allowed");
  assertEquals(checkPolicy(small, policy({ max_mem_limit: "256m" })), []);
  assertEquals(checkPolicy(uncapped, policy({ max_mem_limit: "256m" })), []);
});

Deno.test("the new [policy] keys are validated where the config is read", () => {
  for (
    const [bad, text] of [
      [{ allowed_devices: ["ttyUSB0"] }, "absolute"],
      [{ allowed_devices: ["/etc/passwd"] }, "under /dev/"],
      [{ allowed_capabilities: ["GODMODE"] }, "unknown capability"],
      [{ max_mem_limit: "lots" }, "byte size"],
      [{ allow_host_network: "yes" }, "boolean"],
    ] as const
  ) {
    const result = AgentPolicy.safeParse(bad);
    assertEquals(result.success, false, JSON.stringify(bad));
    assertStringIncludes(JSON.stringify(result.error?.issues), text);
  }
});
