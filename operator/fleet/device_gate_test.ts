import { assert, assertEquals } from "../../tests/support/assert.ts";
import { DeviceGate, FLOODING_REFUSALS, FLOODING_WINDOW_MS, FloodReport } from "./device_gate.ts";

Deno.test("DeviceGate: a flooding device is refused, counted and reported; others pass", () => {
  let now = 0;
  const report = new FloodReport(() => now);
  const gate = new DeviceGate(
    "artifact",
    report,
    { ratePerSecond: 10, burst: 10, maxInFlight: 100 },
    () => now,
  );
  let admitted = 0;
  for (let i = 0; i < 10_000; i++) {
    const t = gate.admit("dev-a");
    if (t.ok) {
      admitted++;
      t.release();
    }
  }
  assertEquals(admitted, 10);
  assertEquals(report.counts.artifact.rate, 9_990);
  assertEquals(report.flooding().map((f) => f.device), ["dev-a"]);
  assert(gate.admit("dev-b").ok, "positive control: another device is admitted");
  // A window without refusals after the flood: no longer flooding.
  now += 2 * FLOODING_WINDOW_MS;
  assertEquals(report.flooding(), []);
});

Deno.test("FloodReport: below the threshold a device is not flooding", () => {
  const report = new FloodReport(() => 0);
  for (let i = 0; i < FLOODING_REFUSALS - 1; i++) report.refused("snapshot", "dev-a", "rate");
  assertEquals(report.flooding(), []);
  report.refused("snapshot", "dev-a", "rate");
  assertEquals(report.flooding(), [{
    device: "dev-a",
    refused: FLOODING_REFUSALS,
    handler: "snapshot",
  }]);
});
