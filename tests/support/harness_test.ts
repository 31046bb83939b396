import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { processesReferencing } from "./_host.ts";
import { startNats } from "./mod.ts";

function assertEquals<T>(actual: T, expected: T, message = ""): void {
  const [a, e] = [JSON.stringify(actual), JSON.stringify(expected)];
  if (a !== e) throw new Error(`${message}\nexpected: ${e}\nactual:   ${a}`);
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("startNats: JetStream KV works and data survives a restart on the same port", async () => {
  let dir: string;
  {
    await using nats = await startNats();
    dir = nats.dir;
    assert(nats.url === `nats://127.0.0.1:${nats.port}`, `url is ${nats.url}`);
    const nc = await connect({
      servers: nats.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    try {
      const kv = await new Kvm(nc).create("harness");
      await kv.put("greeting", "hello");
      await nats.restart();
      assert(nats.running, "server runs after restart");
      // A fresh connection proves the data came back from the store, not from a client cache.
      const nc2 = await connect({ servers: nats.url });
      try {
        const entry = await (await new Kvm(nc2).open("harness")).get("greeting");
        assertEquals(entry?.string(), "hello", "value after restart");
      } finally {
        await nc2.close();
      }
      await nats.kill();
      assert(!nats.running, "server is down after kill");
    } finally {
      await nc.close();
    }
  }
  assertEquals(await pathExists(dir), false, "server dir removed");
  assertEquals(await processesReferencing(dir), [], "no process left");
});

Deno.test("startNats: extraConfig is applied and a bad config fails with the log tail", async () => {
  await using nats = await startNats({ extraConfig: "max_payload: 4096" });
  const varz = await (await fetch(`${nats.monitorUrl}/varz`)).json();
  assertEquals(varz.max_payload, 4096, "max_payload from extraConfig");

  const error = await startNats({ extraConfig: "this is { not valid" }).catch((e) => e);
  assert(error instanceof Error && error.name === "ServiceStartError", `got ${error}`);
  assert(/nats-server/.test(error.message) && /log/.test(error.message), error.message);
});
