import { DesiredState } from "@drover/contracts";
import type { Logger } from "@logtape/logtape";
import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import type { ObservedContainer } from "../runtime/runtime.ts";
import { hashKey } from "./plan.ts";
import { StatusBook } from "./status_book.ts";
import { WarnLimiter } from "./warn_limit.ts";

Deno.test("WarnLimiter: one warning per key per interval, then the count held back", () => {
  const limiter = new WarnLimiter(60_000);
  assertEquals(limiter.take("web", 0), { log: true, suppressed: 0 });
  assertEquals(limiter.take("web", 5_000), { log: false });
  assertEquals(limiter.take("db", 5_000), { log: true, suppressed: 0 }, "keys are apart");
  assertEquals(limiter.take("web", 59_999), { log: false });
  assertEquals(limiter.take("web", 60_000), { log: true, suppressed: 2 });
  limiter.forget("web");
  assertEquals(limiter.take("web", 60_001), { log: true, suppressed: 0 });
});

/** A stand-in for logtape's Logger that records level and message (the real one is global). */
function recordingLogger(records: { level: string; message: string }[]): Logger {
  const logger = {
    with: () => logger,
    debug: (message: string) => void records.push({ level: "debug", message }),
    info: (message: string) => void records.push({ level: "info", message }),
    warn: (message: string) => void records.push({ level: "warning", message }),
    error: (message: string) => void records.push({ level: "error", message }),
  };
  return logger as unknown as Logger;
}

Deno.test("StatusBook: a crash loop logs one failure warning a minute, not one per restart", () => {
  const records: { level: string; message: string }[] = [];
  let now = 2_000_000_000_000;
  const book = new StatusBook({ log: recordingLogger(records), now: () => now });
  const entry = {
    kind: "valid" as const,
    deployment: "web",
    revision: 4,
    state: DesiredState.parse({
      deployment: "web",
      score: { type: "PodmanV0", services: [{ name: "httpd", image: "busybox:1" }] },
    }),
  };
  const facts = {
    entry,
    specHashes: new Map([[hashKey("web", "httpd"), "h"]]),
    violations: undefined,
    keptForNow: false,
  };
  const container = (restarts: number): ObservedContainer => ({
    id: "c1",
    name: "web_httpd",
    deployment: "web",
    service: "httpd",
    revision: 4,
    specHash: "h",
    state: "stopped",
    image: "busybox:1",
    labels: {},
    restarts,
    exitCode: 3,
    startedAtMs: now - 1_000,
  });
  // A restart every 5 s for 2 minutes: each one changes the status message.
  for (let restart = 5; restart < 29; restart++) {
    book.observed("web", [container(restart)]);
    book.update("web", facts);
    now += 5_000;
  }
  const warnings = records.filter((r) => r.level === "warning");
  assertEquals(warnings.length, 2, JSON.stringify(records));
  assertStringIncludes(warnings[1]!.message, "more failure(s) since the last warning");
  // Every restart is still recorded at debug level.
  assertEquals(
    records.filter((r) => r.message.startsWith("Deployment {deployment} failed")).length,
    24,
  );
});
