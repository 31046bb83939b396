import { assert, assertEquals, assertStringIncludes } from "../tests/support/assert.ts";
import {
  dependenciesOf,
  formatZodIssues,
  parseByteSize,
  parseDeviceMapping,
  parseTmpfsMount,
  PodmanService,
  Score,
  specHash,
} from "./mod.ts";

/** The formatted error text of parsing `score`, "" when it parses. */
function scoreProblems(services: unknown[]): string {
  const result = Score.safeParse({ type: "PodmanV0", services });
  return result.success ? "" : formatZodIssues(result.error);
}

const base = { name: "web", image: "busybox:1" };

Deno.test("parseByteSize: compose units are binary; bad sizes get a message", () => {
  assertEquals(parseByteSize("64m"), 64 * 1024 * 1024);
  assertEquals(parseByteSize("1g"), 1024 ** 3);
  assertEquals(parseByteSize("1GB"), 1024 ** 3);
  assertEquals(parseByteSize("512k"), 512 * 1024);
  assertEquals(parseByteSize("1.5m"), 1.5 * 1024 * 1024);
  assertEquals(parseByteSize("100b"), 100);
  assertEquals(parseByteSize("4096"), 4096);
  assertEquals(parseByteSize(4096), 4096);
  for (const bad of ["", "lots", "1t", "-1m", "0", "1 mib", 0, -5, 1.5]) {
    assertEquals(typeof parseByteSize(bad), "string", String(bad));
  }
});

Deno.test("parseDeviceMapping: compose short syntax HOST[:CONTAINER[:PERMISSIONS]]", () => {
  assertEquals(parseDeviceMapping("/dev/ttyUSB0"), {
    host: "/dev/ttyUSB0",
    container: "/dev/ttyUSB0",
    permissions: "rwm",
  });
  assertEquals(parseDeviceMapping("/dev/null:/dev/sensor"), {
    host: "/dev/null",
    container: "/dev/sensor",
    permissions: "rwm",
  });
  assertEquals(parseDeviceMapping("/dev/null:/dev/sensor:rw"), {
    host: "/dev/null",
    container: "/dev/sensor",
    permissions: "rw",
  });
  assertEquals(parseDeviceMapping("/dev/null:r"), {
    host: "/dev/null",
    container: "/dev/null",
    permissions: "r",
  });
  for (
    const bad of [
      "dev/null",
      "/dev/null:rel",
      "/dev/../etc/passwd",
      "/a:/b:rx",
      "/a:/b:rr",
      "/a:/b:r:x",
    ]
  ) {
    assertEquals(typeof parseDeviceMapping(bad), "string", bad);
  }
});

Deno.test("parseTmpfsMount: a path with known options only", () => {
  assertEquals(parseTmpfsMount("/run"), { target: "/run", options: [] });
  assertEquals(parseTmpfsMount("/tmp:size=64m,mode=1777"), {
    target: "/tmp",
    options: ["size=64m", "mode=1777"],
  });
  assertStringIncludes(String(parseTmpfsMount("/tmp:exec=evil")), 'unknown option "exec=evil"');
  assertStringIncludes(String(parseTmpfsMount("tmp")), "absolute");
});

Deno.test("PodmanService takes compose's workload keys in compose's shapes", () => {
  const service = PodmanService.parse({
    ...base,
    mem_limit: "64m",
    cpus: 0.5,
    pids_limit: 100,
    user: "1000:1000",
    working_dir: "/app",
    read_only: true,
    tmpfs: ["/tmp", "/run:size=1m"],
    cap_add: ["net_admin", "CAP_SYS_TIME"],
    cap_drop: ["ALL"],
    devices: ["/dev/ttyUSB0:/dev/ttyUSB0:rw"],
    logging: { driver: "json-file", options: { "max-size": "10m", "max-file": "3" } },
    depends_on: ["db"],
    volumes: ["data:/var/lib/app"],
  });
  assertEquals(service.mem_limit, "64m");
  assertEquals(service.cpus, 0.5);
  assertEquals(PodmanService.parse({ ...base, tmpfs: "/tmp", cpus: "1.5" }).tmpfs, "/tmp");
  assertEquals(PodmanService.parse({ ...base, network_mode: "host" }).network_mode, "host");
});

Deno.test("each bad workload value is an error naming its key", () => {
  const cases: Array<[Record<string, unknown>, string, string]> = [
    [{ mem_limit: "lots" }, "mem_limit", "invalid byte size"],
    [{ mem_limit: "1m" }, "mem_limit", "below the minimum of 6MiB"],
    [{ cpus: 0 }, "cpus", "CPU count"],
    [{ cpus: "half" }, "cpus", "CPU count"],
    [{ pids_limit: 0 }, "pids_limit", "at least 1"],
    [{ user: "root;rm" }, "user", "user:group"],
    [{ working_dir: "app" }, "working_dir", "absolute"],
    [{ read_only: "yes" }, "read_only", ""],
    [{ tmpfs: ["tmp"] }, "tmpfs[0]", "absolute"],
    [{ cap_add: ["SUPERPOWER"] }, "cap_add[0]", 'unknown capability "SUPERPOWER"'],
    [{ cap_add: ["ALL"] }, "cap_add[0]", "unknown capability"],
    [{ devices: ["ttyUSB0"] }, "devices[0]", "absolute"],
    [{ logging: { driver: "syslog" } }, "logging.driver", '"k8s-file"'],
    [{ logging: { options: { "max-size": "big" } } }, "logging.options.max-size", "byte size"],
    [{ logging: { options: { "max-file": "0" } } }, "logging.options.max-file", ""],
    [{ logging: { options: { compress: "true" } } }, "logging.options", '"compress"'],
    [{ network_mode: "bridge" }, "network_mode", 'only "host"'],
    [{ network_mode: "service:db" }, "network_mode", 'only "host"'],
    [{ depends_on: { db: { condition: "service_ready" } } }, "depends_on", "service_healthy"],
  ];
  for (const [fields, key, text] of cases) {
    const problems = scoreProblems([{ ...base, ...fields }]);
    assertStringIncludes(problems, `services[0].${key}`, JSON.stringify(fields));
    assertStringIncludes(problems, text, JSON.stringify(fields));
  }
});

Deno.test("depends_on must name other services of the score, without cycles", () => {
  const db = { name: "db", image: "busybox:1" };
  assertEquals(scoreProblems([{ ...base, depends_on: ["db"] }, db]), "");
  assertStringIncludes(
    scoreProblems([{ ...base, depends_on: ["dbb"] }]),
    'services[0].depends_on.dbb: no service "dbb" in this score',
  );
  assertStringIncludes(
    scoreProblems([{ ...base, depends_on: ["web"] }]),
    'service "web" cannot depend on itself',
  );
  const cycle = scoreProblems([
    { ...base, depends_on: ["db"] },
    { ...db, depends_on: { web: { condition: "service_started" } } },
  ]);
  assertStringIncludes(cycle, "depends_on forms a cycle: web -> db -> web");
});

Deno.test("depends_on conditions need what they wait for", () => {
  const job = { name: "migrate", image: "busybox:1", restart: "no" };
  const ok = [
    { ...base, depends_on: { migrate: { condition: "service_completed_successfully" } } },
    job,
  ];
  assertEquals(scoreProblems(ok), "");
  assertStringIncludes(
    scoreProblems([ok[0], { ...job, restart: "always" }]),
    'services[0].depends_on.migrate: condition service_completed_successfully needs service "migrate" to be a job with restart: "no"',
  );
  const healthy = { ...base, depends_on: { db: { condition: "service_healthy" } } };
  assertStringIncludes(
    scoreProblems([healthy, { name: "db", image: "busybox:1" }]),
    'condition service_healthy needs a healthcheck on service "db"',
  );
  assertEquals(
    scoreProblems([healthy, {
      name: "db",
      image: "busybox:1",
      healthcheck: { test: ["CMD", "true"] },
    }]),
    "",
  );
  assertEquals(
    dependenciesOf(PodmanService.parse({ ...base, depends_on: { db: {} } })),
    [{ service: "db", condition: "service_started" }],
  );
  assertEquals(dependenciesOf(PodmanService.parse({ ...base, depends_on: ["a", "b"] })), [
    { service: "a", condition: "service_started" },
    { service: "b", condition: "service_started" },
  ]);
});

Deno.test("the host network takes no published ports", () => {
  assertStringIncludes(
    scoreProblems([{ ...base, network_mode: "host", ports: ["80:80"] }]),
    'services[0].ports: cannot publish ports with network_mode: "host"',
  );
});

Deno.test("no workload key has a default: an old service parses to the same value and hash", async () => {
  // Locked (the same value as before these keys existed): an agent upgrade
  // must not replace the container of a service that uses none of them.
  const old = PodmanService.parse({ ...base, ports: ["8080:80"] });
  assertEquals(Object.keys(old).sort(), ["image", "name", "ports", "restart"]);
  assertEquals(
    await specHash(old),
    "249a3c4800f5b6f9c662689164115066acd40b2b1527b01841649fe310c6dfc5",
  );
  const capped = PodmanService.parse({ ...base, ports: ["8080:80"], mem_limit: "64m" });
  assert((await specHash(capped)) !== (await specHash(old)));
});
