import { assert, assertEquals } from "../../../tests/support/assert.ts";
import type { FleetView } from "../../fleet/aggregate.ts";
import { FleetState } from "../../fleet/state.ts";
import { diffEntries, flatten, LiveFeed } from "./live.ts";

const enc = new TextEncoder();

function status(id: string, at: Date, heartbeatSeconds = 10) {
  return {
    key: id,
    operation: "PUT" as const,
    revision: 1,
    created: at,
    value: enc.encode(JSON.stringify({
      device_id: id,
      status: "ready",
      timestamp: at.toISOString(),
      agent_version: "t",
      labels: {},
      heartbeat_seconds: heartbeatSeconds,
      deployments: {},
    })),
  };
}

Deno.test("flatten/diffEntries: a heartbeat changes only the device's last-seen entry", () => {
  const state = new FleetState();
  const t0 = new Date(1_700_000_000_000);
  state.applyStatus(status("pi-a", t0));
  state.applyStatus(status("pi-b", t0));
  const before = flatten(state.view(t0.getTime() + 1000));
  state.applyStatus(status("pi-a", new Date(t0.getTime() + 5000)));
  const after = flatten(state.view(t0.getTime() + 6000));
  assertEquals(diffEntries(before, after), { set: { "s:pi-a": t0.getTime() + 5000 }, del: [] });
  assertEquals(diffEntries(after, after), null);
  // Time alone turns pi-b offline (3 heartbeats of 10 s): its row changes.
  const later = flatten(state.view(t0.getTime() + 31_000));
  const diff = diffEntries(after, later);
  assertEquals(Object.keys(diff?.set ?? {}), ["d:pi-b"]);
  assertEquals((diff?.set["d:pi-b"] as { online: boolean }).online, false);
});

Deno.test("FleetState.onChange: one call per burst of changes, after they are applied", async () => {
  const state = new FleetState();
  const seen: number[] = [];
  const stop = state.onChange(() => seen.push(state.statuses.size));
  const at = new Date();
  state.applyStatus(status("pi-a", at));
  state.applyStatus(status("pi-b", at));
  assertEquals(seen, []);
  await Promise.resolve();
  assertEquals(seen, [2]);
  stop();
  state.applyStatus(status("pi-c", at));
  await Promise.resolve();
  assertEquals(seen, [2]);
});

async function nextEvent(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<{ event: string; data: unknown }> {
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    assert(!done, "stream ended");
    const text = dec.decode(value);
    const m = /^event: (\w+)\ndata: (.*)\n\n$/s.exec(text);
    const [, event, data] = m ?? [];
    if (event !== undefined && data !== undefined) return { event, data: JSON.parse(data) };
  }
}

Deno.test("LiveFeed: a snapshot on open, then patches of what changed", async () => {
  let view: FleetView = { devices: [], deployments: [] };
  const feed = new LiveFeed({ view: () => view, device: () => undefined }, {
    minGapMs: 0,
    tickMs: 60_000,
  });
  const reader = feed.open().getReader();
  const snapshot = await nextEvent(reader);
  assertEquals(snapshot.event, "snapshot");
  assertEquals((snapshot.data as { entries: unknown }).entries, {});
  view = {
    devices: [{
      device_id: "pi-a",
      labels: {},
      registered: true,
      reported_labels: null,
      status: "ready",
      online: true,
      heartbeat_age_seconds: 1,
      last_seen: new Date(5000).toISOString(),
      agent_version: "t",
      deployments: [],
    }],
    deployments: [],
  };
  feed.notify();
  const patch = await nextEvent(reader);
  assertEquals(patch.event, "patch");
  const { set, del } = patch.data as { set: Record<string, unknown>; del: string[] };
  assertEquals(Object.keys(set).sort(), ["d:pi-a", "s:pi-a"]);
  assertEquals(set["s:pi-a"], 5000);
  assertEquals(del, []);
  assertEquals(feed.clients, 1);
  await reader.cancel();
  assertEquals(feed.clients, 0);
  feed.close();
});
