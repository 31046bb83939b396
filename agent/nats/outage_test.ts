import { assertEquals } from "../../tests/support/assert.ts";
import { formatDuration, OutageTracker } from "./outage.ts";

Deno.test("OutageTracker: first connect fails for 2.5 min: start, a line each minute, end with true numbers", () => {
  const t = new OutageTracker(60_000);
  assertEquals(t.attemptFailed(1_000, "ECONNREFUSED"), { kind: "start", error: "ECONNREFUSED" });
  // Attempts every ~2.5 s (whatever the backoff said): only counted, not logged.
  let now = 1_000;
  for (let i = 0; i < 23; i++) {
    now += 2_500;
    assertEquals(t.attemptFailed(now, i === 22 ? "ETIMEDOUT" : "ECONNREFUSED"), undefined);
    assertEquals(t.due(now), undefined);
  }
  assertEquals(t.nextReportAt, 61_000);
  assertEquals(t.due(61_000), {
    kind: "ongoing",
    durationMs: 60_000,
    failedAttempts: 24,
    lastError: "ETIMEDOUT",
  });
  assertEquals(t.due(61_001), undefined, "one line per minute");
  assertEquals(t.nextReportAt, 121_000);
  assertEquals(t.due(121_000)?.kind, "ongoing");
  assertEquals(t.connected(151_000), { kind: "end", durationMs: 150_000, failedAttempts: 24 });
  assertEquals([t.inOutage, t.due(999_999), t.nextReportAt], [false, undefined, undefined]);
  assertEquals(t.connected(152_000), undefined, "connected without an outage logs nothing extra");
});

Deno.test("OutageTracker: nats.js reconnects: dials that were followed by another dial failed", () => {
  const t = new OutageTracker(60_000);
  assertEquals(t.lost(0, "connection to 127.0.0.1:4222 lost"), {
    kind: "start",
    error: "connection to 127.0.0.1:4222 lost",
  });
  t.dialing(250);
  t.dialing(2_750);
  t.error("Authorization Violation");
  t.dialing(5_250);
  assertEquals(t.lost(5_300, "again"), undefined, "a second disconnect is the same outage");
  assertEquals(t.due(60_000), {
    kind: "ongoing",
    durationMs: 60_000,
    failedAttempts: 2,
    lastError: "again",
  });
  // The third dial succeeds.
  assertEquals(t.connected(61_500), { kind: "end", durationMs: 61_500, failedAttempts: 2 });
});

Deno.test("OutageTracker: a short blip is a start and an end, nothing in between", () => {
  const t = new OutageTracker(60_000);
  assertEquals(t.lost(10, "lost")?.kind, "start");
  t.dialing(300);
  assertEquals(t.due(900), undefined);
  assertEquals(t.connected(900), { kind: "end", durationMs: 890, failedAttempts: 0 });
});

Deno.test("formatDuration: compact and true", () => {
  assertEquals(
    [850, 42_400, 60_000, 185_000, 7_620_000, 7_200_000].map(formatDuration),
    ["850 ms", "42 s", "1 min", "3 min 5 s", "2 h 7 min", "2 h"],
  );
});
