import { assertEquals } from "../../tests/support/assert.ts";
import {
  type DeviceConnection,
  excessConnections,
  parseStartUs,
  serverCanKick,
} from "./connection_guard.ts";

const conn = (
  user: string,
  cid: number,
  startUs: number,
  server = "S1",
): DeviceConnection => ({ server, cid, user, device: user.toLowerCase(), startUs });

const ids = (cs: DeviceConnection[]) => cs.map((c) => `${c.server}/${c.cid}`).sort();

Deno.test("excessConnections: each identity keeps its newest `limit`, the older ones go", () => {
  const connections = [
    conn("UA", 1, 100),
    conn("UA", 2, 300),
    conn("UA", 3, 200),
    conn("UA", 4, 400),
    conn("UB", 5, 50), // another identity, within its limit
    conn("UB", 6, 60),
  ];
  assertEquals(ids(excessConnections(connections, 2)), ["S1/1", "S1/3"]);
  assertEquals(ids(excessConnections(connections, 1)), ["S1/1", "S1/2", "S1/3", "S1/5"]);
  assertEquals(excessConnections(connections, 4), [], "positive control: all within 4");
});

Deno.test("excessConnections: a half-open old connection goes, the reconnect stays", () => {
  // A Pi behind NAT: its old TCP connection lingers half-open, the new one is the live one.
  const stale = conn("UPI", 7, 1_000);
  const live = conn("UPI", 12, 90_000_000);
  assertEquals(excessConnections([live, stale], 1), [stale]);
});

Deno.test("excessConnections: equal start times keep the higher client id; servers counted together", () => {
  assertEquals(ids(excessConnections([conn("UA", 9, 5), conn("UA", 8, 5)], 1)), ["S1/8"]);
  // The limit is per identity over the whole cluster, not per server.
  const spread = [conn("UA", 1, 10, "S1"), conn("UA", 1, 20, "S2"), conn("UA", 2, 30, "S3")];
  assertEquals(ids(excessConnections(spread, 2)), ["S1/1"]);
});

Deno.test("serverCanKick: KICK from nats-server 2.10 on", () => {
  assertEquals(serverCanKick("2.9.10"), false);
  assertEquals(serverCanKick("2.10.0"), true);
  assertEquals(serverCanKick("2.10.27"), true);
  assertEquals(serverCanKick("2.11.0-beta.1"), true);
  assertEquals(serverCanKick("3.0.0"), true);
  assertEquals(serverCanKick("garbage"), false);
});

Deno.test("parseStartUs: nats-server's nanosecond times, in order, to the microsecond", () => {
  const a = parseStartUs("2026-12-06T15:32:12.847007468Z");
  const b = parseStartUs("2026-12-06T15:32:12.8470075Z"); // trailing zeros trimmed by Go
  assertEquals(a, Date.parse("2026-12-06T15:32:12Z") * 1000 + 847_007);
  assertEquals(b, a);
  assertEquals(parseStartUs("2026-12-06T15:32:12Z"), Date.parse("2026-12-06T15:32:12Z") * 1000);
  assertEquals(parseStartUs("2026-12-06T16:32:12.5+01:00"), a - 347_007);
  assertEquals(Number.isNaN(parseStartUs("yesterday")), true);
});
