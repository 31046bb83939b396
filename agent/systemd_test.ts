import {
  encodeNotify,
  notifySocketAddress,
  SystemdNotifier,
  watchdogIntervalMs,
} from "./systemd.ts";
import { assert, assertEquals } from "../tests/support/assert.ts";

/** A real unix datagram socket standing where systemd's notify socket would be. */
function bindReceiver(path: string): Deno.DatagramConn {
  return Deno.listenDatagram({ transport: "unixpacket", path });
}

async function receiveText(conn: Deno.DatagramConn): Promise<string> {
  const [data] = await conn.receive();
  return new TextDecoder().decode(data);
}

Deno.test("READY, STATUS and STOPPING arrive on a real datagram socket", async () => {
  const dir = await Deno.makeTempDir();
  const receiver = bindReceiver(`${dir}/notify`);
  const notifier = new SystemdNotifier({ NOTIFY_SOCKET: `${dir}/notify` }, `${dir}/state`);
  await Deno.mkdir(`${dir}/state`);
  try {
    assert(notifier.enabled);
    await notifier.ready("reconciled 2 deployments");
    assertEquals(await receiveText(receiver), "READY=1\nSTATUS=reconciled 2 deployments");
    await notifier.status("line one\nline two");
    assertEquals(await receiveText(receiver), "STATUS=line one line two");
    await notifier.stopping();
    assertEquals(await receiveText(receiver), "STOPPING=1\nSTATUS=stopping");
  } finally {
    notifier.close();
    receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an abstract NOTIFY_SOCKET (@name) works", async () => {
  const dir = await Deno.makeTempDir();
  const name = `drover-test-${crypto.randomUUID()}`;
  const receiver = bindReceiver(`\0${name}`);
  const notifier = new SystemdNotifier({ NOTIFY_SOCKET: `@${name}` }, dir);
  try {
    await notifier.ready("ok");
    assertEquals(await receiveText(receiver), "READY=1\nSTATUS=ok");
  } finally {
    notifier.close();
    receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchdog pings arrive while alive and stop when not", async () => {
  const dir = await Deno.makeTempDir();
  const receiver = bindReceiver(`${dir}/notify`);
  // 40 ms watchdog → a ping every 20 ms.
  const notifier = new SystemdNotifier(
    { NOTIFY_SOCKET: `${dir}/notify`, WATCHDOG_USEC: "40000", WATCHDOG_PID: String(Deno.pid) },
    dir,
  );
  let alive = true;
  try {
    assertEquals(notifier.watchdogIntervalMs, 20);
    notifier.startWatchdog(() => alive, (e) => {
      throw e;
    });
    assertEquals(await receiveText(receiver), "WATCHDOG=1");
    assertEquals(await receiveText(receiver), "WATCHDOG=1");
    alive = false;
    // Pings already sent before the flip are drained up to a first marker…
    await notifier.status("marker-1");
    let text = await receiveText(receiver);
    while (text === "WATCHDOG=1") text = await receiveText(receiver);
    assertEquals(text, "STATUS=marker-1");
    // …then several intervals pass: a still-running watchdog would put pings before marker-2.
    await new Promise((r) => setTimeout(r, 120));
    await notifier.status("marker-2");
    assertEquals(await receiveText(receiver), "STATUS=marker-2");
  } finally {
    notifier.close();
    receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without NOTIFY_SOCKET everything is a no-op", async () => {
  const notifier = new SystemdNotifier({}, "/nonexistent");
  assert(!notifier.enabled);
  await notifier.ready("x");
  notifier.startWatchdog(() => true, () => {});
  notifier.close();
});

Deno.test("pure helpers", () => {
  assertEquals(notifySocketAddress("@abc"), "\0abc");
  assertEquals(notifySocketAddress("/run/systemd/notify"), "/run/systemd/notify");
  assertEquals(notifySocketAddress(""), undefined);
  assertEquals(notifySocketAddress("vsock:2:1"), undefined);
  assertEquals(watchdogIntervalMs({ WATCHDOG_USEC: "30000000" }, 1), 15_000);
  assertEquals(watchdogIntervalMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "2" }, 1), undefined);
  assertEquals(watchdogIntervalMs({}, 1), undefined);
  assertEquals(encodeNotify({ READY: "1", STATUS: "a\nb" }), "READY=1\nSTATUS=a b");
});

Deno.test("concurrent notifications are all delivered, in order", async () => {
  const dir = await Deno.makeTempDir();
  const receiver = bindReceiver(`${dir}/notify`);
  const notifier = new SystemdNotifier({ NOTIFY_SOCKET: `${dir}/notify` }, dir);
  try {
    await Promise.all([notifier.status("a"), notifier.ready("b"), notifier.status("c")]);
    assertEquals(await receiveText(receiver), "STATUS=a");
    assertEquals(await receiveText(receiver), "READY=1\nSTATUS=b");
    assertEquals(await receiveText(receiver), "STATUS=c");
  } finally {
    notifier.close();
    receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});
