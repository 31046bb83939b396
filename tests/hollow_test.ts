import { AgentConfig } from "@drover/contracts";
import { hollowConfig, hollowDeviceId } from "../agent/hollow.ts";
import { parseHollowArgs, progressLine, splitRanges, UsageError } from "../scripts/hollow.ts";
import { assertEquals, assertThrows } from "./support/assert.ts";

Deno.test("hollow: device ids, ranges over processes", () => {
  assertEquals(hollowDeviceId("hollow", 42), "hollow-00042");
  assertEquals(splitRanges(0, 5, 2), [{ first: 0, count: 3 }, { first: 3, count: 2 }]);
  assertEquals(splitRanges(100, 4, 4).map((r) => r.first), [100, 101, 102, 103]);
});

Deno.test("hollow: the command line, with errors that name the option and value", () => {
  const args = parseHollowArgs([
    "--devices",
    "300",
    "--processes",
    "2",
    "--label",
    "fleet=hollow",
    "--label",
    "site=lab",
    "--nats",
    "nats://a:4222,nats://b:4222",
    "--nats",
    "nats://c:4222",
    "--creds-dir",
    "/etc/drover/creds",
  ]);
  if (args === "help") throw new Error("not help");
  assertEquals(args.devices, 300);
  assertEquals(args.processes, 2);
  assertEquals(args.prefix, "hollow");
  assertEquals(args.labels, { fleet: "hollow", site: "lab" });
  assertEquals(args.servers, ["nats://a:4222", "nats://b:4222", "nats://c:4222"]);
  assertEquals(args.credsDir, "/etc/drover/creds");
  assertEquals(parseHollowArgs(["--help"]), "help");
  // Defaults: one process, local server, NATS_CREDS for the registry.
  const d = parseHollowArgs(
    ["--devices", "1"],
    (n) => n === "NATS_CREDS" ? "/op.creds" : undefined,
  );
  if (d === "help") throw new Error("not help");
  assertEquals([d.processes, d.servers, d.operatorCreds], [
    1,
    ["nats://127.0.0.1:4222"],
    "/op.creds",
  ]);
  assertThrows(() => parseHollowArgs([]), UsageError, "--devices N is required");
  assertThrows(
    () => parseHollowArgs(["--devices", "0"]),
    UsageError,
    '--devices must be a whole number ≥ 1, not "0"',
  );
  assertThrows(
    () => parseHollowArgs(["--devices", "2", "--label", "x"]),
    UsageError,
    '--label: expected KEY=VALUE, got "x"',
  );
  assertThrows(
    () => parseHollowArgs(["--devices", "2", "--prefix", "A_b"]),
    UsageError,
    "--prefix",
  );
  assertThrows(() => parseHollowArgs(["--devices", "2", "--bogus"]), UsageError, "bogus");
});

Deno.test("hollow: each device's config is one the agent accepts, with its own creds file", () => {
  const config = hollowConfig("hollow-00001", {
    servers: ["nats://a:4222"],
    labels: { fleet: "hollow" },
    heartbeatSeconds: 5,
    credsDir: "/creds",
  });
  assertEquals(AgentConfig.parse(config), config);
  assertEquals(config.nats.creds, "/creds/hollow-00001.creds");
  assertEquals(config.agent.heartbeat_seconds, 5);
  // The FAKE runtime is named as such wherever the config shows.
  assertEquals(config.podman.socket.includes("FAKE"), true);
});

Deno.test("hollow: the progress line says when all report and that the runtime is a fake", () => {
  const p = { devices: 10, started: 10, connected: 10, reporting: 10, statuses: 10, heartbeats: 0 };
  assertEquals(
    progressLine(p, 1.25),
    "hollow: 10/10 connected, 10 reporting — 10 status puts, 0 heartbeats, 1.3 s " +
      "(FAKE in-memory container runtime; Ctrl-C stops them)",
  );
  assertEquals(
    progressLine({ ...p, started: 4, connected: 3, reporting: 2 }, 0.5),
    "hollow: 3/10 connected, 2 reporting (4 started) — 10 status puts, 0 heartbeats, 0.5 s",
  );
});
