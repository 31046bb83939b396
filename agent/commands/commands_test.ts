import { assert, assertEquals } from "../../tests/support/assert.ts";
import { getLogger } from "@logtape/logtape";
import { CommandError, EventsReply, LogsReply, PingReply } from "@drover/contracts";
import { EventRing } from "./event_ring.ts";
import { afterCursor, type LogSource, readLogs, takeChunk, toLogLine } from "./logs.ts";
import { CommandServer } from "./server.ts";
import { observationEvents } from "../reconcile/events.ts";
import type { ObservedContainer } from "../runtime/runtime.ts";

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

Deno.test("event ring: numbered, capped by count and bytes, oldest dropped first", () => {
  const ring = new EventRing({ maxEvents: 3, maxBytes: 10_000, now: () => 0 });
  for (let i = 1; i <= 5; i++) ring.record({ kind: "container_started", message: `m${i}` });
  assertEquals(ring.list().map((e) => e.seq), [3, 4, 5]);
  assertEquals(ring.dropped, 2);
  assertEquals(ring.list(4).map((e) => e.message), ["m5"]);
  const small = new EventRing({ maxBytes: 400 });
  for (let i = 0; i < 20; i++) small.record({ kind: "container_died", message: "x".repeat(100) });
  assert(JSON.stringify(small.list()).length <= 400 + 200, "bounded by bytes");
  assert(small.list().length >= 1 && small.dropped > 0);
  const long = new EventRing();
  long.record({ kind: "deployment_failed", message: "y".repeat(2000) });
  assertEquals(long.list()[0]?.message.length, 500);
});

Deno.test("logs: timestamps split off, cursor skips what was delivered, chunks are bounded", () => {
  const line = toLogLine({ stream: "stderr", text: "2026-12-01T15:24:29Z two\n" });
  assertEquals(line, { time: "2026-12-01T15:24:29Z", stream: "stderr", text: "two" });
  const lines = ["a", "b", "c"].map((text, i) => ({
    time: i < 2 ? "2026-12-01T15:24:29Z" : "2026-12-01T15:24:30Z",
    stream: "stdout" as const,
    text,
  }));
  const first = takeChunk(lines.slice(0, 1), undefined);
  assertEquals(first.cursor, { time: "2026-12-01T15:24:29Z", skip: 1 });
  // Podman returns every line of the cursor's second again: only "b" and "c" are new.
  assertEquals(afterCursor(lines, first.cursor!).map((l) => l.text), ["b", "c"]);
  const chunk = takeChunk(lines, first.cursor!);
  assertEquals(chunk.cursor, { time: "2026-12-01T15:24:30Z", skip: 1 });
  const big = Array.from({ length: 100 }, (_, i) => ({
    time: "2026-12-01T15:24:30Z",
    stream: "stdout" as const,
    text: `${i} ${"z".repeat(2000)}`,
  }));
  const bounded = takeChunk(big, undefined);
  assert(bounded.more && bounded.lines.length < 100 && bounded.lines.length > 10);
  assert(JSON.stringify(bounded.lines).length < 70 * 1024);
  const rest = afterCursor(big, bounded.cursor!);
  assertEquals(rest[0]?.text.split(" ")[0], String(bounded.lines.length));
});

function fakeSource(
  state: { lines: string[]; container?: { id: string; state: string } | undefined },
) {
  const source: LogSource = {
    find: () => Promise.resolve(state.container),
    read: (_id, { tail, since }) => {
      let frames = state.lines.map((text, i) => ({
        stream: "stdout" as const,
        text: `2026-12-01T15:24:${String(10 + i).padStart(2, "0")}Z ${text}\n`,
      }));
      if (since !== undefined) frames = frames.filter((f) => f.text.slice(0, 20) >= since);
      if (tail !== undefined) frames = frames.slice(-tail);
      return Promise.resolve(frames);
    },
  };
  return source;
}

Deno.test("logs: tail, then follow with the cursor sees only new lines, then the end", async () => {
  const state = {
    lines: ["one", "two", "three"],
    container: { id: "c1", state: "running" } as { id: string; state: string } | undefined,
  };
  const source = fakeSource(state);
  const tail = LogsReply.parse(
    await readLogs(source, { deployment: "d", service: "s", tail: 2, follow: true }),
  );
  assertEquals(tail.lines.map((l) => l.text), ["two", "three"]);
  assertEquals(tail.end, false);
  // Nothing new: a follow read waits (briefly here) and answers with nothing, not the end.
  const idle = await readLogs(source, {
    deployment: "d",
    service: "s",
    cursor: tail.cursor!,
    follow: true,
    wait_ms: 50,
  }, { pollMs: 10 });
  assertEquals([idle.lines.length, idle.end], [0, false]);
  setTimeout(() => state.lines.push("four"), 20);
  const next = await readLogs(source, {
    deployment: "d",
    service: "s",
    cursor: tail.cursor!,
    follow: true,
    wait_ms: 2_000,
  }, { pollMs: 10 });
  assertEquals(next.lines.map((l) => l.text), ["four"]);
  state.container = undefined;
  const gone = await readLogs(source, {
    deployment: "d",
    service: "s",
    cursor: next.cursor!,
    follow: true,
  });
  assertEquals([gone.end, gone.state], [true, "gone"]);
  // Not following: caught up is the end.
  state.container = { id: "c1", state: "running" };
  assertEquals((await readLogs(source, { deployment: "d", service: "s" })).end, true);
});

Deno.test("command server: ping, events, refusals with codes", async () => {
  const events = new EventRing();
  events.record({ kind: "container_died", deployment: "d", exit_code: 137, message: "died" });
  const server = new CommandServer({
    deviceId: "pi-1",
    agentVersion: "9.9.9",
    startedAtMs: Date.now() - 5_000,
    lastReconcileAtMs: () => undefined,
    events,
    logs: fakeSource({ lines: [] }),
    allowLogs: false,
    log: getLogger(["test"]),
  });
  const ping = PingReply.parse(await server.handle("ping", enc({ sent_at_ms: 42 })));
  assertEquals([ping.device, ping.agent_version, ping.sent_at_ms], ["pi-1", "9.9.9", 42]);
  assert(ping.uptime_seconds >= 4);
  const list = EventsReply.parse(await server.handle("events", new Uint8Array()));
  assertEquals(list.events[0]?.exit_code, 137);
  const refused = CommandError.parse(
    await server.handle("logs", enc({ deployment: "d", service: "s" })),
  );
  assertEquals(refused.code, "forbidden");
  assert(refused.error.includes("allow_logs"));
  assertEquals(CommandError.parse(await server.handle("exec", enc({}))).code, "bad_request");
  assertEquals(CommandError.parse(await server.handle("ping", enc({ x: 1 }))).code, "bad_request");
  assertEquals(
    CommandError.parse(await server.handle("events", new TextEncoder().encode("{"))).code,
    "bad_request",
  );
});

const container = (over: Partial<ObservedContainer>): ObservedContainer => ({
  id: "c1",
  name: "d_web",
  deployment: "d",
  service: "web",
  revision: 3,
  specHash: "h",
  state: "running",
  image: "i",
  labels: {},
  ...over,
});

Deno.test("observation events: died with exit code, removed outside Drover, crash loop once", () => {
  const reported = new Set<string>();
  const options = { removedByAgent: new Set<string>(), reported, nowMs: 100_000 };
  const died = observationEvents("d", [container({})], [
    container({ state: "exited", exitCode: 3 }),
  ], options);
  assertEquals(died.map((e) => [e.kind, e.exit_code, e.revision]), [["container_died", 3, 3]]);
  const missing = observationEvents("d", [container({})], [], options);
  assertEquals(missing.map((e) => e.kind), ["container_missing"]);
  assertEquals(
    observationEvents("d", [container({})], [], { ...options, removedByAgent: new Set(["c1"]) }),
    [],
  );
  const looping = container({ restarts: 5, exitCode: 1, startedAtMs: 99_000 });
  const first = observationEvents("d", [looping], [looping], options);
  assertEquals(first.map((e) => e.kind), ["crash_loop"]);
  assertEquals(observationEvents("d", [looping], [looping], options), []);
});

Deno.test("logs: after a tail read mid-second, the cursor skips every earlier line of that second", async () => {
  const state = {
    lines: ["a", "b", "c"],
    container: { id: "c1", state: "running" } as { id: string; state: string } | undefined,
  };
  const source: LogSource = {
    find: () => Promise.resolve(state.container),
    read: (_id, { tail, since }) => {
      // Every line in the same second, as a burst of output is.
      let frames = state.lines.map((text) => ({
        stream: "stdout" as const,
        text: `2026-12-01T15:24:10Z ${text}\n`,
      }));
      if (since !== undefined) frames = frames.filter((f) => f.text.slice(0, 20) >= since);
      if (tail !== undefined) frames = frames.slice(-tail);
      return Promise.resolve(frames);
    },
  };
  const first = await readLogs(source, { deployment: "d", service: "s", tail: 1, follow: true });
  assertEquals(first.lines.map((l) => l.text), ["c"]);
  assertEquals(first.cursor, { time: "2026-12-01T15:24:10Z", skip: 3 });
  state.lines.push("d");
  const next = await readLogs(source, {
    deployment: "d",
    service: "s",
    cursor: first.cursor!,
    follow: true,
  });
  assertEquals(next.lines.map((l) => l.text), ["d"]);
});
