import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import {
  AgentConfig,
  CommandError,
  DEVICE_COMMAND_PREFIX,
  DEVICE_COMMANDS,
  deviceCommandsSubject,
  deviceCommandSubject,
  DeviceEvent,
  EventsReply,
  InvalidNameError,
  LogsReply,
  LogsRequest,
  MAX_LOG_CHUNK_BYTES,
  PingReply,
} from "./mod.ts";

// The subjects are a contract between every agent and operator version and the account
// exports in operator/auth: changing one must fail here.
Deno.test("device command subjects are locked", () => {
  assertEquals(DEVICE_COMMAND_PREFIX, "drover.cmd");
  assertEquals([...DEVICE_COMMANDS], ["ping", "logs", "events", "purge-volumes"]);
  assertEquals(deviceCommandSubject("pi-1", "purge-volumes"), "drover.cmd.pi-1.purge-volumes");
  assertEquals(deviceCommandSubject("pi-1", "ping"), "drover.cmd.pi-1.ping");
  assertEquals(deviceCommandSubject("pi-1", "logs"), "drover.cmd.pi-1.logs");
  assertEquals(deviceCommandsSubject("pi-1"), "drover.cmd.pi-1.*");
  assertEquals(MAX_LOG_CHUNK_BYTES, 65536);
});

Deno.test("device command subjects refuse names and commands that would widen them", () => {
  for (const bad of ["a.b", "*", ">", "A", ""]) {
    assertThrows(() => deviceCommandSubject(bad, "ping"), InvalidNameError);
    assertThrows(() => deviceCommandsSubject(bad), InvalidNameError);
  }
  // deno-lint-ignore no-explicit-any
  assertThrows(() => deviceCommandSubject("pi-1", "exec" as any), RangeError, "exec");
  // deno-lint-ignore no-explicit-any
  assertThrows(() => deviceCommandSubject("pi-1", "*" as any), RangeError);
});

Deno.test("logs request: strict, bounded, defaults", () => {
  assertEquals(LogsRequest.parse({ deployment: "hello", service: "web", tail: 10 }), {
    deployment: "hello",
    service: "web",
    tail: 10,
    follow: false,
    wait_ms: 0,
  });
  const cursor = { time: "2026-12-01T15:40:00.123456789Z", skip: 1 };
  assert(LogsRequest.safeParse({ deployment: "a", service: "b", cursor, follow: true }).success);
  assert(
    LogsRequest.safeParse({
      deployment: "a",
      service: "b",
      cursor: { time: "2026-12-01T15:40:00.1+01:00", skip: 0 },
    }).success,
  );
  for (
    const bad of [
      { deployment: "a", service: "b", command: ["sh"] }, // unknown key
      { deployment: "a.b", service: "b" },
      { deployment: "a", service: "b", tail: -1 },
      { deployment: "a", service: "b", wait_ms: 60_000 },
      { deployment: "a", service: "b", since: "10m" },
      { deployment: "a", service: "b", cursor: { time: "yesterday", skip: 0 } },
    ]
  ) {
    assert(!LogsRequest.safeParse(bad).success, JSON.stringify(bad));
  }
});

Deno.test("replies parse, strip unknown keys, and errors carry a code", () => {
  const logs = LogsReply.parse({
    lines: [{ time: "2026-12-01T15:40:00Z", stream: "stderr", text: "boom" }],
    cursor: { time: "2026-12-01T15:40:00Z", skip: 1 },
    end: false,
    newer_field: 1,
  });
  assertEquals(logs.more, false);
  assert(!("newer_field" in logs));
  assert(
    PingReply.safeParse({
      device: "pi-1",
      agent_version: "0.1.0",
      started_at: "2026-12-01T15:40:00Z",
      uptime_seconds: 3,
      last_reconcile_at: null,
      nats_rtt_ms: 0.4,
    }).success,
  );
  const event = {
    seq: 1,
    time: "2026-12-01T15:40:00Z",
    kind: "container_died",
    deployment: "hello",
    service: "web",
    revision: 3,
    exit_code: 137,
    message: "exited with code 137",
  };
  assertEquals(DeviceEvent.parse(event), event);
  assert(!DeviceEvent.safeParse({ ...event, kind: "shell_opened" }).success);
  assert(EventsReply.safeParse({ device: "pi-1", events: [event], dropped: 0 }).success);
  assert(CommandError.safeParse({ error: "x", code: "forbidden" }).success);
  assert(!CommandError.safeParse({ error: "x", code: "nope" }).success);
});

Deno.test("agent config: allow_logs defaults on, metrics off unless listen is set", () => {
  const base = { agent: { device_id: "pi-1" } };
  const config = AgentConfig.parse(base);
  assertEquals(config.policy.allow_logs, undefined); // allowed
  assertEquals(config.metrics, undefined);
  assertEquals(
    AgentConfig.parse({ ...base, metrics: { listen: "127.0.0.1:9101" } }).metrics?.listen,
    "127.0.0.1:9101",
  );
  assertEquals(
    AgentConfig.parse({ ...base, policy: { allow_logs: false } }).policy.allow_logs,
    false,
  );
  for (const listen of ["9101", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "a b:1"]) {
    assert(!AgentConfig.safeParse({ ...base, metrics: { listen } }).success, listen);
  }
  assert(!AgentConfig.safeParse({ ...base, metrics: { port: 9101 } }).success);
});
