import { assert, assertEquals } from "./assert.ts";
import { appendToLogFile } from "./log_file.ts";
import { ManagedProcess } from "./_managed_process.ts";
import { tempDir } from "./temp_dir.ts";
import { waitFor } from "./wait_for.ts";

// Prints one line on each stream, then stays alive (exec: SIGTERM reaches sleep itself).
const CHATTY_THEN_QUIET = [
  "-c",
  "echo started on stdout; echo started on stderr >&2; exec sleep 60",
];

/** Waits until the file at `path` holds both lines. */
function bothLinesIn(path: string): Promise<string> {
  return waitFor(async () => {
    const text = await Deno.readTextFile(path);
    return text.includes("started on stdout") && text.includes("started on stderr") && text;
  }, { timeoutMs: 10_000, message: `both lines in ${path} while the process runs` });
}

Deno.test("ManagedProcess: a server's lines are in its log file while it still runs", async () => {
  await using dir = await tempDir();
  const logPath = `${dir.path}/server.log`;
  const server = await ManagedProcess.spawn({ command: "sh", args: CHATTY_THEN_QUIET, logPath });
  try {
    await bothLinesIn(logPath);
    assert(server.running, "the process is still running");
  } finally {
    await server.stop();
  }
});

Deno.test("ManagedProcess.stop kills what ignores SIGTERM once the grace time is over", async () => {
  await using dir = await tempDir();
  const logPath = `${dir.path}/stubborn.log`;
  // No child processes: a leftover one would hold the log pipe open after the kill.
  const args = ["-c", "trap '' TERM; echo ready; while :; do :; done"];
  const stubborn = ManagedProcess.spawn({ command: "sh", args, logPath });
  await waitFor(async () => (await stubborn.logs()).includes("ready"), {
    timeoutMs: 10_000,
    message: "the process printed ready",
  });
  assertEquals(await stubborn.stop(200), "killed");
  assertEquals((await stubborn.exited).signal, "SIGKILL");
  assertEquals(await stubborn.logTail(1), "ready");
});

Deno.test("appendToLogFile appends whole chunks and closes the file when the streams end", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/x.log`;
  await Deno.writeTextFile(path, "earlier run\n");
  const big = "x".repeat(200_000) + "\n";
  const encoder = new TextEncoder();
  const from = (text: string) => ReadableStream.from([encoder.encode(text)]);
  await appendToLogFile(path, [from(big), from("short\n")]);
  const text = await Deno.readTextFile(path);
  assert(text.startsWith("earlier run\n"), "appends to what was there");
  assertEquals(text.length, "earlier run\n".length + big.length + "short\n".length);
  assert(text.includes(big), "the big chunk is not split by the other stream's");
});
