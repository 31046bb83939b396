import { DesiredState } from "@drover/contracts";
import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { fileMountsOf, secretProblems, wantedRuntimeSecrets } from "./files.ts";

const OWN = "X" + "A".repeat(55);
const OTHER = "X" + "B".repeat(55);

function state(secrets?: unknown[]) {
  return DesiredState.parse({
    deployment: "app",
    score: {
      type: "PodmanV0",
      services: [
        {
          name: "web",
          image: "busybox:1",
          secrets: ["db", { source: "api", type: "env", target: "API_KEY" }],
          configs: ["conf"],
        },
        { name: "side", image: "busybox:1" },
      ],
      configs: { conf: { content: "x=1" } },
    },
    ...(secrets !== undefined ? { secrets } : {}),
  });
}

const ok = (name: string) => ({
  name,
  version: 2,
  sealed: "AAAA",
  sender: OTHER,
  recipient: OWN,
});

Deno.test("secretProblems: each reason a device cannot open a deployment's secrets, named", () => {
  assertEquals(secretProblems(state([ok("db"), ok("api")]), OWN), []);
  const messages = (s: DesiredState, key: string | undefined) =>
    secretProblems(s, key).map((p) => `${p.rule}: ${p.message}`).join("\n");
  assertStringIncludes(messages(state([ok("db"), ok("api")]), undefined), "no sealing key");
  assertStringIncludes(
    messages(state([ok("db")]), OWN),
    'secret "api" is not in the desired state',
  );
  assertStringIncludes(
    messages(state([ok("db"), { name: "api", version: 1, problem: "device has none" }]), OWN),
    "secrets: secrets: device has none",
  );
  assertStringIncludes(
    messages(state([ok("db"), { name: "api", version: 1 }]), OWN),
    "arrived without its sealed value",
  );
  assertStringIncludes(
    messages(state([ok("db"), { ...ok("api"), recipient: OTHER }]), OWN),
    `sealed to key ${OTHER}, not this device's`,
  );
  // A deployment without secrets needs no key.
  const plain = DesiredState.parse({
    deployment: "p",
    score: { type: "PodmanV0", services: [{ name: "web", image: "busybox:1" }] },
  });
  assertEquals(secretProblems(plain, undefined), []);
});

Deno.test("fileMountsOf: runtime names carry device, deployment and version or spec hash", () => {
  const s = state([ok("db"), ok("api")]);
  const web = s.score.services[0]!;
  const mounts = fileMountsOf("pi-1", "app", s, web, "0123456789abcdef0123");
  assertEquals(mounts.map((m) => [m.runtimeName, m.type, m.target, m.mode]), [
    ["drover_pi-1_app_config_conf_0123456789abcdef", "file", "/conf", 0o444],
    ["drover_pi-1_app_secret_db_v2", "file", "/run/secrets/db", 0o400],
    ["drover_pi-1_app_secret_api_v2", "env", "API_KEY", undefined],
  ]);
  assertEquals(
    [...wantedRuntimeSecrets(
      "pi-1",
      "app",
      s,
      (service) => service === "web" ? "ff".repeat(8) : "",
    )]
      .sort(),
    [
      "drover_pi-1_app_config_conf_ffffffffffffffff",
      "drover_pi-1_app_secret_api_v2",
      "drover_pi-1_app_secret_db_v2",
    ],
  );
});
