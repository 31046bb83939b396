import { AgentPolicy, DesiredState, type DesiredStateInput } from "@drover/contracts";
import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import type { DesiredEntry } from "./desired.ts";
import { checkPolicy, isUnderPath, policyViolations } from "./policy.ts";

const state = (services: DesiredStateInput["score"]["services"]) =>
  DesiredState.parse({ deployment: "app", score: { type: "PodmanV0", services } });
const policy = (p: Record<string, unknown>) => AgentPolicy.parse(p);

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

Deno.test("allowed_host_paths admits bind mounts below a prefix only", () => {
  const p = policy({ allowed_host_paths: ["/srv/drover"] });
  assertEquals(
    checkPolicy(state([{ name: "a", image: "x:1", volumes: ["/srv/drover/a:/a", "v:/v"] }]), p),
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
  assertStringIncludes(result.get("late")![0], "policy.max_containers");
  assertStringIncludes(result.get("late")![0], "3 allowed");
  const big = e("big", 1, 4);
  if (big.kind !== "valid") throw new Error("unreachable");
  assertEquals(checkPolicy(big.state, p).length, 1);
  assertEquals(checkPolicy(big.state, policy({ max_containers: 4 })), []);
});
